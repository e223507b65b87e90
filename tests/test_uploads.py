"""Chunked, resumable uploads: byte-identical files, resuming after interruptions, and
refusals with a reason."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from annotations import uploads
from annotations.demo import birdsong_wav
from annotations.deployments import create_deployment, create_project, upload_folder
from annotations.errors import InputError
from annotations.models import Membership, Recording, Role, UploadSession

pytestmark = pytest.mark.django_db

NAME = "20240521_053000+1000.wav"  # the "+1000" UTC offset does not survive sanitising


@pytest.fixture
def owner(make_user):
    return make_user("owner")


@pytest.fixture
def deployment(owner, media_root):
    return create_deployment(create_project(owner, "Wetlands", labels=["frog"]), "Pond")


@pytest.fixture
def api(client_for, owner):
    return client_for(owner)


@pytest.fixture
def birdsong_bytes() -> bytes:
    return birdsong_wav().read_bytes()


def uploads_url(deployment) -> str:
    return f"/api/projects/{deployment.project_id}/deployments/{deployment.pk}/uploads/"


def start(api, deployment, data: bytes, name: str = NAME):
    return api.post(uploads_url(deployment), {"filename": name, "size_bytes": len(data)}, format="json")


def put_chunk(api, url: str, data: bytes, offset: int):
    return api.put(url, data, content_type="application/octet-stream", HTTP_UPLOAD_OFFSET=str(offset))


def send(api, url: str, data: bytes, offset: int, chunk: int):
    """PUT ``data[offset:]`` in chunks, each at the offset the server confirmed; the last answer."""
    while True:
        response = put_chunk(api, url, data[offset : offset + chunk], offset)
        assert response.status_code == 200, response.json()
        offset = response.json()["received_bytes"]
        if offset == len(data):
            return response


def test_real_audio_sent_in_chunks_is_byte_identical(api, deployment, birdsong_bytes):
    started = start(api, deployment, birdsong_bytes)
    assert started.status_code == 200
    assert started.json()["received_bytes"] == 0 and started.json()["recording"] is None
    url = f"{uploads_url(deployment)}{started.json()['id']}/"
    assert api.get(uploads_url(deployment)).json()[0]["id"] == started.json()["id"]

    done = send(api, url, birdsong_bytes, 0, chunk=100_000)  # 7 chunks

    recording = Recording.objects.get(pk=done.json()["recording"])
    assert recording.deployment == deployment
    assert Path(recording.path).read_bytes() == birdsong_bytes
    assert recording.filename == "20240521_053000_1000.wav" and recording.size_bytes == len(birdsong_bytes)
    assert recording.started_at == dt.datetime(2024, 5, 20, 19, 30, tzinfo=dt.UTC)  # from the name as uploaded
    assert api.get(uploads_url(deployment)).json() == []  # no longer unfinished
    assert list((upload_folder(deployment.pk) / ".partial").iterdir()) == []


def long_wav(birdsong, repeats: int) -> bytes:
    """Birdsong repeated: 640 kB of 16-bit WAV per repeat."""
    samples, rate = birdsong
    buffer = io.BytesIO()
    soundfile.write(buffer, np.tile(samples, repeats), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_a_chunk_larger_than_django_s_body_limit_streams(api, deployment, birdsong, settings):
    data = long_wav(birdsong, 5)  # 3.2 MB
    chunk = 3 * 1024**2
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < chunk < len(data)
    url = f"{uploads_url(deployment)}{start(api, deployment, data).json()['id']}/"
    done = send(api, url, data, 0, chunk=chunk)
    assert Path(Recording.objects.get(pk=done.json()["recording"]).path).read_bytes() == data


def test_chunks_are_read_in_bounded_pieces(owner, deployment, birdsong):
    data = long_wav(birdsong, 20)  # 12.8 MB
    chunk = 12 * 1024**2
    reads = []

    class Body(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    session = uploads.start_upload(deployment, owner, NAME, len(data))
    assert uploads.append_chunk(session, 0, Body(data[:chunk]), chunk).received_bytes == chunk
    assert len(reads) == 12 and all(0 < size <= 1024**2 for size in reads)  # never the whole chunk at once
    done = uploads.append_chunk(session, chunk, Body(data[chunk:]), len(data) - chunk)
    assert Path(done.recording.path).read_bytes() == data


def test_an_interrupted_upload_resumes_where_it_stopped(api, owner, deployment, birdsong_bytes):
    first = start(api, deployment, birdsong_bytes).json()
    url = f"{uploads_url(deployment)}{first['id']}/"
    assert put_chunk(api, url, birdsong_bytes[:100_000], 0).json()["received_bytes"] == 100_000
    assert put_chunk(api, url, birdsong_bytes[100_000:200_000], 100_000).json()["received_bytes"] == 200_000
    # A chunk cut short (the client went away) keeps what arrived ...
    session = UploadSession.objects.get(pk=first["id"])
    cut = uploads.append_chunk(session, 200_000, io.BytesIO(birdsong_bytes[200_000:250_000]), 100_000)
    assert cut.received_bytes == 250_000
    # ... and bytes a dying request wrote but could not record are cut, not kept twice.
    with open(session.partial_path, "ab") as partial:
        partial.write(birdsong_bytes[250_000:260_000])

    # The page is reloaded and the same file chosen again: the same upload, where it stopped.
    resumed = start(api, deployment, birdsong_bytes)
    assert resumed.json()["id"] == first["id"]
    assert resumed.json()["received_bytes"] == 250_000
    done = send(api, url, birdsong_bytes, resumed.json()["received_bytes"], chunk=150_000)
    assert Path(Recording.objects.get(pk=done.json()["recording"]).path).read_bytes() == birdsong_bytes
    assert UploadSession.objects.count() == 1


def test_a_chunk_at_the_wrong_offset_is_told_where_to_resume(api, deployment, birdsong_bytes):
    url = f"{uploads_url(deployment)}{start(api, deployment, birdsong_bytes).json()['id']}/"
    put_chunk(api, url, birdsong_bytes[:1000], 0)
    for wrong in (0, 500, 2000):
        response = put_chunk(api, url, birdsong_bytes[wrong : wrong + 1000], wrong)
        assert response.status_code == 409
        assert response.json()["received_bytes"] == 1000
        assert "resume at byte 1000" in response.json()["error"]
    done = send(api, url, birdsong_bytes, 1000, chunk=400_000)
    # The answer to the last chunk was lost and it is sent again: already complete.
    again = put_chunk(api, url, birdsong_bytes[-1000:], len(birdsong_bytes) - 1000)
    assert again.status_code == 409
    assert again.json()["recording"] == done.json()["recording"]
    assert "already complete" in again.json()["error"]
    assert Recording.objects.count() == 1


def test_a_file_that_is_not_audio_is_refused_and_deleted(api, deployment):
    text = b"just some text, not audio\n" * 10_000
    session_id = start(api, deployment, text, name="notes.wav").json()["id"]
    partial = UploadSession.objects.get(pk=session_id).partial_path
    url = f"{uploads_url(deployment)}{session_id}/"
    # Refused with its first chunk, not after the whole file.
    refused = put_chunk(api, url, text[:100_000], 0)
    assert refused.status_code == 400
    reason = "the content is not WAV, FLAC, OGG or MP3 audio, whatever its name says"
    assert refused.json()["error"] == f"notes.wav: {reason}"  # the reason, said once
    assert api.get(url).status_code == 404
    assert not UploadSession.objects.exists()
    assert not Recording.objects.exists()
    # A file too short to tell before its end is refused at completion.
    tiny_id = start(api, deployment, b"short note", name="tiny.wav").json()["id"]
    tiny_partial = UploadSession.objects.get(pk=tiny_id).partial_path
    refused = put_chunk(api, f"{uploads_url(deployment)}{tiny_id}/", b"short note", 0)
    assert refused.status_code == 400 and refused.json()["error"].startswith("tiny.wav: ")
    assert not Recording.objects.exists()
    assert not Path(partial).exists() and not Path(tiny_partial).exists()


def test_what_cannot_be_uploaded_is_refused_at_the_start(api, deployment, settings, birdsong_bytes):
    settings.PERCH_AGILE_MAX_UPLOAD_BYTES = 1000
    refusals = {
        "big.wav": (2000, "over the limit of"),
        "photo.jpg": (10, "unsupported file type"),
        "empty.flac": (0, "the file is empty"),
    }
    for name, (size, reason) in refusals.items():
        response = api.post(uploads_url(deployment), {"filename": name, "size_bytes": size}, format="json")
        assert response.status_code == 400
        assert response.json()["error"].startswith(f"{name}: ") and reason in response.json()["error"]
    assert not UploadSession.objects.exists()

    settings.PERCH_AGILE_MAX_UPLOAD_BYTES = 10**9
    url = f"{uploads_url(deployment)}{start(api, deployment, birdsong_bytes[:1000]).json()['id']}/"
    too_long = put_chunk(api, url, birdsong_bytes[:1001], 0)
    assert too_long.status_code == 400 and "past the declared size of 1000 bytes" in too_long.json()["error"]


def test_a_chunk_over_the_limit_is_refused_before_it_is_read(owner, deployment, monkeypatch, birdsong_bytes):
    monkeypatch.setattr(uploads, "MAX_CHUNK_BYTES", 1024**2)
    session = uploads.start_upload(deployment, owner, NAME, len(birdsong_bytes))
    with pytest.raises(InputError, match="at most 1 MiB"):
        uploads.append_chunk(session, 0, io.BytesIO(), 1024**2 + 1)
    session.refresh_from_db()
    assert session.received_bytes == 0


def test_strangers_get_404_and_viewers_403(api, client_for, make_user, owner, deployment, birdsong_bytes):
    session_id = start(api, deployment, birdsong_bytes).json()["id"]
    url = f"{uploads_url(deployment)}{session_id}/"
    stranger = make_user("stranger")
    elsewhere = create_deployment(create_project(stranger, "Elsewhere"), "Hill")
    other_pond = create_deployment(deployment.project, "Other pond")
    outsider = client_for(stranger)
    for path in (url, f"{uploads_url(elsewhere)}{session_id}/"):
        assert outsider.get(path).status_code == 404
        assert put_chunk(outsider, path, birdsong_bytes[:100], 0).status_code == 404
        assert outsider.delete(path).status_code == 404
    assert api.get(f"{uploads_url(other_pond)}{session_id}/").status_code == 404
    assert put_chunk(api, f"{uploads_url(other_pond)}{session_id}/", birdsong_bytes[:100], 0).status_code == 404

    viewer = make_user("viewer")
    Membership.objects.create(project=deployment.project, user=viewer, role=Role.VIEWER)
    looker = client_for(viewer)
    assert start(looker, deployment, birdsong_bytes).status_code == 403
    assert put_chunk(looker, url, birdsong_bytes[:100], 0).status_code == 403
    assert looker.delete(url).status_code == 403
    assert UploadSession.objects.get(pk=session_id).received_bytes == 0


def test_abandoning_and_deleting_the_deployment_remove_partial_files(
    api, deployment, birdsong_bytes, django_capture_on_commit_callbacks
):
    abandoned = start(api, deployment, birdsong_bytes, name="a.wav").json()["id"]
    kept = start(api, deployment, birdsong_bytes, name="b.wav").json()["id"]
    partials = {pk: UploadSession.objects.get(pk=pk).partial_path for pk in (abandoned, kept)}
    for pk in partials:
        put_chunk(api, f"{uploads_url(deployment)}{pk}/", birdsong_bytes[:1000], 0)
    assert api.delete(f"{uploads_url(deployment)}{abandoned}/").status_code == 204
    assert not Path(partials[abandoned]).exists()
    assert Path(partials[kept]).stat().st_size == 1000

    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/projects/{deployment.project_id}/deployments/{deployment.pk}/?confirm=Pond")
    assert response.status_code == 200
    assert not UploadSession.objects.exists()
    assert not upload_folder(deployment.pk).exists()


def test_the_deployment_page_uploads_in_chunks(owner, deployment):
    client = Client()
    client.force_login(owner)
    page = client.get(f"/projects/{deployment.project_id}/deployments/{deployment.pk}/").content.decode()
    assert f'data-chunked-upload="{uploads_url(deployment)}"' in page
    assert "frontend/upload.js" in page
    assert "data-upload-form" not in page


def test_uploads_left_idle_for_days_are_purged_with_their_partial_files(api, deployment, birdsong_bytes):
    stale = start(api, deployment, birdsong_bytes, name="stale.wav").json()["id"]
    fresh = start(api, deployment, birdsong_bytes, name="fresh.wav").json()["id"]
    for pk in (stale, fresh):
        put_chunk(api, f"{uploads_url(deployment)}{pk}/", birdsong_bytes[:1000], 0)
    stale_partial = UploadSession.objects.get(pk=stale).partial_path
    UploadSession.objects.filter(pk=stale).update(updated_at=timezone.now() - dt.timedelta(days=8))
    output = io.StringIO()
    call_command("purge_abandoned_uploads", "--days", "7", stdout=output)
    assert "deleted 1 unfinished upload(s)" in output.getvalue()
    assert list(UploadSession.objects.values_list("pk", flat=True)) == [fresh]
    assert not Path(stale_partial).exists()


def test_a_file_the_deployment_already_holds_is_refused_unless_kept(api, deployment, birdsong_bytes):
    """The same audio under another name: refused with its reason at its last chunk, its
    bytes deleted, nothing stored twice; stored when asked to keep it."""
    first = start(api, deployment, birdsong_bytes, name="dawn.wav").json()["id"]
    send(api, f"{uploads_url(deployment)}{first}/", birdsong_bytes, 0, chunk=400_000)
    again = start(api, deployment, birdsong_bytes, name="dawn-copy.wav").json()["id"]
    url = f"{uploads_url(deployment)}{again}/"
    assert put_chunk(api, url, birdsong_bytes[:400_000], 0).status_code == 200
    refused = put_chunk(api, url, birdsong_bytes[400_000:], 400_000)
    assert refused.status_code == 400
    assert refused.json()["error"] == (
        "dawn-copy.wav: this deployment already holds the same audio as dawn.wav "
        "(choose “keep duplicates” to store it again)"
    )
    assert list(Recording.objects.values_list("filename", flat=True)) == ["dawn.wav"]
    assert sorted(p.name for p in upload_folder(deployment.pk).iterdir() if p.is_file()) == ["dawn.wav"]
    assert not any((upload_folder(deployment.pk) / ".partial").iterdir())
    assert not UploadSession.objects.filter(recording__isnull=True).exists()
    # The form upload refuses it too, and the reason is said once.
    form = Client()
    form.force_login(deployment.project.created_by)
    files_url = f"/api/projects/{deployment.project_id}/deployments/{deployment.pk}/files/"
    copy = io.BytesIO(birdsong_bytes)
    copy.name = "dawn-2.wav"
    posted = form.post(files_url, {"files": copy})
    assert posted.status_code == 400 and "already holds the same audio as dawn.wav" in posted.json()["error"]
    assert Recording.objects.count() == 1

    kept = start(api, deployment, birdsong_bytes, name="dawn-copy.wav").json()["id"]
    send(api, f"{uploads_url(deployment)}{kept}/?keep_duplicate=1", birdsong_bytes, 0, chunk=400_000)
    assert sorted(Recording.objects.values_list("filename", flat=True)) == ["dawn-copy.wav", "dawn.wav"]
