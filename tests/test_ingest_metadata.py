"""Ingest metadata: start times from AudioMoth comments and file names, deployment metadata
from forms and CSV tables, the chosen channel, the model's top predictions, task retries."""

from __future__ import annotations

import datetime as dt
import io
import struct
import zoneinfo
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
from django.db import OperationalError
from django.test import Client

from annotations.audio import AudioError, iter_resampled_blocks, read_segment, wav_info_comment
from annotations.deployment_metadata import import_deployment_metadata, parse_metadata_csv
from annotations.deployments import create_deployment, create_project, grant_folder, queue_ingest
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.models import Deployment, Membership, Recording, RecordingStatus, Role, StartTimeSource, Window
from annotations.playback import window_wav
from annotations.predictions import named_predictions
from annotations.recording_time import parse_audiomoth_comment, recording_start, start_time_from_filename
from tests.conftest import wait_for
from workers import tasks
from workers.embedding_models import LoadedModel, ModelSpec, hoplite_class_list

MOTH = "AudioMoth 24F319055F4A7E7D"
COMMENT = (
    f"Recorded at 19:30:00 21/05/2024 (UTC+1) by {MOTH} at medium gain while battery was 4.2V "
    "and temperature was 15.2C."
)


def hours(h: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=h))


def wav_bytes(samples: np.ndarray, rate: int, comment: str | None = None) -> bytes:
    """A 16-bit WAV; with ``comment``, a LIST/INFO/ICMT chunk before the audio, as AudioMoth writes it."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    data = buffer.getvalue()
    if comment is None:
        return data
    text = comment.encode() + b"\0"
    icmt = b"ICMT" + struct.pack("<I", len(text)) + text + b"\0" * (len(text) % 2)
    info = b"LIST" + struct.pack("<I", 4 + len(icmt)) + b"INFO" + icmt
    at = data.index(b"data")
    body = b"WAVE" + data[12:at] + info + data[at:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- start times ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("comment", "start", "recorder"),
    [
        (COMMENT, dt.datetime(2024, 5, 21, 19, 30, tzinfo=hours(1)), MOTH),
        (
            "Recorded at 00:00:05 01/01/2020 (UTC) by AudioMoth 0FE081F80FE081F0 at gain setting 2 while battery "
            "state was 3.6V.",
            dt.datetime(2020, 1, 1, 0, 0, 5, tzinfo=dt.UTC),
            "AudioMoth 0FE081F80FE081F0",
        ),
        (
            "Recorded at 06:15:00 03/07/2023 (UTC-5) by AudioMoth 242A260463A0B1C2 at high gain.",
            dt.datetime(2023, 7, 3, 6, 15, tzinfo=hours(-5)),
            "AudioMoth 242A260463A0B1C2",
        ),
        (
            "Recorded at 23:59:59 29/02/2024 (UTC+5:30) by AudioMoth 242A260463A0B1C2.",
            dt.datetime(2024, 2, 29, 23, 59, 59, tzinfo=hours(5.5)),
            "AudioMoth 242A260463A0B1C2",
        ),
        ("Recorded at 10:00:00 01/06/2021 (UTC-3:30) during deployment 7.", dt.datetime(2021, 6, 1, 13, 30), ""),
    ],
)
def test_audiomoth_comments_give_start_and_recorder(comment, start, recorder):
    parsed = parse_audiomoth_comment(comment)
    expected = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    assert parsed.started_at == expected and parsed.started_at.utcoffset() is not None
    assert parsed.recorder == recorder


@pytest.mark.parametrize(
    "comment",
    ["", "garbage", "Recorded at 25:00:00 21/05/2024 (UTC)", "Recorded at 10:00:00 31/02/2024 (UTC)",
     "Recorded at 10:00:00 01/02/2024 (UTC+30)", "Recorded at 10:00 21/05/2024 (UTC)", "\x00\xff" * 40,
     "Recorded at 00:00:00 01/01/0001 (UTC+1) by AudioMoth 242A260463A0B1C2"],
)  # fmt: skip
def test_other_comments_give_nothing(comment):
    assert parse_audiomoth_comment(comment) is None


def test_wav_comment_is_found_in_the_header_without_the_audio():
    audio = np.zeros((4800, 1), np.float32)
    wav = wav_bytes(audio, 48_000, COMMENT)
    assert wav_info_comment(wav) == COMMENT
    assert wav_info_comment(wav[: wav.index(b"data") + 8]) == COMMENT  # the audio itself is not needed
    assert wav_info_comment(wav_bytes(audio, 48_000)) == ""
    assert wav_info_comment(wav_bytes(audio, 48_000, "odd")) == "odd"  # padded to an even size
    # Odd-sized chunk before it: the walk honours the pad byte.
    odd = b"junk" + struct.pack("<I", 3) + b"abc\0"
    assert wav_info_comment(wav[:12] + odd + wav[12:]) == COMMENT
    # A comment after the audio is not looked for; garbage and truncation give "".
    data_at = wav.index(b"data")
    info = wav[wav.index(b"LIST") : data_at]
    after = wav[:12] + wav[wav.index(b"fmt ") : wav.index(b"LIST")] + wav[data_at:] + info
    assert wav_info_comment(after) == ""
    assert wav_info_comment(b"ID3\x03" + bytes(100)) == wav_info_comment(wav[:20]) == ""
    assert wav_info_comment(wav[:12] + b"LIST" + struct.pack("<I", 2**31) + b"INFO") == ""


def test_recording_start_prefers_the_comment_then_the_name_in_local_time(tmp_path):
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    audio = np.zeros((4800, 1), np.float32)
    moth = tmp_path / "20240521_183000.WAV"
    moth.write_bytes(wav_bytes(audio, 48_000, COMMENT))
    start = recording_start(moth, moth.name, berlin)
    assert (start.started_at, start.source, start.recorder) == (
        dt.datetime(2024, 5, 21, 18, 30, tzinfo=dt.UTC),
        StartTimeSource.WAV_COMMENT,
        MOTH,
    )
    plain = tmp_path / "SM4_20240521_053000.wav"
    plain.write_bytes(wav_bytes(audio, 48_000))
    start = recording_start(plain, plain.name, berlin)
    assert start.source == StartTimeSource.FILENAME
    assert start.started_at == dt.datetime(2024, 5, 21, 3, 30, tzinfo=dt.UTC)  # 05:30 in Berlin, summer time
    assert start_time_from_filename("20240521T053000+1000_a.flac", berlin).utcoffset() == dt.timedelta(hours=10)
    assert recording_start(tmp_path / "missing.wav", "notes.wav", berlin).source == StartTimeSource.UNKNOWN
    assert start_time_from_filename("00010101_000000.wav", berlin) is None  # before 1900: no start


@pytest.fixture
def projects(make_user):
    """Project A (admin, annotator, viewer) and project B (another admin)."""
    admin, annotator, viewer, stranger = (make_user(name) for name in ("admin", "annotator", "viewer", "stranger"))
    project = create_project(admin, "A")
    Membership.objects.create(project=project, user=annotator, role=Role.ANNOTATOR)
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    other = create_project(stranger, "B")
    return SimpleNamespace(
        project=project, other=other, admin=admin, annotator=annotator, viewer=viewer, stranger=stranger
    )


def test_uploaded_and_folder_files_get_their_start_times(projects, client_for, media_root, tmp_path, settings):
    deployment = create_deployment(projects.project, "Moths", timezone="Europe/Berlin")
    audio = np.zeros((4800, 1), np.float32)
    upload = io.BytesIO(wav_bytes(audio, 48_000, COMMENT))
    upload.name = "20240521_193000.WAV"
    response = client_for(projects.admin).post(
        f"/api/projects/{projects.project.pk}/deployments/{deployment.pk}/files/", {"files": [upload]}
    )
    assert response.status_code == 201, response.json()
    body = response.json()["recordings"][0]
    assert body["started_at"] == "2024-05-21T18:30:00Z" and body["started_at_source"] == "wav_comment"
    deployment.refresh_from_db()
    assert deployment.recorder == MOTH

    folder = tmp_path / "songmeter"
    folder.mkdir()
    (folder / "SM4_20240101_220000.wav").write_bytes(wav_bytes(audio, 48_000))
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    grant_folder(projects.project, str(folder))
    songmeter = create_deployment(projects.project, "Song Meter", server_folder=str(folder), timezone="Europe/Berlin")
    recording = songmeter.recordings.get()
    assert recording.started_at == dt.datetime(2024, 1, 1, 21, tzinfo=dt.UTC)
    assert recording.started_at_source == StartTimeSource.FILENAME
    assert songmeter.recorder == ""


def test_admins_edit_start_times(projects, client_for):
    deployment = create_deployment(projects.project, "D", timezone="America/New_York")
    recording = Recording.objects.create(deployment=deployment, path="/x.wav", filename="x.wav")
    url = f"/api/projects/{projects.project.pk}/recordings/{recording.pk}/"
    admin = client_for(projects.admin)
    # Without an offset the time is local at the site; with one it is taken as given.
    response = admin.patch(url, {"started_at": "2024-07-01T05:00:00"}, format="json")
    assert response.status_code == 200, response.json()
    recording.refresh_from_db()
    assert recording.started_at == dt.datetime(2024, 7, 1, 9, tzinfo=dt.UTC)
    assert recording.started_at_source == StartTimeSource.EDITED
    assert response.json()["started_at_source"] == "edited"
    assert admin.patch(url, {"started_at": "2024-07-01T05:00:00+02:00"}, format="json").status_code == 200
    recording.refresh_from_db()
    assert recording.started_at == dt.datetime(2024, 7, 1, 3, tzinfo=dt.UTC)
    assert admin.patch(url, {"started_at": "yesterday"}, format="json").status_code == 400
    response = admin.patch(url, {"started_at": "0001-01-01T00:00:00"}, format="json")
    assert response.status_code == 400 and "between 1900 and 2200" in response.json()["error"]
    assert admin.get(url).json()["started_at"].startswith("2024-07-01T03:00:00")

    assert client_for(projects.viewer).patch(url, {"started_at": "2024-07-01T05:00"}, format="json").status_code == 403
    assert client_for(projects.annotator).patch(url, {"started_at": None}, format="json").status_code == 403
    assert client_for(projects.stranger).patch(url, {"started_at": None}, format="json").status_code == 404
    other = create_deployment(projects.other, "other")
    foreign = Recording.objects.create(deployment=other, path="/y.wav", filename="y.wav")
    foreign_url = f"/api/projects/{projects.project.pk}/recordings/{foreign.pk}/"
    assert admin.patch(foreign_url, {"started_at": None}, format="json").status_code == 404
    recording.refresh_from_db()
    assert recording.started_at == dt.datetime(2024, 7, 1, 3, tzinfo=dt.UTC)

    # The deployment page offers the edit to admins only, in the site's time zone.
    page = Client()
    page.force_login(projects.admin)
    html = page.get(f"/projects/{projects.project.pk}/deployments/{deployment.pk}/").content.decode()
    assert 'value="2024-06-30T23:00:00"' in html and 'data-method="PATCH"' in html and "Edited by a person" in html
    page.force_login(projects.viewer)
    html = page.get(f"/projects/{projects.project.pk}/deployments/{deployment.pk}/").content.decode()
    assert "2024-06-30 23:00:00" in html and 'name="started_at"' not in html


# --- deployment metadata ---------------------------------------------------------------


def test_deployment_metadata_through_the_api(projects, client_for):
    url = f"/api/projects/{projects.project.pk}/deployments/"
    admin = client_for(projects.admin)
    body = {
        "name": "Ridge",
        "site": "North",
        "latitude": 52.5,
        "longitude": 13.4,
        "recorder": MOTH,
        "timezone": "Europe/Berlin",
        "deployed_on": "2024-05-01",
        "retrieved_on": "2024-06-15",
        "channel": 1,
    }
    response = admin.post(url, body, format="json")
    assert response.status_code == 201, response.json()
    created = response.json()
    assert {key: created[key] for key in body} == body
    detail = f"{url}{created['id']}/"

    response = admin.patch(detail, {"timezone": "Mars/Olympus_Mons"}, format="json")
    assert response.status_code == 400
    assert "'Mars/Olympus_Mons' is not an IANA time zone" in response.json()["error"]
    assert admin.post(url, {"name": "X", "timezone": "Europe/Berln"}, format="json").status_code == 400
    assert admin.post(url, {"name": "X", "latitude": 123}, format="json").status_code == 400
    response = admin.patch(detail, {"retrieved_on": "2024-04-01"}, format="json")
    assert response.status_code == 400 and "before deployed_on" in response.json()["error"]
    response = admin.patch(detail, {"server_folder": "/elsewhere"}, format="json")
    assert response.status_code == 400 and "not in a server folder granted" in response.json()["error"]
    assert not Deployment.objects.filter(name="X").exists()

    response = admin.patch(detail, {"timezone": "America/Sao_Paulo", "channel": None, "site": "South"}, format="json")
    assert response.status_code == 200, response.json()
    deployment = Deployment.objects.get(pk=created["id"])
    assert (deployment.timezone, deployment.channel, deployment.site, deployment.recorder) == (
        "America/Sao_Paulo",
        None,
        "South",
        MOTH,
    )
    assert client_for(projects.viewer).patch(detail, {"site": "Nope"}, format="json").status_code == 403


CSV = """name,site,latitude,longitude,recorder,timezone,deployed_on,retrieved_on,channel
Ridge,North,52.5,13.4,AudioMoth 1,Europe/Berlin,2024-05-01,2024-06-15,
Valley,South,-33.9,18.4,,Africa/Johannesburg,2024-05-02,,1
"""


def test_csv_metadata_creates_and_updates_deployments(projects, tmp_path, settings):
    existing = create_deployment(projects.project, "Ridge", site="old", recorder="old recorder")
    result = import_deployment_metadata(projects.project, CSV)
    assert (result.created, result.updated) == (("Valley",), ("Ridge",))
    existing.refresh_from_db()
    assert (existing.site, existing.latitude, existing.recorder, existing.timezone) == (
        "North",
        52.5,
        "AudioMoth 1",
        "Europe/Berlin",
    )
    assert existing.retrieved_on == dt.date(2024, 6, 15) and existing.channel is None
    valley = projects.project.deployments.get(name="Valley")
    assert (valley.channel, valley.retrieved_on, valley.longitude) == (1, None, 18.4)

    # Columns left out stay as they are; a server folder registers its files for a new deployment.
    folder = tmp_path / "lake"
    folder.mkdir()
    (folder / "20240601_050000.WAV").write_bytes(wav_bytes(np.zeros((480, 1), np.float32), 48_000))
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    grant_folder(projects.project, str(folder))
    result = import_deployment_metadata(
        projects.project, f"name;site;server_folder\nValley;Bay;\nLake;Shore;{folder}\n"
    )
    assert (result.created, result.updated) == (("Lake",), ("Valley",))
    valley.refresh_from_db()
    assert (valley.site, valley.timezone, valley.channel) == ("Bay", "Africa/Johannesburg", 1)
    assert projects.project.deployments.get(name="Lake").recordings.count() == 1
    assert not projects.other.deployments.exists()


def test_a_bad_csv_line_is_reported_and_nothing_changes(projects, client_for):
    create_deployment(projects.project, "Ridge", site="old")
    bad = CSV + "Peak,Top,123,10,,UTC,2024-05-01,2024-04-01,\nCave,Deep,1,oops,,Mars/Base,21/05/2024,,-1\n"
    with pytest.raises(InputError) as error:
        parse_metadata_csv(bad)
    message = str(error.value)
    assert "line 4: latitude 123 is out of range" in message
    assert "line 4: retrieved_on 2024-04-01 is before deployed_on 2024-05-01" in message
    assert "line 5: longitude 'oops' is not a number" in message
    assert "line 5: deployed_on '21/05/2024' is not a date" in message
    assert "line 5: timezone 'Mars/Base' is not an IANA time zone" in message
    assert "line 5: channel -1 is out of range" in message

    url = f"/api/projects/{projects.project.pk}/deployments/metadata-import/"
    admin = client_for(projects.admin)
    response = admin.post(url, {"file": io.BytesIO(bad.encode())}, format="multipart")
    assert response.status_code == 400 and "line 4: latitude 123" in response.json()["error"]
    # A line that parses but cannot be applied (a folder outside the audio roots) undoes the lines before it.
    response = admin.post(url, {"file": io.BytesIO((CSV + "Lake,,,,,,,,\n").encode())}, format="multipart")
    assert response.status_code == 200, response.json()
    before = sorted(projects.project.deployments.values_list("name", "site"))
    late = "name,site,server_folder\nNew one,x,\nRidge,changed,/not/allowed\n"
    response = admin.post(url, {"file": io.BytesIO(late.encode())}, format="multipart")
    assert response.status_code == 400 and response.json()["error"].startswith("line 3:")
    assert sorted(projects.project.deployments.values_list("name", "site")) == before
    for table, reason in [
        ("site\nx\n", "'name' column"),
        ("name,lat\nx,1\n", "unknown columns 'lat'"),
        ("name\nA\nA\n", "line 3: deployment 'A' is also on line 2"),
        ("name\n", "no deployments"),
    ]:
        response = admin.post(url, {"file": io.BytesIO(table.encode())}, format="multipart")
        assert response.status_code == 400 and reason in response.json()["error"], (table, response.json())
    assert client_for(projects.annotator).post(url, {"file": io.BytesIO(CSV.encode())}).status_code == 403

    # The project page's form: a message either way.
    page = Client()
    page.force_login(projects.admin)
    form = f"/projects/{projects.project.pk}/deployments/metadata/"
    response = page.post(form, {"file": io.BytesIO(bad.encode())}, follow=True)
    assert "Nothing was imported: line 4: latitude 123" in response.content.decode()
    response = page.post(form, {"file": io.BytesIO(CSV.encode())}, follow=True)
    assert "Created 0 and updated 2 deployments." in response.content.decode()


# --- channels and predictions without a worker -----------------------------------------


def test_a_chosen_channel_is_read_and_a_missing_one_refused(tmp_path):
    left, right = np.zeros(4800, np.float32), np.full(4800, 0.5, np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 48_000, subtype="PCM_16")
    assert np.allclose(np.concatenate(list(iter_resampled_blocks(path, 48_000, channel=1))), 0.5, atol=1e-4)
    assert np.allclose(np.concatenate(list(iter_resampled_blocks(path, 48_000))), 0.25, atol=1e-4)
    with pytest.raises(AudioError, match="channel 2 .* only 2 channel"):
        next(iter_resampled_blocks(path, 48_000, channel=2))
    samples, _ = read_segment(path, 0.0, 0.05, channel=1)
    assert samples.shape == (2400, 1) and np.allclose(samples, 0.5, atol=1e-4)
    assert read_segment(path, 0.0, 0.05)[0].shape == (2400, 2)


class FakeHoplite:
    """A hoplite model whose embedding is a window's first 4 samples and logits its first 7."""

    class_list_name = "fake"
    class_list = SimpleNamespace(classes=tuple("abcdefg"))

    def __init__(self):
        self.calls = 0

    def batch_embed(self, batch):
        self.calls += 1
        return SimpleNamespace(embeddings=batch[:, None, None, :4], logits={"fake": batch[:, None, None, :7] * 10})


