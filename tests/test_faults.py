"""Faults of the real services: a killed database connection, Redis going away.

A request answers with a clear error and can be retried; no label or classifier is left
half-written.
"""

from __future__ import annotations

import os

import numpy as np
import psycopg
import pytest
from django.core.signals import request_started
from django.db import connection

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Annotation, Classifier, Recording, RecordingStatus, TaskStatus, Window
from perch_agile import embedded
from tests.conftest import _database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def labeled_window(make_user):
    owner = make_user("owner")
    project = create_project(owner, "Faults", labels=["bird"])
    recording = Recording.objects.create(
        deployment=create_deployment(project, "D"), path="/f.wav", filename="f.wav", status=RecordingStatus.DONE
    )
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    replace_windows(recording.pk, model, np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.eye(2, 4, dtype=np.float32))
    windows = list(Window.objects.filter(recording=recording).order_by("start_s").values_list("pk", flat=True))
    return owner, project, project.labels.get(), windows


def kill_django_connection() -> None:
    """Terminate this process's database session from another connection, as a
    database restart or a dropped network would."""
    backend_pid = connection.connection.info.backend_pid
    with psycopg.connect(_database_url(connection.settings_dict), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid])


def test_a_connection_lost_mid_request_gives_503_then_the_retry_succeeds(labeled_window, client_for):
    owner, project, label, windows = labeled_window
    api = client_for(owner)
    url = f"/api/projects/{project.pk}/annotations/"
    body = {"window": windows[0], "label": label.pk, "value": "positive"}

    def kill(**_):
        connection.ensure_connection()
        kill_django_connection()

    request_started.connect(kill)  # runs after Django's own connection check
    try:
        response = api.post(url, body, format="json")
    finally:
        request_started.disconnect(kill)
    assert response.status_code == 503
    assert "nothing was saved" in response.json()["error"] and response["Retry-After"] == "1"
    connection.close()
    assert Annotation.objects.count() == 0

    retry = api.post(url, body, format="json")
    assert retry.status_code == 201
    assert Annotation.objects.get().value == "positive"


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="stops the embedded Redis, not a configured one")
def test_training_while_redis_is_down_fails_cleanly_and_works_once_it_is_back(labeled_window, client_for, worker_queue):
    owner, project, label, windows = labeled_window
    api = client_for(owner)
    base = f"/api/projects/{project.pk}"
    for window, value in zip(windows, ("positive", "negative"), strict=True):
        api.post(f"{base}/annotations/", {"window": window, "label": label.pk, "value": value}, format="json")
    embedded.stop_redis()
    try:
        response = api.post(f"{base}/classifiers/", {"labels": [label.pk]}, format="json")
    finally:
        embedded.start_redis()
    assert response.status_code == 503
    assert "task queue" in response.json()["error"]
    failed = Classifier.objects.get()
    assert failed.status == TaskStatus.FAILED and "try again" in failed.error and failed.weights is None

    retry = api.post(f"{base}/classifiers/", {"labels": [label.pk]}, format="json")
    assert retry.status_code == 202
    assert Classifier.objects.get(pk=retry.json()["id"]).status == TaskStatus.QUEUED


def test_a_tasks_lasting_error_is_recorded_and_a_lost_connection_left_to_celerys_retry():
    from django.db import OperationalError

    from workers.tasks import failure_recorded

    recorded = []
    with pytest.raises(ValueError), failure_recorded("a drawing", recorded.append):
        raise ValueError("no windows")
    assert recorded == ["ValueError('no windows')"]
    with pytest.raises(OperationalError), failure_recorded("a drawing", recorded.append):
        raise OperationalError("the server closed the connection")
    assert len(recorded) == 1  # retried, not failed
    with failure_recorded("a drawing", recorded.append):
        pass
    assert len(recorded) == 1
