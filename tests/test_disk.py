"""What low-privilege users can write to disk stays bounded: spectrogram tiles, example clips."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from annotations.models import Membership, Recording, Role
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
