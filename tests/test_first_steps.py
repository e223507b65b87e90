"""An empty project guides: each first step links to where it is done, until all are."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Recording, RecordingStatus
from annotations.search import SearchSpec, save_search

pytestmark = pytest.mark.django_db


def steps(client: Client, project) -> list[tuple[str, str]]:
    """(class, first link or "") of each first step on the project page; [] once all are done."""
    page = client.get(f"/projects/{project.pk}/").content.decode()
    if 'class="card first-steps"' not in page:
        return []
    card = page[page.index('class="card first-steps"') :].split("</ol>")[0]
    items = re.findall(r'<li class="([^"]*)">(.*?)</li>', card)
    return [(kind, (re.findall(r'href="([^"]+)"', body) or [""])[0]) for kind, body in items]


def test_each_first_step_links_to_the_next_until_all_are_done(make_user, tmp_path):
    user = make_user("admin")
    project = create_project(user, "New survey", labels=["owl"])
    client = Client()
    client.force_login(user)
    assert steps(client, project) == [("step-now", "#add-deployment"), ("", ""), ("", ""), ("", "")]
    page = client.get(f"/projects/{project.pk}/").content.decode()
    assert '<details class="card" open><summary>Add a deployment' in page  # the first step, opened

    deployment = create_deployment(project, "Creek")
    page = f"/projects/{project.pk}/deployments/{deployment.pk}/"
    assert steps(client, project)[:2] == [("step-done", "#add-deployment"), ("step-now", page)]

    recording = Recording.objects.create(
        deployment=deployment, path=str(tmp_path / "a.wav"), filename="a.wav", status=RecordingStatus.QUEUED
    )
    assert steps(client, project)[2] == ("step-now", "")  # not embedded yet: nothing to open

    Recording.objects.filter(pk=recording.pk).update(status=RecordingStatus.DONE, duration_s=5.0)
    model = register_embedding_model("planted", "1", 4, 5.0, 5.0, 32_000)
    replace_windows(recording.pk, model, np.array([0.0]), np.array([5.0]), np.ones((1, 4), dtype=np.float32))
    window = recording.windows.get()
    assert steps(client, project)[2:] == [
        ("step-done", f"/projects/{project.pk}/recordings/{recording.pk}/"),
        ("step-now", f"/projects/{project.pk}/search/?window={window.pk}"),
    ]

    save_search(project, user, SearchSpec(positive_windows=(window.pk,)))
    assert steps(client, project) == []
