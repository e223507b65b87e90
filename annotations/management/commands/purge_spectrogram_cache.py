"""Delete cached spectrogram pictures nobody has looked at for some days (run it daily).

They are rendered again on demand, so this only trades disk for a little time.
"""

from django.core.management.base import BaseCommand

from annotations.spectrograms import purge_cache


class Command(BaseCommand):
    help = __doc__.splitlines()[0]

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=30.0, help="unused this long (default 30 days)")

    def handle(self, *args, days: float, **options):
        files, size = purge_cache(days * 86_400)
        self.stdout.write(f"deleted {files} picture(s), {size / 1e6:.1f} MB, unused for {days:g} days or more")
