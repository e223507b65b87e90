"""What low-privilege users can write to disk stays bounded: spectrogram tiles, example clips."""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from annotations.clips import clip_folder
from annotations.deployments import create_deployment, create_project, hoplite_folder
from annotations.embedding_store import register_embedding_model
from annotations.models import ClipQuery, HopliteExport, Membership, Recording, Role
from tests.test_annotator_ui import survey  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def _cache(media):
    files = list((media / "spectrograms").rglob("*.png"))
    return len(files), sum(f.stat().st_size for f in files)


def test_shifted_spans_share_one_cached_tile(survey, media_root, make_user):  # noqa: F811
    project, _, windows, _, _ = survey
    viewer = make_user("viewer")
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    recording = Recording.objects.get(filename="A0.wav")
    url = f"/api/projects/{project.pk}/recordings/{recording.pk}/spectrogram.png"
    for shift in range(100):
        start = 0.5 + shift / 1000
        response = client.get(url, {"start": f"{start:.3f}", "end": f"{start + 2:.3f}", "gain": "10"})
        assert response.status_code == 302
        assert "start=0.0" in response["Location"] and "end=5.0" in response["Location"], response["Location"]
        assert "gain=10" in response["Location"]  # the style stays
        assert client.get(response["Location"]).status_code == 200
    files, size = _cache(media_root)
    assert files == 1 and size < 200_000
    window = f"/api/projects/{project.pk}/windows/{windows[('A', 0, 3)]}/spectrogram.png"
    for shift in range(100):
        assert client.get(window, {"context": f"{1.6 + shift / 1000:.3f}"}).status_code == 200
    assert _cache(media_root)[0] == 2  # context in whole seconds: one more picture
    assert client.get(url, {"start": "0", "end": "61"}).status_code == 400


def test_the_recording_page_asks_for_its_tile_directly(survey, media_root):  # noqa: F811
    project, _, _, client, _ = survey
    recording = Recording.objects.get(filename="A0.wav")
    Recording.objects.filter(pk=recording.pk).update(duration_s=67.123456)
    page = client.get(f"/projects/{project.pk}/recordings/{recording.pk}/", {"start": 60}).content.decode()
    src = re.search(r'<img class="spectrogram" src="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert "start=60.0&end=67.123456" in src
    assert client.get(src).status_code == 200  # on the grid already: no redirect


def _clip(project, user, name: str, size: int = 1000, **fields) -> ClipQuery:
    folder = clip_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\0" * size)
    return ClipQuery.objects.create(project=project, created_by=user, path=str(path), filename=name, **fields)


def test_a_project_takes_its_clip_files_with_it(make_user, media_root, client_for, django_capture_on_commit_callbacks):
    owner = make_user("owner")
    project, other = create_project(owner, "Doomed"), create_project(owner, "Kept")
    doomed, kept = _clip(project, owner, "1-big.wav"), _clip(other, owner, "2-kept.wav")
    recording_audio = media_root / "recording.wav"
    recording_audio.write_bytes(b"RIFF")
    deployment = create_deployment(project, "D")
    recording = Recording.objects.create(deployment=deployment, path=str(recording_audio), filename="recording.wav")
    ClipQuery.objects.create(project=project, created_by=owner, recording=recording, path=str(recording_audio))
    model = register_embedding_model("m", "1", 4, 1.0, 1.0, 16_000)
    export = HopliteExport.objects.create(project=project, created_by=owner, embedding_model=model)
    hoplite_folder("exports", export.pk).mkdir(parents=True)
    (hoplite_folder("exports", export.pk) / "hoplite.zip").write_bytes(b"PK")
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(owner).delete(f"/api/projects/{project.pk}/?confirm=Doomed")
    assert response.status_code == 200, response.json()
    assert not Path(doomed.path).exists() and not ClipQuery.objects.filter(project_id=project.pk).exists()
    assert not hoplite_folder("exports", export.pk).exists()  # its hoplite exports go too
    assert Path(kept.path).exists()  # another project's clip stays


def test_clips_are_deleted_by_their_uploader_or_an_admin(
    make_user, media_root, client_for, django_capture_on_commit_callbacks
):
    owner, annotator = make_user("owner"), make_user("annotator")
    project = create_project(owner, "P")
    Membership.objects.create(project=project, user=annotator, role=Role.ANNOTATOR)
    mine, theirs = _clip(project, annotator, "1-mine.wav"), _clip(project, owner, "2-theirs.wav")
    url = f"/api/projects/{project.pk}/clip-queries/"
    assert client_for(annotator).delete(f"{url}{theirs.pk}/").status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(annotator).delete(f"{url}{mine.pk}/").status_code == 204
        assert client_for(owner).delete(f"{url}{theirs.pk}/").status_code == 204
    assert not ClipQuery.objects.exists() and not list(clip_folder().iterdir())


def test_old_clip_files_are_purged_and_their_embeddings_kept(make_user, media_root, django_capture_on_commit_callbacks):
    owner = make_user("owner")
    project = create_project(owner, "P")
    old, new = _clip(project, owner, "1-old.wav"), _clip(project, owner, "2-new.wav")
    ClipQuery.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(days=40))
    output = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_old_clips", "--days", "30", stdout=output)
    assert output.getvalue().startswith("deleted the files of 1 example clip(s)")
    assert not Path(old.path).exists() and Path(new.path).exists()
    assert ClipQuery.objects.get(pk=old.pk).path == "" and ClipQuery.objects.count() == 2


def test_each_user_has_a_clip_quota(make_user, media_root, client_for, settings):
    settings.PERCH_AGILE_CLIP_QUOTA_BYTES = 1_000_000
    owner = make_user("owner")
    project = create_project(owner, "P")
    _clip(project, owner, "1-held.wav", size=800_000)
    url = f"/api/projects/{project.pk}/clip-queries/"
    upload = SimpleUploadedFile("more.wav", b"\0" * 300_000, content_type="audio/wav")
    response = client_for(owner).post(url, {"file": upload}, format="multipart")
    assert response.status_code == 400
    assert "your example clips take 0.8 MB of your 1.0 MB; this one (0.3 MB) does not fit" in response.json()["error"]
    assert ClipQuery.objects.count() == 1
    small = SimpleUploadedFile("small.wav", b"\0" * 100_000, content_type="audio/wav")
    assert client_for(owner).post(url, {"file": small}, format="multipart").status_code == 201
    other = make_user("other")  # a quota is per user
    Membership.objects.create(project=project, user=other, role=Role.ANNOTATOR)
    again = SimpleUploadedFile("more.wav", b"\0" * 300_000, content_type="audio/wav")
    assert client_for(other).post(url, {"file": again}, format="multipart").status_code == 201
