"""The map of a project's embedding space (annotations.embedding_map): the projection on
real BirdNET embeddings of real sound, and the stored map, its colours and its pages on
the real database."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project
from annotations.embedding_map import LABEL_STATES, build_embedding_map, map_points, project_to_plane
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.labeling import set_label
from annotations.models import (
    Classifier,
    ClassifierLabel,
    EmbeddingMap,
    Membership,
    Recording,
    RecordingStatus,
    Role,
    TaskStatus,
    Window,
    WindowScore,
)

REAL = Path(__file__).resolve().parent.parent / "bench" / "data" / "birdnet_windows.npz"


def test_on_real_birdnet_windows_the_map_keeps_each_call_type_together():
    data = np.load(REAL)
    embeddings, call_type = data["embeddings"].astype(np.float32), data["call_type"]
    projection = project_to_plane(embeddings)
    assert projection.method == "umap" and projection.points.shape == (len(embeddings), 2)
    assert np.abs(projection.points).max() == pytest.approx(1.0) and 0 < projection.explained < 1
    # Of the real calls, the nearest on the map is of the same call type five times as
    # often as chance would have it (0.90 against 0.17 measured; 0.52 on the two leading
    # principal axes alone).
    calls = np.flatnonzero(call_type != "")
    places, kinds = projection.points[calls], call_type[calls]
    distances = ((places[:, None] - places[None]) ** 2).sum(axis=-1)
    np.fill_diagonal(distances, np.inf)
    same = float((kinds[distances.argmin(axis=1)] == kinds).mean())
    _, counts = np.unique(kinds, return_counts=True)
    chance = float(((counts / counts.sum()) ** 2).sum())
    assert same >= 4 * chance, (same, chance)
    # The same windows draw the same map; a handful, on their two leading axes.
    np.testing.assert_array_equal(project_to_plane(embeddings).points, projection.points)
    few = project_to_plane(embeddings[:12])
    assert few.method == "pca" and np.abs(few.points).max() == pytest.approx(1.0)


@pytest.fixture
def mapped(make_user):
    """Two sites' windows (the second site's an hour later, in another zone), drawn on a map."""
    owner = make_user("owner")
    project = create_project(owner, "Marsh", labels=["rail"])
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    rng = np.random.default_rng(0)
    for site, zone, hour in (("North", "UTC", 5), ("South", "America/New_York", 6)):
        deployment = create_deployment(project, f"{site} pond", site=site, timezone=zone)
        recording = Recording.objects.create(
            deployment=deployment,
            path=f"/{site}.wav",
            filename=f"{site}.wav",
            status=RecordingStatus.DONE,
            started_at=dt.datetime(2026, 5, 1, hour, tzinfo=dt.UTC),
        )
        starts = np.arange(6.0)
        replace_windows(recording.pk, model, starts, starts + 1, rng.random((6, 4), dtype=np.float32) + 0.1)
    row = EmbeddingMap.objects.create(project=project, model=model)
    return owner, project, build_embedding_map(row.pk)


def test_a_map_holds_every_window_of_a_small_project_coloured_by_site_hour_and_label(mapped, make_user):
    owner, project, row = mapped
    assert row.status == "done" and row.method == "pca" and row.windows_total == 12 and row.points.count() == 12
    by_site = map_points(row, "site")
    assert by_site.categories == ["North", "South"] and sorted(by_site.category) == [0] * 6 + [1] * 6
    assert all(-1 <= value <= 1 for value in by_site.x + by_site.y)
    by_hour = map_points(row, "hour")  # 06:00 UTC is 02:00 in New York in May
    assert {by_hour.categories[c] for c in by_hour.category} == {"05:00", "02:00"}

    rail = project.labels.get()
    first, second, third = Window.objects.filter(project=project).order_by("pk")[:3]
    other = make_user("second-annotator")
    Membership.objects.create(project=project, user=other, role=Role.ANNOTATOR)
    for window, annotator, value in (
        (first, owner, "positive"),
        (second, owner, "negative"),
        (third, owner, "positive"),
    ):
        set_label(project, annotator, window.pk, rail.pk, value)
    set_label(project, other, third.pk, rail.pk, "negative")
    by_label = map_points(row, "label", rail)
    states = dict(zip(by_label.window_ids, (LABEL_STATES[c] for c in by_label.category), strict=True))
    assert (states[first.pk], states[second.pk], states[third.pk]) == ("positive", "negative", "annotators disagree")
    assert list(states.values()).count("not labeled") == 9

    # A recording embedded again: its old windows leave the map until it is drawn again.
    north = Recording.objects.get(filename="North.wav")
    replace_windows(north.pk, row.model, np.arange(2.0), np.arange(2.0) + 1, np.ones((2, 4), np.float32))
    assert len(map_points(row, "site").window_ids) == 6


def test_a_map_is_coloured_by_the_newest_scored_classifiers_score_for_a_label(mapped):
    """Tenths of the score of the newest classifier whose scoring finished (a newer one
    still scoring is passed over); windows it did not score are told apart."""
    owner, project, row = mapped
    rail = project.labels.get()
    with pytest.raises(InputError, match="no classifier has scored the windows for 'rail'"):
        map_points(row, "score", rail)
    windows = list(Window.objects.filter(project=project).order_by("pk"))
    for version, scoring in ((1, TaskStatus.DONE), (2, TaskStatus.RUNNING)):
        classifier = Classifier.objects.create(
            project=project, version=version, embedding_model=row.model, status=TaskStatus.DONE, scoring_status=scoring
        )
        ClassifierLabel.objects.create(classifier=classifier, label=rail, index=0)
        scores = (0.05, 0.55, 0.95, 1.0) if version == 1 else (0.5,) * 4
        WindowScore.objects.bulk_create(
            WindowScore(classifier=classifier, output_index=0, window=w, deployment_id=w.deployment_id, score=score)
            for w, score in zip(windows, scores, strict=False)
        )
    by_score = map_points(row, "score", rail)
    assert by_score.source == "scores of classifier version 1"
    named = dict(zip(by_score.window_ids, (by_score.categories[c] for c in by_score.category), strict=True))
    assert [named[w.pk] for w in windows[:5]] == [
        "score 0.0–0.1",
        "score 0.5–0.6",
        "score 0.9–1.0",
        "score 0.9–1.0",
        "not scored",
    ]


def test_the_map_api_and_pages_refuse_what_they_cannot_draw(mapped, client_for, make_user):
    owner, project, row = mapped
    api = client_for(owner)
    base = f"/api/projects/{project.pk}/maps/"
    listed = api.get(base).json()
    assert [(m["id"], m["status"], m["model_name"]) for m in listed] == [(row.pk, "done", str(row.model))]
    points = api.get(f"{base}{row.pk}/points/?colour_by=site").json()
    assert len(points["window_ids"]) == 12 and points["categories"] == ["North", "South"]
    for query, says in (("colour_by=mood", "colour_by must be one of"), ("colour_by=label", "name the label")):
        refused = api.get(f"{base}{row.pk}/points/?{query}")
        assert refused.status_code == 400 and says in refused.json()["error"]
    empty = create_project(owner, "Empty")
    refused = api.post(f"/api/projects/{empty.pk}/maps/", {"model": row.model.pk}, format="json")
    assert refused.status_code == 400 and "no windows" in refused.json()["error"]
    viewer_project_map = client_for(make_user("stranger")).get(f"{base}{row.pk}/points/")
    assert viewer_project_map.status_code == 404

    page = Client()
    page.force_login(owner)
    html = page.get(f"/projects/{project.pk}/map/").content.decode()
    assert "data-map-canvas" in html and "Drawn from 12 of 12 windows" in html
    # The lasso's labeling list: this project's windows only, in the order given.
    foreign = create_project(make_user("other-owner"), "Other")
    stray = Recording.objects.create(deployment=create_deployment(foreign, "D"), path="/x.wav", filename="x.wav")
    replace_windows(stray.pk, row.model, np.zeros(1), np.ones(1), np.ones((1, 4), np.float32))
    ours = list(Window.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True)[:3])
    theirs = Window.objects.get(recording=stray).pk
    listed = page.get(f"/projects/{project.pk}/windows/?ids={','.join(map(str, [*ours, theirs]))}").content.decode()
    assert [int(pk) for pk in re.findall(r'class="hit" tabindex="-1" data-window="(\d+)"', listed)] == ours
    assert "1 of the selection is no longer in the project" in listed
    assert "ids must be a whole number" in page.get(f"/projects/{project.pk}/windows/?ids=1,x").content.decode()
