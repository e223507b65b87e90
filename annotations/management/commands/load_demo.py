from django.core.management.base import BaseCommand

from annotations.demo import demo_login, load_demo


class Command(BaseCommand):
    help = "Create the demo user and project (real birdsong audio) and queue its ingest."

    def handle(self, *args, **options):
        project = load_demo()
        username, password = demo_login()
        self.stdout.write(f"Demo project {project.name!r} (id {project.pk})")
        self.stdout.write(f"login: {username} / {password}")
