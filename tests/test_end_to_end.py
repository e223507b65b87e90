"""The whole loop through the REST API, on the real database, broker, worker and model:
ingest real audio, query by example, label, train, run, export."""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import math
import re
import zipfile

import numpy as np
import pytest
import soundfile
from django.contrib.auth import get_user_model
from django.test import Client

from annotations.deployments import grant_folder
from annotations.embedding_store import window_embeddings
from annotations.exports import SEQUENCE_TABLE_NAME
from annotations.models import Annotation, ClassifierExample, Detection, Project, SunDay, Window, WindowScore
from tests.audio_corpus import make_bad_files, make_recordings
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def upload(client, url, paths):
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(open(path, "rb")) for path in paths]
        return client.post(url, {"files": files}, format="multipart")


@pytest.fixture
def ingested(celery_worker_process, media_root, settings, tmp_path, birdsong, make_user, client_for):
    """A project with one deployment of 8 good recordings and 3 bad files, ingested."""
    samples, rate = birdsong
    recordings = make_recordings(tmp_path / "audio", samples, rate)
    bad = make_bad_files(tmp_path / "bad", recordings[6].path)  # a 48 kHz WAV with song only at 6-9 s
    user = make_user("ecologist")
    client = client_for(user)
    project = client.post("/api/projects/", {"name": "Loop", "labels": ["bird"]}, format="json").json()
    base = f"/api/projects/{project['id']}"
    deployment = client.post(
        f"{base}/deployments/", {"name": "North ridge", "site": "N1", "latitude": 46.5, "longitude": 7.9}, format="json"
    ).json()
    response = upload(
        client, f"{base}/deployments/{deployment['id']}/files/", [r.path for r in recordings] + list(bad.values())
    )
    assert response.status_code == 201, response.content
    # The content decides, not the name: a text file called .wav is refused at once.
    assert response.json()["rejected"] == [
        {"filename": "notes.wav", "reason": "the content is not WAV, FLAC, OGG or MP3 audio, whatever its name says"}
    ]
    # Files registered from a server folder are not sniffed on the way in: ingest reports them.
    folder = tmp_path / "bad"
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    grant_folder(Project.objects.get(pk=project["id"]), str(folder))  # site staff's decision
    response = client.post(f"{base}/deployments/", {"name": "Folder", "server_folder": str(folder)}, format="json")
    assert response.status_code == 201, response.content
    folder_deployment = response.json()
    assert client.post(f"{base}/deployments/{folder_deployment['id']}/ingest/").json() == {"queued": 3}
    assert client.post(f"{base}/deployments/{deployment['id']}/ingest/").json() == {"queued": 10}

    def ingest_finished(deployment_id):
        progress = client.get(f"{base}/deployments/{deployment_id}/").json()["progress"]
        return progress if progress["files_queued"] + progress["files_embedding"] == 0 else None

    what = f"ingest (worker log: {celery_worker_process})"
    progress = wait_for(lambda: ingest_finished(deployment["id"]), what=what)
    folder_progress = wait_for(lambda: ingest_finished(folder_deployment["id"]), what=what)
    files, folder_files = (
        {r["filename"]: r for r in client.get(f"{base}/deployments/{d['id']}/recordings/").json()}
        for d in (deployment, folder_deployment)
    )
    return {
        "client": client,
        "base": base,
        "project": project,
        "deployment": deployment,
        "label_id": client.get(f"{base}/labels/").json()[0]["id"],
        "recordings": recordings,
        "bad": bad,
        "files": files,
        "progress": progress,
        "folder_files": folder_files,
        "folder_progress": folder_progress,
    }


def finished(client, url: str, what: str) -> dict:
    """Poll a resource until its status is done or failed; returns its last state."""

    def state():
        data = client.get(url).json()
        return data if data["status"] in ("done", "failed") else None

    return wait_for(state, what=what)


def windows_of(client, base, recording_id):
    return client.get(f"{base}/recordings/{recording_id}/windows/").json()