def test_top_predictions_are_kept_per_window_and_for_silence():
    hoplite = FakeHoplite()
    model = LoadedModel(ModelSpec("fake", "1", 4, 1.0, 1.0, 8), hoplite)
    loud = np.array([0.1, 0.9, 0.3, 0.7, 0.5, 0.2, 0.4, 0.0], np.float32)
    outputs = model.embed_windows(np.stack([np.zeros(8, np.float32), loud, np.zeros(8, np.float32)]))
    assert outputs.top_classes.tolist()[1] == [1, 3, 4, 6, 2]
    assert np.allclose(outputs.top_logits[1], [9, 7, 5, 4, 3])
    assert outputs.top_classes.dtype == np.int32 and outputs.embeddings.shape == (3, 4)
    assert np.array_equal(outputs.embeddings[1], loud[:4])
    assert hoplite.calls == 2  # the silence once, the loud window once
    silent = model.embed_windows(np.zeros((2, 8), np.float32))
    assert hoplite.calls == 2
    assert np.array_equal(silent.top_classes[0], outputs.top_classes[0]) and silent.top_logits.shape == (2, 5)
    perch_like = SimpleNamespace(class_list={"genus": SimpleNamespace(classes=("g",)), "label": FakeHoplite.class_list})
    assert hoplite_class_list(perch_like) == ("label", tuple("abcdefg"))
    assert hoplite_class_list(object()) == ("", ())
    bare = LoadedModel(ModelSpec("fake", "1", 4, 1.0, 1.0, 8), SimpleNamespace(batch_embed=hoplite.batch_embed))
    assert bare.embed_windows(np.stack([loud])).top_classes is None


