"""Bad input gets a clear error and loses nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from annotations.deployments import create_deployment, create_project, grant_folder
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.models import (
    Annotation,
    Deployment,
    LabelChange,
    Membership,
    Project,
    Recording,
    RecordingStatus,
    Role,
    Window,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def project(owner):
    return create_project(owner, "Wetlands", labels=["frog"])


@pytest.fixture
def window(project):
    deployment = create_deployment(project, "Pond")
    recording = Recording.objects.create(
        deployment=deployment, path="/pond.wav", filename="pond.wav", status=RecordingStatus.DONE
    )
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    replace_windows(recording.pk, model, np.array([0.0]), np.array([1.0]), np.ones((1, 4), np.float32))
    return Window.objects.defer("embedding").get(recording=recording)


def wav_bytes(seconds=1.0, rate=16_000) -> bytes:
    import io

    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_label_names_are_escaped_everywhere(client_for, owner, project, window):
    hostile = '<img src=x onerror="alert(1)">'
    api = client_for(owner)
    assert api.post(f"/api/projects/{project.pk}/labels/", {"name": hostile}, format="json").status_code == 201
    client = Client()
    client.force_login(owner)
    for url in (f"/projects/{project.pk}/", f"/projects/{project.pk}/windows/{window.pk}/"):
        page = client.get(url).content.decode()
        assert hostile not in page
        assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_forms_and_session_api_calls_need_the_csrf_token(owner, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(f"/api/projects/{project.pk}/labels/", {"name": "toad"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]
    assert client.post("/", {"name": "Sneaky"}).status_code == 403
    assert not Project.objects.filter(name="Sneaky").exists()


def test_server_folders_are_confined_to_the_audio_roots(client_for, owner, project, settings, tmp_path):
    root = tmp_path / "audio"
    (root / "site").mkdir(parents=True)
    (root / "site" / "a.wav").write_bytes(wav_bytes())
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(wav_bytes())
    (root / "escape").symlink_to(outside)
    (root / "site" / "linked.wav").symlink_to(outside / "secret.wav")
    settings.PERCH_AGILE_AUDIO_ROOTS = [root]
    grant_folder(project, str(root))
    api = client_for(owner)
    url = f"/api/projects/{project.pk}/deployments/"
    for folder in (str(outside), f"{root}/../private", str(root / "escape")):
        response = api.post(url, {"name": "X", "server_folder": folder}, format="json")
        assert response.status_code == 400
        assert "not in a server folder granted to this project" in response.json()["error"]
        assert str(tmp_path) not in response.json()["error"].replace(folder, "")  # names no root
    response = api.post(url, {"name": "Site", "server_folder": str(root / "site")}, format="json")
    assert response.status_code == 201
    # The symlink inside the folder that leads outside it is not registered.
    assert list(Recording.objects.filter(deployment_id=response.json()["id"]).values_list("filename", flat=True)) == [
        "a.wav"
    ]
    assert Deployment.objects.filter(name="X").count() == 0


def test_only_folders_granted_to_a_project_can_be_registered(client_for, owner, project, make_user, settings, tmp_path):
    root = tmp_path / "audio"
    (root / "theirs").mkdir(parents=True)
    (root / "theirs" / "dawn.wav").write_bytes(wav_bytes())
    (root / "ours" / "empty").mkdir(parents=True)
    settings.PERCH_AGILE_AUDIO_ROOTS = [root]
    grant_folder(project, str(root / "theirs"))
    create_deployment(project, "Theirs", server_folder=str(root / "theirs"))
    stranger = make_user("stranger")  # any account can make a project and be its admin
    other = create_project(stranger, "Other")
    grant_folder(other, str(root / "ours"))
    api = client_for(stranger)
    url = f"/api/projects/{other.pk}/deployments/"
    for folder in (root / "theirs", root, root / "theirs" / "dawn.wav"):
        response = api.post(url, {"name": "Grab", "server_folder": str(folder)}, format="json")
        assert response.status_code == 400
        assert "not in a server folder granted to this project" in response.json()["error"]
    assert not Deployment.objects.filter(project=other).exists()
    assert not Recording.objects.filter(deployment__project=other).exists()
    # Inside its own grant, a missing folder answers like an empty one.
    missing = api.post(url, {"name": "M", "server_folder": str(root / "ours" / "nope")}, format="json").json()
    empty = api.post(url, {"name": "E", "server_folder": str(root / "ours" / "empty")}, format="json").json()
    assert missing["error"].replace("nope", "X") == empty["error"].replace("empty", "X")
    # Pages show folders relative to their audio root, and such a name registers too.
    relative = api.post(url, {"name": "R", "server_folder": "ours/empty"}, format="json").json()
    assert "no audio files" in relative["error"]


def test_staff_grant_folders_inside_the_audio_roots_only(project, settings, tmp_path):
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path / "audio"]
    (tmp_path / "audio" / "card").mkdir(parents=True)
    (tmp_path / "private").mkdir()
    with pytest.raises(InputError, match="outside the audio roots"):
        grant_folder(project, str(tmp_path / "private"))
    assert grant_folder(project, str(tmp_path / "audio" / "card" / "..")).folder == str(tmp_path / "audio")


def test_a_folder_without_audio_says_what_it_holds_and_new_files_are_found_later(
    client_for, owner, project, settings, tmp_path
):
    folder = tmp_path / "audio" / "card"
    folder.mkdir(parents=True)
    for name in ("CONFIG.TXT", "log.txt", "notes"):
        (folder / name).write_text("not audio")
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path / "audio"]
    grant_folder(project, str(folder))
    api = client_for(owner)
    url = f"/api/projects/{project.pk}/deployments/"
    response = api.post(url, {"name": "Card", "server_folder": str(folder)}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (
        "no audio files" in error
        and "2 not audio by name (.txt)" in error
        and "1 not audio by name (no extension)" in error
    )
    assert not Deployment.objects.filter(name="Card").exists()

    (folder / "20240521_053000.WAV").write_bytes(wav_bytes())
    deployment_id = api.post(url, {"name": "Card", "server_folder": str(folder)}, format="json").json()["id"]
    (folder / "20240522_053000.WAV").write_bytes(wav_bytes())  # the recorder went on
    assert api.post(f"{url}{deployment_id}/ingest/").json() == {"queued": 2}
    assert Recording.objects.filter(deployment_id=deployment_id).count() == 2


def test_uploads_are_sniffed_and_limited(client_for, owner, project, settings, media_root):
    deployment = create_deployment(project, "Uploads")
    url = f"/api/projects/{project.pk}/deployments/{deployment.pk}/files/"
    api = client_for(owner)
    files = [
        SimpleUploadedFile("dawn.wav", wav_bytes()),
        SimpleUploadedFile("notes.wav", b"just some text, not audio" * 10),
        SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff\xe0 jpeg"),
        SimpleUploadedFile("empty.flac", b""),
    ]
    response = api.post(url, {"files": files}, format="multipart")
    assert response.status_code == 201
    body = response.json()
    assert [r["filename"] for r in body["recordings"]] == ["dawn.wav"]
    reasons = {r["filename"]: r["reason"] for r in body["rejected"]}
    assert "not WAV, FLAC, OGG or MP3" in reasons["notes.wav"]
    assert "unsupported file type" in reasons["photo.jpg"]
    assert "empty" in reasons["empty.flac"]

    settings.PERCH_AGILE_MAX_UPLOAD_BYTES = 1000
    response = api.post(url, {"files": [SimpleUploadedFile("long.wav", wav_bytes())]}, format="multipart")
    assert response.status_code == 400
    assert "over the limit" in response.json()["error"]

    settings.PERCH_AGILE_MAX_REQUEST_BYTES = 1000
    response = api.post(url, {"files": [SimpleUploadedFile("long.wav", wav_bytes())]}, format="multipart")
    assert response.status_code == 413
    assert "per request" in response.json()["error"]
    assert deployment.recordings.count() == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/projects/99999999999999999999999/", None),
        ("post", "/api/projects/{p}/annotations/", {"window": 2**70, "label": 1, "value": "positive"}),
        ("post", "/api/projects/{p}/annotations/", {"window": "x", "label": None, "value": "maybe"}),
        ("post", "/api/projects/{p}/search/", {"window_id": 1, "clip_query_id": 1}),
        ("post", "/api/projects/{p}/search/", {"window_id": 1, "k": 10**9}),
        ("delete", "/api/projects/{p}/annotations/?window=abc&label=1", None),
        ("get", "/api/projects/{p}/runs/1/detections/?limit=lots", None),
        ("post", "/api/projects/", {"name": "a\x00b"}),
        ("post", "/api/projects/{p}/classifiers/", {"labels": []}),
    ],
)
def test_malformed_calls_get_a_clear_4xx(client_for, owner, project, method, path, body):
    api = client_for(owner)
    url = path.replace("{p}", str(project.pk))
    response = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
    assert 400 <= response.status_code < 500
    if response.status_code != 404 or url.startswith("/api/projects/9"):
        assert response.json()["error"]


def test_every_label_change_is_in_the_audit_trail(client_for, owner, project, window):
    api = client_for(owner)
    label = project.labels.get()
    base = f"/api/projects/{project.pk}"
    for value in ("positive", "positive", "negative"):
        api.post(f"{base}/annotations/", {"window": window.pk, "label": label.pk, "value": value}, format="json")
    assert api.delete(f"{base}/annotations/?window={window.pk}&label={label.pk}").status_code == 204
    history = api.get(f"{base}/windows/{window.pk}/history/").json()
    assert [(h["old_value"], h["new_value"]) for h in history] == [
        ("negative", ""),
        ("positive", "negative"),
        ("", "positive"),
    ]
    assert {h["annotator"] for h in history} == {"owner"}
    assert Annotation.objects.count() == 0 and LabelChange.objects.count() == 3
    client = Client()
    client.force_login(owner)
    page = client.get(f"/projects/{project.pk}/windows/{window.pk}/").content.decode()
    assert "positive → negative" in page


def test_members_are_invited_and_an_unknown_name_looks_like_a_known_one(client_for, owner, project, make_user):
    volunteer = make_user("volunteer")
    api = client_for(owner)
    base = f"/api/projects/{project.pk}/members/"
    known = api.post(base, {"username": "volunteer", "role": "viewer"}, format="json")
    unknown = api.post(base, {"username": "nobody", "role": "viewer"}, format="json")
    assert known.status_code == unknown.status_code == 202
    strip = {"id", "username", "created_at"}
    assert {k: v for k, v in known.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }
    assert not Membership.objects.filter(user=volunteer).exists()  # not a member before accepting
    pending = api.get(f"/api/projects/{project.pk}/invitations/").json()
    assert [i["username"] for i in pending] == ["nobody", "volunteer"]

    page = Client()
    page.force_login(volunteer)
    assert "invites you to" in page.get("/").content.decode()
    mine = client_for(volunteer)
    offers = mine.get("/api/invitations/").json()
    assert [(o["project_name"], o["role"]) for o in offers] == [(project.name, "viewer")]
    assert (
        client_for(make_user("eve")).post(f"/api/invitations/{offers[0]['id']}/", {"accept": True}).status_code == 404
    )
    assert mine.post(f"/api/invitations/{offers[0]['id']}/", {"accept": True}, format="json").status_code == 200
    assert Membership.objects.get(user=volunteer, project=project).role == "viewer"
    assert mine.get("/api/invitations/").json() == []
    # A viewer neither sees nor answers the project's invitations.
    assert mine.get(f"/api/projects/{project.pk}/invitations/").status_code == 403


def test_members_and_the_last_admin(client_for, owner, project, make_user):
    volunteer_user = make_user("volunteer")
    api = client_for(owner)
    base = f"/api/projects/{project.pk}/members/"
    api.post(base, {"username": "volunteer", "role": "viewer"}, format="json")
    invitation = api.get(f"/api/projects/{project.pk}/invitations/").json()[0]
    client_for(volunteer_user).post(f"/api/invitations/{invitation['id']}/", {"accept": True}, format="json")
    volunteer = Membership.objects.get(project=project, user__username="volunteer").pk
    assert api.patch(f"{base}{volunteer}/", {"role": "annotator"}, format="json").json()["role"] == "annotator"
    own = Membership.objects.get(project=project, user=owner)
    response = api.delete(f"{base}{own.pk}/")
    assert response.status_code == 400 and "at least one admin" in response.json()["error"]
    assert api.patch(f"{base}{volunteer}/", {"role": "admin"}, format="json").status_code == 200
    assert api.delete(f"{base}{own.pk}/").status_code == 204
    assert Membership.objects.filter(project=project, role=Role.ADMIN).count() == 1


def test_deleting_asks_for_the_name_and_says_what_goes(
    client_for, owner, project, window, media_root, django_capture_on_commit_callbacks
):
    api = client_for(owner)
    deployment = window.recording.deployment
    upload_dir = media_root / "deployments" / str(deployment.pk)
    upload_dir.mkdir(parents=True)
    (upload_dir / "x.wav").write_bytes(b"RIFF")
    url = f"/api/projects/{project.pk}/deployments/{deployment.pk}/"
    refused = api.delete(url + "?confirm=pond")
    assert refused.status_code == 400
    assert "1 recordings" in refused.json()["error"] and "1 windows" in refused.json()["error"]
    assert Window.objects.filter(pk=window.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        deleted = api.delete(url + "?confirm=Pond")
    assert deleted.status_code == 200 and deleted.json()["windows"] == 1
    assert not Window.objects.filter(pk=window.pk).exists()
    assert not upload_dir.exists()
    client = Client()
    client.force_login(owner)
    assert b"Type <code>Wetlands</code> to confirm" in client.get(f"/projects/{project.pk}/settings/").content
    assert api.delete(f"/api/projects/{project.pk}/?confirm=Wetlands").status_code == 200
    assert not Project.objects.filter(pk=project.pk).exists()


@pytest.mark.parametrize(
    "value", ["²", "٣", "1e3", "nan", "-1", " 1", "99999999999999999999", "１"], ids=lambda v: ascii(v)
)
def test_every_number_a_client_sends_is_ascii_digits_or_a_400(client_for, owner, project, value):
    deployment = create_deployment(project, "D")
    model = register_embedding_model("m", "1", 4, 1.0, 1.0, 16_000)
    recording = Recording.objects.create(
        deployment=deployment, path="/x/a.wav", filename="a.wav", status=RecordingStatus.DONE, duration_s=3
    )
    replace_windows(recording.pk, model, np.arange(3.0), np.arange(3.0) + 1, np.ones((3, 4), np.float32))
    window = recording.windows.first()
    label = project.labels.create(name="owl")
    api = client_for(owner)
    base = f"/api/projects/{project.pk}"
    for url in (
        f"{base}/windows/{window.pk}/spectrogram.png?gain={value}",
        f"{base}/windows/{window.pk}/audio/?context={value}",
        f"{base}/recordings/{recording.pk}/audio/?start={value}&end=2",
        f"{base}/annotations/?window={value}",
        f"{base}/recordings/{recording.pk}/spectrogram.png?start={value}&end=2",
    ):
        response = api.get(url)
        assert response.status_code == 400, (url, response.status_code)
        assert response.json()["error"]
    page = Client()
    page.force_login(owner)
    for url in (
        f"/projects/{project.pk}/search/?history={value}",
        f"/projects/{project.pk}/labels/{label.pk}/?offset={value}",
        f"/projects/{project.pk}/recordings/{recording.pk}/?start={value}",
    ):
        assert page.get(url).status_code == 200, url  # the page, with the error said on it


@pytest.mark.parametrize("body", ["[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, '{"name": NaN}'])
def test_deeply_nested_or_odd_json_is_a_400(client_for, owner, project, body):
    api = client_for(owner)
    for url in ("/api/projects/", f"/api/projects/{project.pk}/search/", f"/api/projects/{project.pk}/labels/"):
        response = api.post(url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.status_code)


def test_undo_of_a_page_action_is_one_transaction(client_for, owner, project, window, make_user):
    """The undo of "mark the page negative": all labels back as they were, or none."""
    frog = project.labels.get()
    model = window.model
    replace_windows(window.recording_id, model, np.array([0.0, 1.0]), np.array([1.0, 2.0]), np.ones((2, 4), np.float32))
    first, other = (
        Window.objects.filter(recording_id=window.recording_id).order_by("start_s").values_list("pk", flat=True)
    )
    foreign = create_deployment(create_project(make_user("x"), "Other"), "D")
    stray_recording = Recording.objects.create(deployment=foreign, path="/y.wav", filename="y.wav")
    replace_windows(stray_recording.pk, model, np.array([0.0]), np.array([1.0]), np.ones((1, 4), np.float32))
    stray = Window.objects.get(recording=stray_recording).pk
    api = client_for(owner)
    base = f"/api/projects/{project.pk}/annotations/"
    api.post(base, {"window": first, "label": frog.pk, "value": "positive"}, format="json")
    api.post(f"{base}bulk/", {"windows": [first, other], "label": frog.pk, "value": "negative"}, format="json")

    bad = [{"window": first, "value": "positive"}, {"window": stray, "value": None}]
    assert api.post(f"{base}restore/", {"label": frog.pk, "changes": bad}, format="json").status_code == 400
    assert set(Annotation.objects.values_list("window_id", "value")) == {(first, "negative"), (other, "negative")}
    undo = [{"window": first, "value": "positive"}, {"window": other, "value": None}]
    response = api.post(f"{base}restore/", {"label": frog.pk, "changes": undo}, format="json")
    assert response.json() == {"changed": 2}
    assert set(Annotation.objects.values_list("window_id", "value")) == {(first, "positive")}
    assert LabelChange.objects.filter(window_id=other, old_value="negative", new_value="").exists()


def test_audio_that_is_not_on_the_server_is_a_404_that_says_so(client_for, owner, project, window, media_root):
    api = client_for(owner)
    base = f"/api/projects/{project.pk}"
    for url in (
        f"{base}/windows/{window.pk}/audio/",
        f"{base}/recordings/{window.recording_id}/audio/?start=0&end=1",
        f"{base}/windows/{window.pk}/spectrogram.png",
        f"{base}/recordings/{window.recording_id}/spectrogram.png?start=0&end=5",
    ):
        response = api.get(url, follow=True)
        assert response.status_code == 404, (url, response.status_code)
        assert "pond.wav is not on the server" in response.json()["error"]


def test_a_stretch_of_a_recording_plays_at_the_files_own_rate_and_bad_stretches_are_refused(
    client_for, owner, project, tmp_path, birdsong
):
    samples, rate = birdsong
    path = tmp_path / "dawn.wav"
    soundfile.write(str(path), np.stack([samples, samples * 0.5], axis=1), rate, subtype="PCM_16")
    deployment = create_deployment(project, "Dawn", channel=1)
    recording = Recording.objects.create(
        deployment=deployment, path=str(path), filename="dawn.wav", status=RecordingStatus.DONE, duration_s=10.0
    )
    api = client_for(owner)
    url = f"/api/projects/{project.pk}/recordings/{recording.pk}/audio/"
    response = api.get(f"{url}?start=2&end=5.5")
    assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
    played, played_rate = soundfile.read(io.BytesIO(response.content), dtype="float32")
    assert played_rate == rate and played.shape == (int(3.5 * rate),)  # the embedded channel alone
    np.testing.assert_allclose(played, samples[2 * rate : int(5.5 * rate)] * 0.5, atol=1e-4)
    last = api.get(f"{url}?start=9&end=29")  # the file's end comes first
    assert soundfile.info(io.BytesIO(last.content)).frames == rate
    for stretch, says in (
        ("start=0&end=61", "at most 60 s"),
        ("start=4&end=4", "must start before it ends"),
        ("start=10&end=12", "is 10 s long"),
        ("start=2", "give the stretch to play"),
    ):
        refused = api.get(f"{url}?{stretch}")
        assert refused.status_code == 400 and says in refused.json()["error"], (stretch, refused.content)


def test_the_settings_page_imports_and_exports_hoplite_databases(owner, project):
    from annotations.models import HopliteExport

    model = register_embedding_model("m", "1", 4, 1.0, 1.0, 16_000)
    done = HopliteExport.objects.create(project=project, created_by=owner, embedding_model=model, status="done")
    page = Client()
    page.force_login(owner)
    html = page.get(f"/projects/{project.pk}/settings/").content.decode()
    assert f'data-multipart-form="/api/projects/{project.pk}/hoplite-imports/"' in html
    assert f"/api/projects/{project.pk}/hoplite-exports/{done.pk}/download/" in html
    assert 'http-equiv="refresh"' not in html  # nothing running, nothing to follow
