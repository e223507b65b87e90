"""The vocabulary's own order: the first label is the active one on labeling pages."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Recording, RecordingStatus
from annotations.vocabulary import add_label

pytestmark = pytest.mark.django_db


def active_label_choices(client: Client, recording) -> list[str]:
    """The active-label choices of a labeling page, in their order."""
    page = client.get(f"/projects/{recording.deployment.project_id}/recordings/{recording.pk}/").content.decode()
    select = page[page.index('<select id="active-label">') :]
    return re.findall(r'data-name="([^"]+)"', select[: select.index("</select>")])


def test_the_first_label_of_the_vocabulary_is_the_active_one(make_user, client_for, tmp_path):
    user = make_user("admin")
    project = create_project(user, "Forest", labels=["wren song", "background"])
    add_label(project, "alarm call")
    deployment = create_deployment(project, "Gully")
    recording = Recording.objects.create(
        deployment=deployment, path=str(tmp_path / "a.wav"), filename="a.wav", status=RecordingStatus.DONE, duration_s=5
    )
    model = register_embedding_model("planted", "1", 4, 5.0, 5.0, 32_000)
    replace_windows(recording.pk, model, np.array([0.0]), np.array([5.0]), np.ones((1, 4), dtype=np.float32))
    client = Client()
    client.force_login(user)
    assert active_label_choices(client, recording) == ["wren song", "background", "alarm call"]  # not a-z

    api = client_for(user)
    background = project.labels.get(name="background")
    response = api.patch(f"/api/projects/{project.pk}/labels/{background.pk}/", {"position": 0}, format="json")
    assert response.status_code == 200 and response.json()["position"] == 0
    wren = project.labels.get(name="wren song")
    api.patch(f"/api/projects/{project.pk}/labels/{wren.pk}/", {"position": 1}, format="json")
    assert active_label_choices(client, recording) == ["background", "wren song", "alarm call"]
    created = api.post(f"/api/projects/{project.pk}/labels/", {"name": "drumming", "position": 0}, format="json")
    assert created.status_code == 201, created.json()
    assert active_label_choices(client, recording)[:2] == ["background", "drumming"]  # same place: a-z