def test_bad_files_are_reported_and_the_rest_ingest(ingested):
    files, progress = ingested["files"], ingested["progress"]
    assert progress["files_done"] == 9 and progress["files_failed"] == 1
    assert progress["fraction_done"] == 1.0
    assert progress["windows_per_s"] > 0 and progress["eta_s"] == 0  # measured since the ingest was queued
    folder_files = ingested["folder_files"]
    assert ingested["folder_progress"]["files_failed"] == 2
    assert folder_files["notes.wav"]["status"] == "failed"
    assert "not a readable audio file" in folder_files["notes.wav"]["error"]
    # A recorder that lost power: the audio that is there is used, and the file says so.
    for listing in (files, folder_files):
        assert listing["cut_header.wav"]["status"] == "failed"
        assert listing["cut_header.wav"]["error"]
        assert listing["cut_data.wav"]["status"] == "done"
        assert "truncated" in listing["cut_data.wav"]["warning"]
    for recording in ingested["recordings"]:
        entry = files[recording.path.name]
        assert entry["status"] == "done", entry
        assert entry["windows_done"] == 4  # 12 s in 3 s windows, at every sample rate
    assert files["cut_data.wav"]["windows_done"] > 0
    assert progress["windows"] == 8 * 4 + files["cut_data.wav"]["windows_done"]
    # Once the project's ingest is over, the worker works out the located deployment's sun
    # times (annotations.sun) for every day its recordings touch (10-17 May), and one either side.
    days = wait_for(
        lambda: list(SunDay.objects.filter(deployment_id=ingested["deployment"]["id"]).values_list("day", flat=True)),
        what="sun times after the ingest",
    )
    assert min(days).isoformat() == "2026-05-09" and max(days).isoformat() == "2026-05-18"


def test_reuploaded_window_clip_finds_its_own_window(ingested, tmp_path):
    client, base = ingested["client"], ingested["base"]
    recording = ingested["recordings"][0]  # a 32 kHz file
    recording_id = ingested["files"][recording.path.name]["id"]
    window = windows_of(client, base, recording_id)[recording.song_window]
    samples, rate = soundfile.read(str(recording.path), dtype="float32")
    clip = samples[int(window["start_s"] * rate) : int(window["end_s"] * rate)]
    clip_path = tmp_path / "example.wav"
    soundfile.write(str(clip_path), clip, rate)
    with open(clip_path, "rb") as f:
        created = client.post(f"{base}/clip-queries/", {"file": f}, format="multipart")
    assert created.status_code == 201, created.content
    clip_id = created.json()["id"]
    state = finished(client, f"{base}/clip-queries/{clip_id}/", "clip embedding")
    assert state["status"] == "done", state
    hits = client.post(f"{base}/search/", {"clip_query_id": clip_id, "k": 5}, format="json").json()["hits"]
    assert hits[0]["window_id"] == window["id"]
    assert hits[0]["score"] > 0.98

    # The same stretch as a region dragged on the recording, and as a whole file trimmed in the page.
    span = {"start_s": window["start_s"], "end_s": window["end_s"]}
    region = client.post(f"{base}/region-queries/", {"recording_id": recording_id, **span}, format="json")
    assert region.status_code == 201, region.content
    with open(recording.path, "rb") as f:
        trimmed = client.post(f"{base}/clip-queries/", {"file": f, **span}, format="multipart")
    assert trimmed.status_code == 201, trimmed.content
    for created in (region, trimmed):
        state = finished(client, f"{base}/clip-queries/{created.json()['id']}/", "example embedding")
        assert state["status"] == "done", state
        body = {"clip_query_id": created.json()["id"], "k": 5}
        hits = client.post(f"{base}/search/", body, format="json").json()["hits"]
        assert hits[0]["window_id"] == window["id"]
        assert hits[0]["score"] > 0.98
    beyond = client.post(
        f"{base}/region-queries/", {"recording_id": recording_id, "start_s": 5, "end_s": 4}, format="json"
    )
    assert beyond.status_code == 400
    # A box: the song's band of the same stretch, filtered by the worker before embedding.
    box = {"recording_id": recording_id, **span, "low_hz": 1500, "high_hz": 12000}
    boxed = client.post(f"{base}/region-queries/", box, format="json")
    assert boxed.status_code == 201 and boxed.json()["low_hz"] == 1500, boxed.content
    state = finished(client, f"{base}/clip-queries/{boxed.json()['id']}/", "boxed example embedding")
    assert state["status"] == "done", state
    hits = client.post(f"{base}/search/", {"clip_query_id": boxed.json()["id"], "k": 3}, format="json").json()["hits"]
    # Filtered, it is like no stored window exactly (they are embedded whole), but like the
    # song windows more than the brown noise around them: the best hits are songs.
    songs = {
        windows_of(client, base, ingested["files"][song.path.name]["id"])[song.song_window]["id"]
        for song in ingested["recordings"]
    }
    assert {hit["window_id"] for hit in hits} <= songs
    for bad, says in (
        ({"low_hz": 1500}, "needs both low_hz and high_hz"),
        ({"low_hz": 17000, "high_hz": 20000}, "nothing above 16000 Hz"),
        ({"low_hz": 2000, "high_hz": 2050}, "at least 100 Hz wide"),
    ):
        refused = client.post(f"{base}/region-queries/", {"recording_id": recording_id, **span, **bad}, format="json")
        assert refused.status_code == 400 and says in str(refused.json()), (bad, refused.content)


