"""Delete unfinished browser uploads nobody has continued for some days (run it daily)."""

import datetime as dt

from django.core.management.base import BaseCommand

from annotations.uploads import purge_abandoned_uploads


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=7.0, help="idle this long (default 7 days)")

    def handle(self, *args, days: float, **options):
        purged = purge_abandoned_uploads(dt.timedelta(days=days))
        self.stdout.write(f"deleted {purged} unfinished upload(s) idle for {days:g} days or more")
