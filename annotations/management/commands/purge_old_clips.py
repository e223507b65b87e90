"""Delete the audio files of example clips uploaded some days ago (run it daily).

Their embeddings stay, so that searches with them still run.
"""

import datetime as dt

from django.core.management.base import BaseCommand

from annotations.clips import purge_old_clip_files


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=30.0, help="uploaded this long ago (default 30 days)")

    def handle(self, *args, days: float, **options):
        purged = purge_old_clip_files(dt.timedelta(days=days))
        self.stdout.write(f"deleted the files of {purged} example clip(s) uploaded {days:g} days ago or more")
