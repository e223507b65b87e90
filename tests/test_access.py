"""Every URL checks project membership: strangers get 404, viewers cannot change anything."""

from __future__ import annotations

import numpy as np
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.membership import create_invitation_link
from annotations.models import (
    Classifier,
    ClassifierLabel,
    ClipQuery,
    EmbeddingMap,
    HopliteExport,
    HopliteImport,
    InferenceRun,
    Invitation,
    LabelImport,
    Membership,
    Recording,
    RecordingStatus,
    Role,
    TaskStatus,
    UploadSession,
    Window,
)

pytestmark = pytest.mark.django_db


def project_patterns():
    """(name, pattern) of every URL under a project, in the API and in the pages."""
    found = []

    def walk(patterns, prefix, namespace):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern), entry.namespace or namespace)
            elif isinstance(entry, URLPattern) and "<id:project_id>" in prefix + str(entry.pattern):
                found.append((f"{namespace}:{entry.name}", prefix + str(entry.pattern)))

    walk(get_resolver().url_patterns, "/", None)
    return found


@pytest.fixture
def other_project(make_user):
    """Project B with one object of every kind that a URL can address."""
    owner = make_user("owner-b")
    project = create_project(owner, "B", labels=["owl"])
    deployment = create_deployment(project, "B deployment")
    recording = Recording.objects.create(
        deployment=deployment, path="/nonexistent.wav", filename="b.wav", status=RecordingStatus.DONE
    )
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    replace_windows(recording.pk, model, np.array([0.0]), np.array([1.0]), np.ones((1, 4), np.float32))
    window = Window.objects.get(recording=recording)
    clip = ClipQuery.objects.create(project=project, created_by=owner, path="/nonexistent.wav", filename="c.wav")
    classifier = Classifier.objects.create(
        project=project,
        version=1,
        embedding_model=model,
        status=TaskStatus.DONE,
        weights=np.zeros((4, 1), np.float32).tobytes(),
        bias=np.zeros(1, np.float32).tobytes(),
    )
    ClassifierLabel.objects.create(classifier=classifier, label=project.labels.get(), index=0)
    run = InferenceRun.objects.create(classifier=classifier, deployment=deployment)
    member = Membership.objects.get(project=project, user=owner)
    upload = UploadSession.objects.create(deployment=deployment, created_by=owner, filename="u.wav", size_bytes=1)
    label_import = LabelImport.objects.create(project=project, deployment=deployment, user=owner)
    invitation = Invitation.objects.create(project=project, username="someone", invited_by=owner)
    link = create_invitation_link(project, Role.VIEWER, owner).link
    hoplite_import = HopliteImport.objects.create(project=project, created_by=owner, source_name="db.zip")
    hoplite_export = HopliteExport.objects.create(project=project, embedding_model=model, created_by=owner)
    embedding_map = EmbeddingMap.objects.create(project=project, model=model, status=TaskStatus.DONE)
    ids = {
        "project_id": project.pk,
        "deployment_id": deployment.pk,
        "recording_id": recording.pk,
        "window_id": window.pk,
        "clip_query_id": clip.pk,
        "classifier_id": classifier.pk,
        "run_id": run.pk,
        "member_id": member.pk,
        "upload_id": upload.pk,
        "import_id": label_import.pk,
        "invitation_id": invitation.pk,
        "link_id": link.pk,
        "hoplite_import_id": hoplite_import.pk,
        "map_id": embedding_map.pk,
        "hoplite_export_id": hoplite_export.pk,
        "label_id": project.labels.get().pk,
    }
    return project, ids


def fill(pattern: str, ids: dict) -> str:
    url = pattern
    for name, value in ids.items():
        url = url.replace(f"<id:{name}>", str(value))
    assert "<" not in url, f"no id for {url}"
    return url


def test_every_project_url_is_found(other_project):
    names = {name for name, _ in project_patterns()}
    assert {"api:search", "api:classifier-export", "api:window-audio", "frontend:project", "frontend:run"} <= names
    assert len(names) >= 30


def test_a_stranger_gets_404_for_everything_of_another_project(other_project, make_user):
    _, ids = other_project
    stranger = make_user("member-of-a")
    create_project(stranger, "A")
    client = Client()
    client.force_login(stranger)
    for name, pattern in project_patterns():
        url = fill(pattern, ids)
        for method in ("get", "post", "patch", "delete"):
            response = getattr(client, method)(url)
            assert response.status_code in (404, 405), f"{method.upper()} {url} ({name}) gave {response.status_code}"
            if response.status_code == 405:
                continue
            assert b"owl" not in response.content and b"B deployment" not in response.content


def test_a_viewer_reads_but_cannot_change_anything(other_project, make_user):
    project, ids = other_project
    viewer = make_user("viewer")
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    assert client.get(f"/api/projects/{project.pk}/deployments/").status_code == 200
    assert client.get(f"/projects/{project.pk}/").status_code == 200
    search = client.post(
        f"/api/projects/{project.pk}/search/", {"window_id": ids["window_id"]}, content_type="application/json"
    )
    assert search.status_code == 200 and search.json()["hits"] == []  # the only window is the example
    for name, pattern in project_patterns():
        if not name.startswith("api:") or name == "api:search":  # a search is a POST that changes nothing
            continue
        url = fill(pattern, ids)
        for method in ("post", "patch", "delete"):
            status = getattr(client, method)(url).status_code
            assert status in (403, 405), f"{method.upper()} {url} ({name}) gave {status}"


EXPORTS = ("api:classifier-export", "api:detection-csv", "api:raven-export")


def test_exports_are_an_annotators_right(other_project, make_user):
    project, ids = other_project
    patterns = dict(project_patterns())
    assert set(EXPORTS) <= set(patterns)
    for role, expected in ((Role.VIEWER, 403), (Role.ANNOTATOR, 200)):
        user = make_user(role)
        Membership.objects.create(project=project, user=user, role=role)
        client = Client()
        client.force_login(user)
        for name in EXPORTS:
            response = client.get(fill(patterns[name], ids))
            assert response.status_code == expected, f"{role} GET {name} gave {response.status_code}"
        for page in ("frontend:classifier", "frontend:run"):
            html = client.get(fill(patterns[page], ids)).content.decode()
            assert ("/export/" in html or "detections.csv" in html) == (role == Role.ANNOTATOR), (role, page)


def test_anonymous_requests_are_refused(other_project):
    project, _ = other_project
    assert Client().get(f"/api/projects/{project.pk}/").status_code == 403
    assert Client().get(f"/projects/{project.pk}/").status_code == 302  # to the login page