def label_by_construction(ingested, recordings) -> set[int]:
    """Label every window of ``recordings``: positive where the birdsong was placed.
    Returns the ids of the song windows."""
    client, base, label_id = ingested["client"], ingested["base"], ingested["label_id"]
    song_windows = set()
    for recording in recordings:
        windows = windows_of(client, base, ingested["files"][recording.path.name]["id"])
        song_windows.add(windows[recording.song_window]["id"])
        for index, window in enumerate(windows):
            value = "positive" if index == recording.song_window else "negative"
            answer = client.post(
                f"{base}/annotations/", {"window": window["id"], "label": label_id, "value": value}, format="json"
            )
            assert answer.status_code == 201, answer.content
    return song_windows


def test_full_loop_query_label_train_run_export(ingested):
    client, base, label_id = ingested["client"], ingested["base"], ingested["label_id"]

    # Query by example with a birdsong window: the query itself is excluded, scores descend.
    first = ingested["recordings"][0]
    first_id = ingested["files"][first.path.name]["id"]
    query_window = windows_of(client, base, first_id)[first.song_window]["id"]
    response = client.post(f"{base}/search/", {"window_id": query_window, "k": 10}, format="json")
    assert response.status_code == 200, response.content
    hits = response.json()["hits"]
    assert len(hits) == 10
    assert query_window not in [h["window_id"] for h in hits]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # The other birdsong windows are more like the query than the noise is.
    song_windows = label_by_construction(ingested, ingested["recordings"])
    top = {h["window_id"] for h in hits[:4]}
    assert len(top & song_windows) >= 3

    # Train a linear probe, measured on held-out recordings.
    response = client.post(f"{base}/classifiers/", {"labels": [label_id]}, format="json")
    assert response.status_code == 202, response.content
    classifier_id = response.json()["id"]
    classifier = finished(client, f"{base}/classifiers/{classifier_id}/", "training")
    assert classifier["status"] == "done", classifier
    output = classifier["outputs"][0]
    assert output["train_positives"] + output["eval_positives"] == 8
    assert output["eval_positives"] > 0 and output["eval_negatives"] > 0
    assert output["roc_auc"] > 0.9 and output["average_precision"] > 0.7

    # Run it over the deployment.
    deployment_id = ingested["deployment"]["id"]
    response = client.post(
        f"{base}/classifiers/{classifier_id}/runs/", {"deployment": deployment_id, "threshold": 0.5}, format="json"
    )
    assert response.status_code == 202, response.content
    run_id = response.json()["id"]
    run = finished(client, f"{base}/runs/{run_id}/", "inference")
    assert run["status"] == "done", run
    assert run["windows_scored"] == run["windows_total"] == ingested["progress"]["windows"]
    detections = client.get(f"{base}/runs/{run_id}/detections/?limit=1000").json()
    assert detections["count"] >= 6

    # Export: the classifier file, applied with numpy alone, gives the app's scores.
    exported = client.get(f"{base}/classifiers/{classifier_id}/export/?export_format=perch-agile")
    assert exported.status_code == 200
    spec = json.loads(exported.content)
    weights = np.asarray(spec["weights"], dtype=np.float32)
    bias = np.asarray(spec["bias"], dtype=np.float32)
    window_ids = list(Window.objects.filter(recording__deployment_id=deployment_id).values_list("id", flat=True))
    embeddings = window_embeddings(window_ids)
    x = np.stack([embeddings[w] for w in window_ids])
    numpy_scores = (1 / (1 + np.exp(-(x @ weights + bias))))[:, 0]
    app_scores = dict(Detection.objects.filter(run_id=run_id).values_list("window_id", "score"))
    expected = {w for w, score in zip(window_ids, numpy_scores, strict=True) if score >= 0.5}
    assert set(app_scores) == expected
    for window_id, score in zip(window_ids, numpy_scores, strict=True):
        if window_id in app_scores:
            assert abs(app_scores[window_id] - score) < 1e-5

    # perch-hoplite's LinearClassifier reads the same weights.
    from ml_collections import config_dict
    from perch_hoplite.agile.classifier import LinearClassifier

    hoplite_json = json.loads(client.get(f"{base}/classifiers/{classifier_id}/export/?export_format=hoplite").content)
    hoplite = LinearClassifier.from_config_dict(config_dict.ConfigDict(hoplite_json))
    assert hoplite.classes == ("bird",) or list(hoplite.classes) == ["bird"]
    np.testing.assert_allclose(1 / (1 + np.exp(-hoplite(x)))[:, 0], numpy_scores, atol=1e-5)
    assert np.frombuffer(base64.b64decode(hoplite_json["beta"]), np.float32).shape == (weights.size,)

    # Detections as CSV: one row per detection, best first.
    response = client.get(f"{base}/runs/{run_id}/detections.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == detections["count"]
    assert [float(r["score"]) for r in rows] == sorted((float(r["score"]) for r in rows), reverse=True)
    assert rows[0]["label"] == "bird" and rows[0]["site"] == "N1"


def test_prototype_probe_threshold_queues_and_raven_round_trip(ingested):
    client, base, label_id = ingested["client"], ingested["base"], ingested["label_id"]
    labeled, unlabeled = ingested["recordings"][:6], ingested["recordings"][6:]
    label_by_construction(ingested, labeled)

    response = client.post(
        f"{base}/classifiers/",
        {"labels": [label_id], "probe_type": "prototype", "prototypes_per_label": 2},
        format="json",
    )
    assert response.status_code == 202, response.content
    classifier_id = response.json()["id"]
    classifier = finished(client, f"{base}/classifiers/{classifier_id}/", "training")
    assert classifier["status"] == "done", classifier
    assert classifier["probe_type"] == "prototype"
    output = classifier["outputs"][0]
    assert output["train_positives"] + output["eval_positives"] == 6
    assert output["roc_auc"] > 0.9
    # What each prototype looks for: spectrogram, file and time of the labeled windows it
    # matches best, each window under one prototype only.
    page = Client()
    page.force_login(get_user_model().objects.get(username="ecologist"))
    html = page.get(f"/projects/{ingested['project']['id']}/classifiers/{classifier_id}/").content.decode()
    shown = html.split("What each prototype looks for")[1].split("</ol>")[0]
    windows = re.findall(r'href="/projects/\d+/windows/(\d+)/"', shown)
    assert 2 <= len(windows) == len(set(windows)) <= output["train_positives"], windows
    assert shown.count('class="spectrogram"') == len(windows) and "UTC" in shown and ".wav" in shown

    # The labels snapshot: every labeled window once, whole recordings on one side of the
    # split, and the weak negatives drawn from the unlabeled recordings.
    snapshot = ClassifierExample.objects.filter(classifier_id=classifier_id).select_related("window")
    examples = snapshot.filter(weak=False)
    assert examples.count() == 6 * 4
    weak = snapshot.filter(weak=True)
    assert weak.exists()
    assert not {e.window.recording_id for e in weak} & {e.window.recording_id for e in examples}
    sides = {}
    for example in examples:
        sides.setdefault(example.window.recording_id, set()).add(example.held_out)
    assert all(len(side) == 1 for side in sides.values())

    # Scored over every window (threshold 0), the numpy formula of the export gives the app's scores.
    deployment_id = ingested["deployment"]["id"]
    run_id = client.post(
        f"{base}/classifiers/{classifier_id}/runs/", {"deployment": deployment_id, "threshold": 0.0}, format="json"
    ).json()["id"]
    assert finished(client, f"{base}/runs/{run_id}/", "inference")["status"] == "done"
    spec = json.loads(client.get(f"{base}/classifiers/{classifier_id}/export/?export_format=perch-agile").content)
    assert spec["probe_type"] == "prototype" and len(spec["prototypes"][0]) == 2
    app_scores = dict(Detection.objects.filter(run_id=run_id).values_list("window_id", "score"))
    assert len(app_scores) == ingested["progress"]["windows"]
    embeddings = window_embeddings(list(app_scores))
    x = np.stack([embeddings[w] for w in app_scores])
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    calibration = spec["calibration"][0]
    assert len(spec["negative_prototypes"][0]) == 2 and calibration["temperature"] > 0

    def smax(similarity):
        t = calibration["temperature"]
        return t * np.log(np.exp(similarity / t).sum(axis=1))

    evidence = smax(unit @ np.asarray(spec["prototypes"][0], np.float32).T) - smax(
        unit @ np.asarray(spec["negative_prototypes"][0], np.float32).T
    )
    numpy_scores = 1 / (1 + np.exp(-(calibration["a"] * evidence + calibration["b"])))
    np.testing.assert_allclose(numpy_scores, np.array(list(app_scores.values())), atol=1e-5)
    hoplite = client.get(f"{base}/classifiers/{classifier_id}/export/?export_format=hoplite")
    assert hoplite.status_code == 400 and "linear" in hoplite.json()["error"]

    # A threshold chosen on the PR curve, then review queues over the unlabeled windows.
    response = client.post(
        f"{base}/classifiers/{classifier_id}/threshold/", {"label": label_id, "min_precision": 0.5}, format="json"
    )
    assert response.status_code == 200, response.content
    assert 0.0 <= response.json()["threshold"] <= 1.0
    labeled_ids = set(Annotation.objects.values_list("window_id", flat=True))
    scored = wait_for(
        lambda: (c := client.get(f"{base}/classifiers/{classifier_id}/").json())["scoring_status"] == "done" and c,
        what="scoring",
    )
    project_windows = ingested["progress"]["windows"] + ingested["folder_progress"]["windows"]
    assert scored["windows_scored"] == scored["windows_to_score"] == project_windows
    # Counted from the stored histogram, to its bins of 0.01.
    bin_edge = math.floor(scored["outputs"][0]["threshold"] * 100) / 100
    above = WindowScore.objects.filter(classifier_id=classifier_id, score__gte=bin_edge).count()
    assert scored["outputs"][0]["windows_above_threshold"] == above
    queue = client.get(f"{base}/classifiers/{classifier_id}/queue/?label={label_id}&kind=top&size=5").json()
    assert len(queue) == 5 and not {item["window_id"] for item in queue} & labeled_ids
    assert [item["score"] for item in queue] == sorted((item["score"] for item in queue), reverse=True)
    unlabeled_songs = {
        windows_of(client, base, ingested["files"][r.path.name]["id"])[r.song_window]["id"] for r in unlabeled
    }
    assert unlabeled_songs <= {item["window_id"] for item in queue[:3]}
    for kind in ("margin", "bins", "diverse"):
        response = client.get(f"{base}/classifiers/{classifier_id}/queue/?label={label_id}&kind={kind}&size=4")
        assert response.status_code == 200 and 1 <= len(response.json()) <= 4, (kind, response.content)
    # A run started without a threshold keeps what reaches the one chosen on the PR curve.
    chosen = scored["outputs"][0]["threshold"]
    chosen_run = client.post(f"{base}/classifiers/{classifier_id}/runs/", {"deployment": deployment_id}, format="json")
    assert chosen_run.json()["threshold"] is None and chosen_run.json()["label_thresholds"] == [chosen]
    assert finished(client, f"{base}/runs/{chosen_run.json()['id']}/", "inference")["status"] == "done"
    kept = set(Detection.objects.filter(run_id=chosen_run.json()["id"]).values_list("window_id", flat=True))
    assert kept == {w for w, score in app_scores.items() if score >= np.float32(chosen)}

    # Validation as the bins queue asks for it: the first unlabeled window of each score
    # bin's fixed pseudo-random order, labeled by what was placed there. (Without it, the
    # validated prefix hung on which windows the window ids happened to put first.)
    songs = {
        windows_of(client, base, ingested["files"][r.path.name]["id"])[r.song_window]["id"]
        for r in ingested["recordings"]
    }
    for item in client.get(f"{base}/classifiers/{classifier_id}/queue/?label={label_id}&kind=bins&size=4").json():
        value = "positive" if item["window_id"] in songs else "negative"
        body = {"window": item["window_id"], "label": label_id, "value": value}
        assert client.post(f"{base}/annotations/", body, format="json").status_code == 201

    # Detections per site and day, from the recorders' file names.
    summary = client.get(f"{base}/runs/{run_id}/summary/").json()
    assert {row["site"] for row in summary} == {"N1"}
    assert sum(row["detections"] for row in summary) == len(app_scores)
    density = client.get(f"{base}/runs/{run_id}/density/").json()
    (whole,) = [row for row in density if row["total"]]
    assert whole["windows"] == len(app_scores) == sum(row["windows"] for row in density if not row["total"])
    assert 0 <= whole["low"] <= whole["density"] <= whole["high"] <= 1 and whole["validated"] > 0
    assert {row["day"] for row in summary} >= {"2026-05-10", "2026-05-17"}

    # Raven tables of a run at 0.5, read back as labels of a new label: the same windows.
    run_id = client.post(
        f"{base}/classifiers/{classifier_id}/runs/", {"deployment": deployment_id, "threshold": 0.5}, format="json"
    ).json()["id"]
    assert finished(client, f"{base}/runs/{run_id}/", "inference")["status"] == "done"
    detected = set(Detection.objects.filter(run_id=run_id).values_list("window_id", flat=True))
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"{base}/runs/{run_id}/raven.zip").content))
    new_label = client.post(f"{base}/labels/", {"name": "bird (imported)"}, format="json").json()
    for name in set(archive.namelist()) - {SEQUENCE_TABLE_NAME}:
        recording = name.split(".Table.")[0]
        filename = next(f for f in ingested["files"] if f.rsplit(".", 1)[0] == recording)
        response = client.post(
            f"{base}/deployments/{deployment_id}/label-import/",
            {"file": io.BytesIO(archive.read(name)), "label": new_label["name"], "recording": filename},
            format="multipart",
        )
        assert response.status_code == 200, response.content
        assert response.json()["unmatched_files"] == [], response.json()
    imported = set(Annotation.objects.filter(label_id=new_label["id"]).values_list("window_id", flat=True))
    assert imported == detected and detected
    # The one table over all files (times counted across the sequence) gives the same windows.
    sequence_label = client.post(f"{base}/labels/", {"name": "bird (sequence)"}, format="json").json()
    response = client.post(
        f"{base}/deployments/{deployment_id}/label-import/",
        {"file": io.BytesIO(archive.read(SEQUENCE_TABLE_NAME)), "label": sequence_label["name"]},
        format="multipart",
    )
    assert response.status_code == 200 and response.json()["unmatched_files"] == [], response.content
    sequence = set(Annotation.objects.filter(label_id=sequence_label["id"]).values_list("window_id", flat=True))
    assert sequence == detected
