"""Windows that overlap: a hop shorter than the window, chosen per deployment, honoured by
the worker, the search, training's held-out split and label imports."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import zipfile

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project, grant_folder, queue_ingest, update_deployment
from annotations.detection_events import store_detection_events
from annotations.detection_filters import DetectionFilters, filtered_events
from annotations.embedding_store import register_embedding_model, replace_windows, window_embeddings
from annotations.errors import InputError
from annotations.label_carryover import HeldLabel, carry_over
from annotations.label_import import covered_windows
from annotations.labeling import set_label
from annotations.model_catalogue import SPECS, hop_choices, hop_problem
from annotations.models import (
    Annotation,
    Classifier,
    ClassifierLabel,
    Detection,
    DetectionEvent,
    InferenceRun,
    Recording,
    RecordingStatus,
    TaskStatus,
    Window,
)
from annotations.probes import held_out_split
from annotations.review_queues import review_queue
from annotations.search import SearchFilters, SearchSpec, nearest_window_ids, run_search
from annotations.search.calls import windows_per_instant
from annotations.stored_scores import score_project
from tests.audio_corpus import make_recordings
from tests.conftest import wait_for

BIRDNET = SPECS["birdnet_v2_4"]


def test_the_hops_offered_and_the_hops_refused():
    assert hop_choices(3.0) == [3.0, 1.5, 1.0]
    assert hop_problem(1.5, 3.0, 48_000) == ""
    assert "out of range" in hop_problem(0.5, 3.0, 48_000)  # 6 windows deep
    assert "out of range" in hop_problem(4.0, 3.0, 48_000)  # gaps between windows
    assert "whole number of samples" in hop_problem(1.00001, 3.0, 48_000)


@pytest.mark.django_db
def test_a_deployment_keeps_its_hop_until_its_audio_is_embedded(make_user):
    project = create_project(make_user("lead"), "Overlap")
    with pytest.raises(InputError, match="out of range"):
        create_deployment(project, "Too deep", hop_s=0.25)
    deployment = create_deployment(project, "Reed bed", hop_s=1.5)
    update_deployment(deployment, hop_s=1.0)  # nothing embedded yet: free to change
    Recording.objects.create(deployment=deployment, path="/x.wav", filename="x.wav", windows_done=4, hop_s=1.0)
    update_deployment(deployment, hop_s=1.0, site="R2")  # the same hop, sent back by the form
    with pytest.raises(InputError, match="embedded at a hop of 1 s already"):
        update_deployment(deployment, hop_s=3.0)


def test_no_held_out_window_overlaps_a_window_trained_on():
    """3 s windows every second over an hour: the held-out blocks and the gap around them
    leave no training window sharing a moment with a held-out one."""
    starts = np.arange(0.0, 3600.0, 1.0)
    recording_ids = np.zeros(len(starts), dtype=np.int64)
    labeled = np.ones(len(starts), bool)
    split = held_out_split(recording_ids, starts, starts % 7 == 0, labeled, 0.25, seed=0)
    held, trained = starts[split.held_out], starts[split.train]
    assert len(held) and len(trained)
    # Windows [s, s + 3) overlap when their starts are less than 3 s apart.
    nearest = np.abs(held[:, None] - trained[None, :]).min()
    assert nearest >= 3.0, nearest


def test_a_selection_labels_the_overlapping_windows_it_covers_by_at_least_half():
    starts = np.arange(0.0, 12.0, 1.5)  # 3 s windows every 1.5 s
    ids = np.arange(100, 100 + len(starts))
    # [3, 6) covers [3, 6) whole and half of [1.5, 4.5) and [4.5, 7.5); a third of nothing else.
    assert covered_windows(ids, starts, starts + 3.0, 3.0, 6.0) == [101, 102, 103]
    # A 1 s call inside [3.2, 4.2) is at least half inside... the shorter's half: every window holding it.
    assert covered_windows(ids, starts, starts + 3.0, 3.2, 4.2) == [101, 102]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_cuts_windows_at_the_deployments_hop_and_search_counts_them(
    celery_worker_process, media_root, tmp_path, birdsong, make_user, client_for
):
    samples, rate = birdsong
    recordings = make_recordings(tmp_path / "audio", samples, rate, count=2)
    user = make_user("ecologist")
    client = client_for(user)
    project = client.post("/api/projects/", {"name": "Overlap", "labels": ["bird"]}, format="json").json()
    base = f"/api/projects/{project['id']}"
    made = {}
    for name, hop in (("Every 3 s", None), ("Every 1.5 s", 1.5)):
        data = {"name": name} | ({"hop_s": hop} if hop else {})
        made[name] = deployment = client.post(f"{base}/deployments/", data, format="json").json()
        assert deployment["hop_s"] == hop
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(r.path, "rb")) for r in recordings]
            assert client.post(f"{base}/deployments/{deployment['id']}/files/", {"files": files}).status_code == 201
        client.post(f"{base}/deployments/{deployment['id']}/ingest/")

    def done():
        return not Recording.objects.exclude(status__in=["done", "failed"]).exists()

    wait_for(done, what=f"ingest (worker log: {celery_worker_process})")
    plain, overlapping = (Recording.objects.filter(deployment_id=d["id"]).order_by("filename") for d in made.values())
    for a, b in zip(plain, overlapping, strict=True):
        assert (a.status, b.status) == ("done", "done")
        assert a.hop_s == 3.0 and b.hop_s == 1.5
        starts = np.array(Window.objects.filter(recording=b).order_by("start_s").values_list("start_s", flat=True))
        assert np.allclose(np.diff(starts), 1.5) and b.windows_done == b.windows_expected == len(starts)
        assert len(starts) == 2 * a.windows_done - 1  # 12 s: 4 windows every 3 s, 7 every 1.5 s
        first, second = Window.objects.filter(recording=b).order_by("start_s")[:2]
        assert first.end_s == pytest.approx(3.0) and second.start_s == pytest.approx(1.5)

    example = Window.objects.filter(recording=overlapping[0]).order_by("start_s").first()
    for deployment, expected in ((made["Every 1.5 s"], 14), (made["Every 3 s"], 8)):
        query = {"window_id": example.pk, "deployment_id": deployment["id"], "k": 50}
        every = client.post(f"{base}/search/", query | {"all_overlapping": True}, format="json").json()["hits"]
        assert len(every) == expected - (deployment is made["Every 1.5 s"])  # the example is not a hit
        # By default, overlapping windows of one sound are one hit: no two hits share a moment.
        calls = client.post(f"{base}/search/", query, format="json").json()["hits"]
        assert 0 < len(calls) <= len(every)
        for i, hit in enumerate(calls):
            for other in calls[:i]:
                assert hit["recording_id"] != other["recording_id"] or abs(hit["start_s"] - other["start_s"]) >= 3
        # What a search counts to choose its path: at each recording's own hop.
        nearest = nearest_window_ids(
            example.recording.deployment.project,
            example.model,
            window_embeddings([example.pk])[example.pk],
            50,
            (),
            SearchFilters(deployment_id=deployment["id"]),
        )
        assert nearest.candidates == expected
    page = Client()
    page.force_login(user)
    html = page.get(f"/projects/{project['id']}/deployments/{made['Every 1.5 s']['id']}/").content.decode()
    assert "3 s windows every 1.5 s (overlapping)" in html, html[html.find("<h1>") : html.find("<h1>") + 1500]


@pytest.fixture
def overlapping_run(make_user):
    """A run over 3 s windows every 1.5 s of one recording: owl detected in windows 0-2
    (one call over three overlapping windows), 5 and 7 (touching: one bout) and 10; wren
    in window 1."""
    user = make_user("lead")
    project = create_project(user, "Overlap", labels=["owl", "wren"])
    owl, wren = project.labels.order_by("name")
    model = register_embedding_model("test-model", "1", 4, 3.0, 1.5, 16_000)
    deployment = create_deployment(project, "Reed bed", timezone="Europe/Berlin", hop_s=1.5)
    recording = Recording.objects.create(
        deployment=deployment,
        path="/reed.wav",
        filename="reed.wav",
        status=RecordingStatus.DONE,
        started_at=dt.datetime(2024, 5, 1, 3, 0, tzinfo=dt.UTC),
        duration_s=20.0,
    )
    starts = np.arange(12) * 1.5
    replace_windows(recording.pk, model, starts, starts + 3.0, np.ones((12, 4), np.float32))
    windows = list(Window.objects.filter(recording=recording).order_by("start_s"))
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status=TaskStatus.DONE)
    ClassifierLabel.objects.create(classifier=classifier, label=owl, index=0)
    ClassifierLabel.objects.create(classifier=classifier, label=wren, index=1)
    run = InferenceRun.objects.create(classifier=classifier, deployment=deployment, status=TaskStatus.DONE)
    for index, score in ((0, 0.6), (1, 0.9), (2, 0.7), (5, 0.8), (7, 0.65), (10, 0.55)):
        Detection.objects.create(run=run, window=windows[index], label=owl, score=score)
    Detection.objects.create(run=run, window=windows[1], label=wren, score=0.6)
    assert store_detection_events(run) == 4  # what the worker does after storing detections
    return user, project, run, windows


@pytest.mark.django_db
def test_overlapping_detections_of_a_call_are_one_event_with_its_peak(overlapping_run):
    _, _, run, windows = overlapping_run
    events = [
        (e.label.name, e.start_s, e.end_s, e.peak_score, e.peak_window_id, e.windows)
        for e in DetectionEvent.objects.filter(run=run).order_by("label__name", "start_s")
    ]
    assert events == [
        ("owl", 0.0, 6.0, 0.9, windows[1].pk, 3),
        ("owl", 7.5, 13.5, 0.8, windows[5].pk, 2),  # 7.5-10.5 and 10.5-13.5 touch
        ("owl", 15.0, 18.0, 0.55, windows[10].pk, 1),
        ("wren", 1.5, 4.5, 0.6, windows[1].pk, 1),
    ]
    started = DetectionEvent.objects.get(run=run, start_s=7.5).started_at
    assert started == dt.datetime(2024, 5, 1, 3, 0, 7, 500000, tzinfo=dt.UTC)
    strong = filtered_events(run, DetectionFilters(min_score=0.7, unit="events"))
    assert [e.peak_score for e in strong] == [0.9, 0.8]  # the peak decides, best first


def csv_rows(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.django_db
def test_events_go_to_the_page_the_api_the_csv_and_raven(overlapping_run, client_for):
    user, project, run, windows = overlapping_run
    owl = project.labels.get(name="owl")
    base = f"/api/projects/{project.pk}/runs/{run.pk}"
    api = client_for(user)
    answer = api.get(f"{base}/detections/?unit=events&label={owl.pk}&order=time").json()
    assert answer["count"] == 3
    assert [(d["start_s"], d["end_s"], d["windows"], d["window_id"]) for d in answer["detections"]] == [
        (0.0, 6.0, 3, windows[1].pk),
        (7.5, 13.5, 2, windows[5].pk),
        (15.0, 18.0, 1, windows[10].pk),
    ]
    assert api.get(f"{base}/detections/?unit=calls").status_code == 400
    rows = list(
        csv.DictReader(io.StringIO(b"".join(api.get(f"{base}/detections.csv?unit=events").streaming_content).decode()))
    )
    assert [(r["label"], r["start_s"], r["end_s"], r["score"], r["windows"]) for r in rows][:2] == [
        ("owl", "0.000", "6.000", "0.900000", "3"),
        ("owl", "7.500", "13.500", "0.800000", "2"),
    ]
    assert rows[0]["start_time_local"] == "2024-05-01T05:00:00.000+02:00"  # the event's start, not its peak's
    per_window = list(
        csv.DictReader(io.StringIO(b"".join(api.get(f"{base}/detections.csv").streaming_content).decode()))
    )
    assert len(per_window) == 7 and {r["windows"] for r in per_window} == {"1"}
    with zipfile.ZipFile(io.BytesIO(api.get(f"{base}/raven.zip?unit=events").content)) as archive:
        table = archive.read("reed.Table.1.selections.txt").decode().splitlines()
    header = table[0].split("\t")
    first = dict(zip(header, table[1].split("\t"), strict=True))
    assert len(table) == 5  # the header and four events
    assert (first["Begin Time (s)"], first["End Time (s)"], first["Windows"]) == ("0.000000", "6.000000", "3")
    page = Client()
    page.force_login(user)
    html = page.get(f"/projects/{project.pk}/runs/{run.pk}/?unit=events").content.decode()
    assert "4 events" in html and "0.0–6.0 s, 3 windows (the peak, 1.5–4.5 s, below)" in html
    html = page.get(f"/projects/{project.pk}/runs/{run.pk}/").content.decode()
    assert "7 detections (windows)" in html and "make 4 events" in html


@pytest.fixture
def two_calls(make_user):
    """Two calls, each in three overlapping windows (3 s every second) of a minute, and an
    example window of the call in another recording."""
    user = make_user("lead")
    project = create_project(user, "Calls", labels=["rail"])
    model = register_embedding_model("test-model", "1", 8, 3.0, 3.0, 16_000)
    deployment = create_deployment(project, "Marsh")
    rng = np.random.default_rng(5)
    call = np.zeros(8, np.float32)
    call[0] = 1.0
    recording = Recording.objects.create(
        deployment=deployment, path="/m.wav", filename="m.wav", status=RecordingStatus.DONE, hop_s=1.0
    )
    starts = np.arange(60, dtype=np.float64)
    vectors = np.abs(rng.normal(0, 1, (60, 8))).astype(np.float32)
    vectors[:, 0] = 0  # the background holds none of the call
    # The call fills these windows, each with some of the background (cosine 1 / sqrt(1 + e^2)).
    for start, e in ((9, 0.4), (10, 0.1), (11, 0.5), (29, 0.6), (30, 0.2), (31, 0.3)):
        background = vectors[start].copy()
        vectors[start] = call + e * background / np.linalg.norm(background)
    replace_windows(recording.pk, model, starts, starts + 3.0, vectors)
    example_recording = Recording.objects.create(
        deployment=deployment, path="/e.wav", filename="e.wav", status=RecordingStatus.DONE, hop_s=1.0
    )
    replace_windows(example_recording.pk, model, np.array([0.0]), np.array([3.0]), call[None] * 10)
    example = Window.objects.get(recording=example_recording)
    return user, project, model, example


@pytest.mark.django_db
def test_a_search_shows_each_call_once_where_windows_overlap_and_every_window_on_request(two_calls):
    """The first hits are one window of each call, the best; asked for every overlapping
    window, all six."""
    _, project, model, example = two_calls
    assert windows_per_instant(project, model) == 3

    def hit_starts(**filters) -> list[float]:
        page = run_search(project, SearchSpec(positive_windows=(example.pk,), filters=SearchFilters(**filters)), k=10)
        return [hit.start_s for hit in page.hits]

    grouped = hit_starts()
    assert grouped[:2] == [10.0, 30.0]  # each call's best window, once
    assert all(abs(a - b) >= 3.0 for i, a in enumerate(grouped) for b in grouped[:i])  # no hit overlaps another
    assert len(grouped) == 10
    assert sorted(hit_starts(all_overlapping=True)[:6]) == [9.0, 10.0, 11.0, 29.0, 30.0, 31.0]


@pytest.mark.django_db
def test_the_top_queue_asks_about_each_call_once(two_calls):
    user, project, model, example = two_calls
    rail = project.labels.get()
    weights = np.full((8, 1), -2.0, np.float32)
    weights[0] = 8.0  # the call's direction, against the background's
    Annotation.objects.create(window=example, label=rail, annotator=user, value="positive")  # not queued again
    classifier = Classifier.objects.create(
        project=project,
        version=1,
        embedding_model=model,
        status=TaskStatus.DONE,
        weights=weights.tobytes(),
        bias=np.array([-4.0], np.float32).tobytes(),
    )
    ClassifierLabel.objects.create(classifier=classifier, label=rail, index=0)
    score_project(classifier)
    classifier.refresh_from_db()
    start_of = dict(Window.objects.values_list("pk", "start_s"))
    queue = [start_of[w] for w, _ in review_queue(classifier, rail.pk, "top", 6)]
    assert queue[:2] == [10.0, 30.0] and len(queue) == 6
    assert all(abs(a - b) >= 3.0 for i, a in enumerate(queue) for b in queue[:i])
    every = [start_of[w] for w, _ in review_queue(classifier, rail.pk, "top", 6, SearchFilters(all_overlapping=True))]
    assert sorted(every[:6]) == [9.0, 10.0, 11.0, 29.0, 30.0, 31.0]


def held(value: str, start: float, end: float, minute: int = 0, label: int = 1) -> HeldLabel:
    return HeldLabel(label, 7, value, "", start, end, dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.UTC))


def test_labels_move_onto_the_new_windows_their_spans_cover():
    finer = np.arange(0.0, 10.5, 1.5)  # 3 s windows every 1.5 s over 12 s
    carried = carry_over([held("positive", 0, 3), held("negative", 6, 9)], finer, finer + 3)
    assert [(finer[i], label.value) for i, label in carried] == [
        (0.0, "positive"),
        (1.5, "positive"),  # half of it is the positive's span
        (4.5, "negative"),
        (6.0, "negative"),
        (7.5, "negative"),
    ]
    # Back to no overlap: each new window takes the old window covering most of it.
    coarse = np.arange(0.0, 12.0, 3.0)
    labels = [held("positive", 0, 3), held("negative", 1.5, 4.5, minute=5), held("unsure", 3, 6)]
    assert [(coarse[i], label.value) for i, label in carry_over(labels, coarse, coarse + 3)] == [
        (0.0, "positive"),
        (3.0, "unsure"),
    ]
    # A positive and a negative holding half a new window each: no guess.
    assert carry_over([held("positive", 0, 3), held("negative", 3, 6)], np.array([1.5]), np.array([4.5])) == []
    # Two labels of one span for two labels (or annotators) both move.
    both = carry_over([held("positive", 0, 3), held("negative", 0, 3, label=2)], np.array([0.0]), np.array([3.0]))
    assert [(label.label_id, label.value) for _, label in both] == [(1, "positive"), (2, "negative")]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_deployment_embedded_again_at_another_hop_keeps_its_labels_on_their_spans(
    celery_worker_process, settings, tmp_path, birdsong, make_user, client_for
):
    samples, rate = birdsong
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    make_recordings(tmp_path / "marsh", samples, rate, count=1)
    user = make_user("lead")
    project = create_project(user, "Re-embed", labels=["bird"])
    grant_folder(project, str(tmp_path / "marsh"))
    deployment = create_deployment(project, "Marsh", server_folder=str(tmp_path / "marsh"))
    queue_ingest(deployment)
    wait_for(lambda: not Recording.objects.exclude(status="done").exists(), what="ingest")
    bird = project.labels.get()
    first, _, third, _ = Window.objects.filter(deployment_id=deployment.pk).order_by("start_s")
    set_label(project, user, first.pk, bird.pk, "positive")
    set_label(project, user, third.pk, bird.pk, "negative")
    api = client_for(user)
    url = f"/api/projects/{project.pk}/deployments/{deployment.pk}/reembed/"
    plan = api.post(url, {"hop_s": 1.5}, format="json").json()
    assert (plan["recordings"], plan["windows_now"], plan["windows_after"], plan["labels"]) == (1, 4, 7, 2)
    assert plan["queued"] == 0 and "each moves onto the new windows it covers at least half of" in plan["message"]
    assert Window.objects.filter(deployment_id=deployment.pk).count() == 4  # only told, nothing done
    assert api.post(url, {"hop_s": 0.2, "confirm": True}, format="json").status_code == 400
    queued = api.post(url, {"hop_s": 1.5, "confirm": True}, format="json")
    assert queued.status_code == 202 and queued.json()["queued"] == 1
    wait_for(
        lambda: Recording.objects.filter(status="done", hop_s=1.5).exists(),
        what=f"re-embedding ({celery_worker_process})",
    )
    labels = Annotation.objects.filter(window__deployment_id=deployment.pk).order_by("window__start_s")
    assert [(a.window.start_s, a.value) for a in labels] == [
        (0.0, "positive"),
        (1.5, "positive"),
        (4.5, "negative"),
        (6.0, "negative"),
        (7.5, "negative"),
    ]
    assert Window.objects.filter(deployment_id=deployment.pk).count() == 7