def test_predictions_are_stored_and_named(projects, client_for):
    deployment = create_deployment(projects.project, "D")
    recording = Recording.objects.create(deployment=deployment, path="/x.wav", filename="x.wav")
    model = register_embedding_model("fake", "1", 4, 1.0, 1.0, 8, class_names=("owl", "wren", "jay"))
    assert register_embedding_model("fake", "1", 4, 1.0, 1.0, 8).class_names == ["owl", "wren", "jay"]
    replace_windows(
        recording.pk,
        model,
        np.array([0.0, 1.0]),
        np.array([1.0, 2.0]),
        np.eye(2, 4, dtype=np.float32),
        np.array([[2, 0], [1, 2]]),
        np.array([[3.5, -1.0], [0.25, -2.0]]),
    )
    first, second = Window.objects.select_related("model").order_by("start_s")
    assert named_predictions([first])[first.pk] == [("jay", 3.5, None), ("owl", -1.0, None)]
    assert named_predictions([first, second])[second.pk] == [("wren", 0.25, None), ("jay", -2.0, None)]
    response = client_for(projects.viewer).get(
        f"/api/projects/{projects.project.pk}/recordings/{recording.pk}/windows/"
    )
    assert response.json()[0]["predictions"] == [
        {"class_name": "jay", "logit": 3.5, "in_range": None},  # no species of BirdNET's
        {"class_name": "owl", "logit": -1.0, "in_range": None},
    ]
    plain = register_embedding_model("plain", "1", 4, 1.0, 1.0, 8)
    replace_windows(recording.pk, plain, np.array([0.0]), np.array([1.0]), np.ones((1, 4), np.float32))
    assert named_predictions([Window.objects.get(model=plain)]) == {Window.objects.get(model=plain).pk: []}


