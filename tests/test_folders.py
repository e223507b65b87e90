"""Server folders: files moved or renamed, and folders mounted elsewhere, keep their recordings."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pytest
import soundfile

from annotations.deployments import (
    create_deployment,
    create_project,
    file_fingerprint,
    grant_folder,
    queue_ingest,
    start_time_problems,
)
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Annotation, Recording, Window

pytestmark = pytest.mark.django_db


@pytest.fixture
def card(tmp_path, settings, birdsong):
    """A recorder's card copied to the server: three files in a folder of its own."""
    samples, rate = birdsong
    root = tmp_path / "audio"
    folder = root / "card1"
    folder.mkdir(parents=True)
    for day in (21, 22, 23):
        # Same length, different audio: recorder files often share their size.
        soundfile.write(folder / f"202405{day}_053000.WAV", np.roll(samples, day * 1000)[: 2 * rate], rate)
    settings.PERCH_AGILE_AUDIO_ROOTS = [root]
    return root, folder


def test_files_of_equal_size_have_different_fingerprints(card):
    _, folder = card
    prints = {file_fingerprint(path) for path in folder.iterdir()}
    assert len(prints) == 3


def test_a_file_moved_inside_the_folder_keeps_its_recording_windows_and_labels(card, make_user):
    _, folder = card
    user = make_user("admin")
    project = create_project(user, "Card", labels=["owl"])
    grant_folder(project, str(folder))
    deployment = create_deployment(project, "Card 1", server_folder=str(folder))
    recording = Recording.objects.get(filename="20240522_053000.WAV")
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    replace_windows(recording.pk, model, np.array([0.0]), np.array([1.0]), np.ones((1, 4), np.float32))
    window = Window.objects.get(recording=recording)
    Annotation.objects.create(window=window, label=project.labels.get(), annotator=user, value="positive")

    (folder / "day2").mkdir()
    shutil.move(folder / "20240522_053000.WAV", folder / "day2" / "renamed.WAV")
    queue_ingest(deployment)

    assert deployment.recordings.count() == 3
    recording.refresh_from_db()
    assert recording.path == str(folder / "day2" / "renamed.WAV") and recording.filename == "day2/renamed.WAV"
    assert Annotation.objects.get(window__recording=recording).value == "positive"


def test_a_folder_mounted_elsewhere_is_found_again_by_content(card, make_user, client_for):
    root, folder = card
    user = make_user("admin")
    project = create_project(user, "Card", labels=["owl"])
    grant_folder(project, str(root))  # the whole card root: its second disk too
    deployment = create_deployment(project, "Card 1", server_folder=str(folder))
    before = dict(deployment.recordings.values_list("filename", "pk"))
    moved = root / "disk2" / "card1"
    shutil.copytree(folder, moved)  # copied, and the old place still there: no duplicates either way
    (moved / "20240524_053000.WAV").write_bytes((folder / "20240521_053000.WAV").read_bytes()[:-2] + b"\x01\x02")

    api = client_for(user)
    url = f"/api/projects/{project.pk}/deployments/{deployment.pk}/"
    response = api.patch(url, {"server_folder": str(moved)}, format="json")
    assert response.status_code == 200, response.json()
    after = dict(deployment.recordings.values_list("filename", "pk"))
    assert {name: after[name] for name in before} == before  # the same recordings, not new ones
    assert set(after) - set(before) == {"20240524_053000.WAV"}  # a file new to the deployment
    assert set(deployment.recordings.values_list("path", flat=True)) == {str(p) for p in moved.iterdir()}
    assert api.patch(url, {"server_folder": str(root.parent / "elsewhere")}, format="json").status_code == 400


def test_doubtful_start_times_are_pointed_out(card, make_user, client_for):
    _, folder = card
    user = make_user("admin")
    project = create_project(user, "Card", labels=["owl"])
    grant_folder(project, str(folder))
    deployment = create_deployment(
        project,
        "Card 1",
        server_folder=str(folder),
        deployed_on=dt.date(2024, 5, 22),
        retrieved_on=dt.date(2024, 5, 22),
    )
    unset_clock = Recording.objects.get(filename="20240523_053000.WAV")
    unset_clock.started_at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    unset_clock.save()
    warnings = (
        client_for(user).get(f"/api/projects/{project.pk}/deployments/{deployment.pk}/").json()["start_time_warnings"]
    )
    assert warnings == [
        "1 recording(s) start before 2000: the recorder's clock was probably never set",
        "1 recording(s) start before the deployment date 2024-05-22",
        warnings[2],
    ]
    assert "read as UTC" in warnings[2]
    deployment.timezone, deployment.retrieved_on = "Europe/Berlin", dt.date(2024, 5, 21)
    deployment.save()
    Recording.objects.filter(filename="20240521_053000.WAV").update(started_at=dt.datetime(2999, 1, 1, tzinfo=dt.UTC))
    assert start_time_problems(deployment) == [
        "1 recording(s) start in the future: is the recorder's clock right?",
        "1 recording(s) start before 2000: the recorder's clock was probably never set",
        "1 recording(s) start after the retrieval date 2024-05-21",
    ]
