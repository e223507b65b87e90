"""The Celery application. Workers start with ``celery -A perch_agile worker``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")

app = Celery("perch_agile")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