# --- task retries ---------------------------------------------------------------------


def test_tasks_retry_lost_connections_but_not_bad_input(monkeypatch):
    for task in (tasks.ingest_recording, tasks.embed_clip_query, tasks.train_classifier, tasks.run_inference):
        assert task.acks_late and task.time_limit and task.max_retries == 5
        assert OperationalError in task.autoretry_for
    calls = []

    def flaky(recording_id, model, batch_size):
        calls.append(recording_id)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "done"

    monkeypatch.setattr(tasks, "configured_model", lambda: None)
    monkeypatch.setattr(tasks.ingest, "ingest_recording", flaky)
    assert tasks.ingest_recording.apply(args=[7]).get() == "done"
    assert calls == [7, 7, 7]

    def broken(recording_id, model, batch_size):
        calls.append(recording_id)
        raise ValueError("a bug, not a lost connection")

    calls.clear()
    monkeypatch.setattr(tasks.ingest, "ingest_recording", broken)
    assert tasks.ingest_recording.apply(args=[8]).failed()
    assert calls == [8]


# --- one real ingest --------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_embeds_the_chosen_channel_keeps_predictions_and_reads_the_comment(
    celery_worker_process, tmp_path, birdsong, make_user, settings
):
    samples, rate = birdsong
    folder = tmp_path / "moth"
    folder.mkdir()
    stereo = np.stack([np.zeros_like(samples), samples], axis=1)  # silence left, birdsong right
    (folder / "20240521_193000.WAV").write_bytes(wav_bytes(stereo, rate, COMMENT))
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    project = create_project(make_user("admin"), "Channels")
    grant_folder(project, str(folder))
    song, silence, missing = (
        create_deployment(project, f"channel {channel}", server_folder=str(folder), channel=channel)
        for channel in (1, 0, 2)
    )
    for deployment in (song, silence, missing):
        assert queue_ingest(deployment) == 1
    pending = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]
    wait_for(
        lambda: not Recording.objects.filter(deployment__project=project, status__in=pending).exists(),
        what=f"ingest (worker log: {celery_worker_process})",
    )
    recording = song.recordings.get()
    assert recording.status == RecordingStatus.DONE, recording.error
    assert recording.started_at == dt.datetime(2024, 5, 21, 18, 30, tzinfo=dt.UTC)
    assert recording.started_at_source == StartTimeSource.WAV_COMMENT
    song.refresh_from_db()
    assert song.recorder == MOTH and recording.channels == 2
    failed = missing.recordings.get()
    assert failed.status == RecordingStatus.FAILED and "channel 2" in failed.error and "2 channel" in failed.error

    windows = list(recording.windows.select_related("model").order_by("start_s"))
    quiet = list(silence.recordings.get().windows.order_by("start_s"))
    model = windows[0].model
    assert len(windows) == len(quiet) == 4  # 10 s in 3 s windows
    assert len(model.class_names) == 6522 and model.class_names[0] == "Abroscopus albogularis_Rufous-faced Warbler"
    for window in windows + quiet:
        assert len(window.top_classes) == len(window.top_logits) == 5
        assert window.top_logits == sorted(window.top_logits, reverse=True)
    # The silent channel: every window is the cached silence; the song channel differs from it.
    assert len({tuple(w.top_classes) for w in quiet}) == 1
    assert all(tuple(w.top_classes) != tuple(quiet[0].top_classes) for w in windows)
    assert not np.allclose(np.asarray(windows[0].embedding), np.asarray(quiet[0].embedding))
    names = named_predictions([windows[0]])[windows[0].pk]
    assert len(names) == 5 and all(p.class_name in model.class_names for p in names)

    # Playback plays the embedded channel.
    heard, _ = soundfile.read(io.BytesIO(window_wav(windows[0])))
    silent, _ = soundfile.read(
        io.BytesIO(window_wav(Window.objects.select_related("recording__deployment").get(pk=quiet[0].pk)))
    )
    assert heard.ndim == 1 and np.abs(heard).max() > 0.01 and np.abs(silent).max() == 0
