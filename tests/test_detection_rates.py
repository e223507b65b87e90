"""Detections per day and hour of day, zero-filled and per recorded hour, against a hand count."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project
from annotations.detection_rates import Rate, recording_effort, run_rates, site_rates, store_detection_counts
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.labeling import set_label
from annotations.membership import add_member
from annotations.models import (
    Classifier,
    ClassifierLabel,
    Detection,
    InferenceRun,
    Recording,
    RecordingStatus,
    Role,
    TaskStatus,
    Window,
)
from frontend import charts

pytestmark = pytest.mark.django_db
AUCKLAND = dt.timezone(dt.timedelta(hours=13))  # Pacific/Auckland's offset in January


def _recording(deployment, name, started_at, duration_s, model, detected_starts):
    recording = Recording.objects.create(
        deployment=deployment,
        path=f"/audio/{name}",
        filename=name,
        status=RecordingStatus.DONE,
        sample_rate=16_000,
        duration_s=duration_s,
        started_at=started_at,
    )
    starts = np.asarray(detected_starts or [0.0], dtype=np.float64)
    replace_windows(recording.pk, model, starts, starts + 5, np.ones((len(starts), 4), np.float32))
    return {w.start_s: w for w in Window.objects.filter(recording=recording)}


def two_site_survey(owner) -> tuple:
    """(project, Ridge's run): two deployments in Auckland and a third without a run.
    Ridge recorded 22:30-01:30 over the night of 15-16 January, nothing on the 17th, an
    hour from 06:00 on the 18th, and 10 min of unknown start."""
    project = create_project(owner, "Kiwi", labels=["kiwi", "morepork"])
    kiwi, morepork = project.labels.order_by("name")
    model = register_embedding_model("test-model", "1", 4, 5.0, 5.0, 16_000)
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status=TaskStatus.DONE)
    ClassifierLabel.objects.create(classifier=classifier, label=kiwi, index=0)
    ClassifierLabel.objects.create(classifier=classifier, label=morepork, index=1)
    ridge = create_deployment(
        project, "Ridge", site="R1", timezone="Pacific/Auckland", latitude=-36.85, longitude=174.76
    )
    night = _recording(
        ridge, "night.wav", dt.datetime(2024, 1, 15, 22, 30, tzinfo=AUCKLAND), 3 * 3600, model, [0, 600, 5400, 6000]
    )
    _recording(ridge, "morning.wav", dt.datetime(2024, 1, 18, 6, tzinfo=AUCKLAND), 3600, model, [])
    unknown = _recording(ridge, "unknown.wav", None, 600, model, [30])
    run = InferenceRun.objects.create(classifier=classifier, deployment=ridge, status=TaskStatus.DONE)
    for start in (0, 600, 6000):  # 22:30 and 22:40 on the 15th, 00:10 on the 16th
        Detection.objects.create(run=run, window=night[start], label=kiwi, score=0.9)
    Detection.objects.create(run=run, window=night[5400], label=morepork, score=0.8)  # 00:00 on the 16th
    Detection.objects.create(run=run, window=unknown[30], label=kiwi, score=0.7)
    valley = create_deployment(
        project, "Valley", site="V1", timezone="Pacific/Auckland", latitude=-36.9, longitude=174.8
    )
    valley_windows = _recording(valley, "v.wav", dt.datetime(2024, 1, 16, 20, tzinfo=AUCKLAND), 7200, model, [0, 3700])
    valley_run = InferenceRun.objects.create(classifier=classifier, deployment=valley, status=TaskStatus.DONE)
    for window in valley_windows.values():
        Detection.objects.create(run=valley_run, window=window, label=kiwi, score=0.9)
    create_deployment(project, "Coast", site="C1", latitude=-36.7, longitude=174.9)  # no run yet
    store_detection_counts(run)  # what the worker does after storing a run's detections
    store_detection_counts(valley_run)
    return project, run


@pytest.fixture
def survey(make_user):
    return two_site_survey(make_user("owner"))


def test_days_are_zero_filled_and_normalised_by_the_hours_recorded(survey):
    _, run = survey
    kiwi, morepork = run_rates(run)
    day = dt.date(2024, 1, 15)
    # By hand: 1.5 h on the 15th (2 detections), 1.5 h on the 16th (1), nothing recorded on
    # the 17th, 1 h on the 18th (0).
    assert kiwi.label == "kiwi"
    assert kiwi.days == [
        (day, Rate(2, 1.5)),
        (day + dt.timedelta(1), Rate(1, 1.5)),
        (day + dt.timedelta(2), Rate(0, 0.0)),
        (day + dt.timedelta(3), Rate(0, 1.0)),
    ]
    assert [rate.per_hour for _, rate in kiwi.days] == [pytest.approx(4 / 3), pytest.approx(2 / 3), None, 0.0]
    assert [rate.detections for _, rate in morepork.days] == [0, 1, 0, 0]
    # Hours of day: 22:30-23:00 holds two detections in half an hour.
    assert kiwi.hours[22] == Rate(2, 0.5) and kiwi.hours[22].per_hour == 4
    assert kiwi.hours[23] == Rate(0, 1.0) and kiwi.hours[0] == Rate(1, 1.0) and kiwi.hours[1] == Rate(0, 0.5)
    assert kiwi.hours[6] == Rate(0, 1.0) and kiwi.hours[12] == Rate(0, 0.0)
    # The start-unknown detection and its 10 minutes count in the total only.
    assert kiwi.unknown_start == 1
    assert kiwi.total == Rate(4, 4 + 1 / 6)


def test_effort_splits_recordings_at_local_hours_of_a_half_hour_zone(survey):
    project, _ = survey
    adelaide = create_deployment(project, "Adelaide", timezone="Australia/Adelaide")  # UTC+10:30 in January
    Recording.objects.create(
        deployment=adelaide,
        path="/audio/a.wav",
        filename="a.wav",
        status=RecordingStatus.DONE,
        duration_s=3600,
        started_at=dt.datetime(2024, 1, 15, 13, 15, tzinfo=dt.UTC),  # 23:45 local
    )
    day = dt.date(2024, 1, 15)
    assert recording_effort(adelaide) == {(day, 23): 900.0, (day + dt.timedelta(1), 0): 2700.0}


def test_the_sites_table_and_map_cover_every_deployment_with_a_run(survey):
    project, run = survey
    sites = site_rates(run)
    assert [s.deployment.name for s in sites] == ["Ridge", "Valley"]
    ridge, valley = sites
    assert ridge.recorded_hours == pytest.approx(4 + 1 / 6)
    assert [(r.label, r.rate.detections, r.days_detected) for r in ridge.rates] == [("kiwi", 4, 2), ("morepork", 1, 1)]
    assert valley.rates[0].rate == Rate(2, 2.0) and valley.rates[0].days_detected == 1
    maps = charts.site_maps(project.deployments.all(), sites)
    assert [label for label, _ in maps] == ["kiwi", "morepork"]
    kiwi_map = str(maps[0][1])
    assert kiwi_map.count("<circle") == 3 + 2  # three deployments, two legend marks
    assert "Coast: no finished run" in kiwi_map and "Valley: 2 detections in 2.00 h" in kiwi_map
    assert " km</text>" in kiwi_map and "http" not in kiwi_map.replace("http://www.w3.org/2000/svg", "")


def test_the_run_page_draws_dated_charts_a_sites_table_and_a_map(survey):
    project, run = survey
    browser = Client()
    browser.force_login(project.created_by)
    page = browser.get(f"/projects/{project.pk}/runs/{run.pk}/").content.decode()
    assert page.count('class="chart-figure"') == 2 * 2 + 2  # per label a daily and a diel chart; a map per label
    assert page.count('data-chart-download="png"') == 6
    assert ">15 Jan</text>" in page and ">22:00</text>" not in page  # ticks every few hours
    assert ">00:00</text>" in page and "no recording</text>" in page
    assert "no effort: no recording this day" in page
    assert "2024-01-17 Wed" in page


def test_the_project_page_lists_runs_and_classifier_versions(survey):
    project, run = survey
    Classifier.objects.filter(project=project).update(created_at=dt.datetime(2024, 2, 1, 9, 30, tzinfo=dt.UTC))
    browser = Client()
    browser.force_login(project.created_by)
    page = browser.get(f"/projects/{project.pk}/").content.decode()
    assert "<td>linear <small>on test-model</small></td>" in page
    assert ">2024-02-01 09:30 UTC</time>" in page and "<td>kiwi, morepork</td>" in page
    runs = page[page.index("<h2>Runs</h2>") :]
    assert runs.count('href="/projects/') == 4  # two runs, each with its classifier
    assert f'href="/projects/{project.pk}/runs/{run.pk}/"' in runs and "Ridge <small>(R1)</small>" in runs
    assert "Valley <small>(V1)</small>" in runs and "<td>per label</td>" in runs


def test_detections_filter_and_sort_and_the_exports_hold_the_same_ones(survey, make_user, client_for):
    project, run = survey
    kiwi, morepork = project.labels.order_by("name")
    owner, other = project.created_by, make_user("second")
    add_member(project, other.username, Role.ANNOTATOR)
    by_start = {
        (d.window.recording.filename, d.window.start_s): d for d in run.detections.select_related("window__recording")
    }
    set_label(project, owner, by_start["night.wav", 0].window_id, kiwi.pk, "positive")
    set_label(project, owner, by_start["night.wav", 600].window_id, kiwi.pk, "positive")
    set_label(project, other, by_start["night.wav", 600].window_id, kiwi.pk, "negative")
    client = client_for(owner)
    url = f"/api/projects/{project.pk}/runs/{run.pk}/detections/"

    def chosen(query: str) -> list[tuple[str, float]]:
        response = client.get(f"{url}?{query}")
        assert response.status_code == 200, response.content
        return [(d["recording"], d["start_s"]) for d in response.json()["detections"]]

    assert len(chosen(f"label={kiwi.pk}")) == 4 and chosen(f"label={morepork.pk}") == [("night.wav", 5400.0)]
    assert len(chosen("min_score=0.85")) == 3 and len(chosen("min_score=0.75")) == 4  # 0.9 x 3, 0.8, 0.7
    assert chosen("min_score=0.95") == []
    # Local days in the deployment's zone; a window of unknown start passes no date filter.
    assert sorted(chosen("date_from=2024-01-16&date_to=2024-01-16")) == [("night.wav", 5400.0), ("night.wav", 6000.0)]
    assert chosen("review=verified") == [("night.wav", 0.0)] and chosen("review=disputed") == [("night.wav", 600.0)]
    assert len(chosen("review=unreviewed")) == 3
    assert chosen("order=time")[:2] == [("night.wav", 0.0), ("night.wav", 600.0)]
    refused = client.get(f"{url}?review=maybe")
    assert refused.status_code == 400 and "review must be one of" in refused.json()["error"]

    # The exports hold what the page shows.
    csv_response = client.get(f"/api/projects/{project.pk}/runs/{run.pk}/detections.csv?review=unreviewed")
    csv_text = b"".join(csv_response.streaming_content)
    assert len(csv_text.decode().strip().splitlines()) == 1 + 3
    browser = Client()
    browser.force_login(owner)
    page = browser.get(f"/projects/{project.pk}/runs/{run.pk}/?label={kiwi.pk}&order=time").content.decode()
    assert "4 detections" in page and f"detections.csv?label={kiwi.pk}&amp;order=time" in page
