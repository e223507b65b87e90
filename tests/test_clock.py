"""One clock: pages show times in the deployment's zone, labelled with it."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Recording, RecordingStatus
from frontend.templatetags.clock import wall_clock

pytestmark = pytest.mark.django_db


def test_wall_clock_is_in_the_zone_asked_for_or_carried():
    utc = dt.datetime(2024, 5, 20, 5, 0, 0, tzinfo=dt.UTC)
    assert wall_clock(utc, "Pacific/Auckland") == "2024-05-20 17:00:00 Pacific/Auckland"  # NZST, +12
    assert wall_clock(utc) == "2024-05-20 05:00:00 UTC"
    assert wall_clock(utc, "Not/AZone") == "2024-05-20 05:00:00 UTC"
    assert wall_clock(None) == ""


def test_recording_and_hit_cards_say_the_deployments_local_time(make_user, tmp_path):
    user = make_user("ann")
    project = create_project(user, "Clock", labels=["bird"])
    deployment = create_deployment(project, "Kiwi ridge", site="K")
    deployment.timezone = "Pacific/Auckland"
    deployment.save()
    recording = Recording.objects.create(
        deployment=deployment,
        path=str(tmp_path / "a.wav"),
        filename="a.wav",
        status=RecordingStatus.DONE,
        duration_s=10.0,
        sample_rate=32_000,
        started_at=dt.datetime(2024, 5, 20, 5, 0, 0, tzinfo=dt.UTC),
    )
    model = register_embedding_model("planted", "1", 4, 5.0, 5.0, 32_000)
    replace_windows(recording.pk, model, np.array([0.0, 5.0]), np.array([5.0, 10.0]), np.eye(4, dtype=np.float32)[:2])
    client = Client()
    client.force_login(user)
    page = client.get(f"/projects/{project.pk}/recordings/{recording.pk}/").content.decode()
    assert "started 2024-05-20 17:00:00 Pacific/Auckland" in page
    assert "2024-05-20 17:00:05 Pacific/Auckland" in page  # the second window's card
    assert "UTC" not in page  # nothing on the page speaks of UTC
    form = client.get(f"/projects/{project.pk}/deployments/{deployment.pk}/").content.decode()
    assert "<option selected>Pacific/Auckland</option>" in form and "<option>Europe/Berlin</option>" in form
