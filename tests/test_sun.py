"""Filters relative to sunrise and sunset (annotations.sun): sun times worked out with
astral at each deployment's place, and every search path keeping exactly the windows
within the chosen minutes of each day's event."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project, update_deployment
from annotations.detection_events import store_detection_events
from annotations.detection_filters import detection_filters_from_params, filtered_detections, filtered_events
from annotations.detection_rates import run_sun_rates, store_sun_counts
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.models import (
    Classifier,
    ClassifierLabel,
    Detection,
    InferenceRun,
    Recording,
    RecordingStatus,
    SearchRecord,
    SunDay,
    TaskStatus,
)
from annotations.review_queues import review_queue
from annotations.search import SearchFilters, nearest_window_ids
from annotations.search.spec import filters_from_params, spec_params
from annotations.search_index import build_search_index
from annotations.stored_scores import score_project
from annotations.sun import ensure_sun_days, sun_times
from annotations.vocabulary import add_label

pytestmark = pytest.mark.django_db

BERLIN = (52.52, 13.405, "Europe/Berlin")
ZONE = zoneinfo.ZoneInfo("Europe/Berlin")
# Two 6-hour recordings at dawn, a minute a window, on days whose sunrises differ by 1 h 45.
STARTS = [dt.datetime(2026, 4, 10, 3, 0, tzinfo=ZONE), dt.datetime(2026, 6, 21, 2, 0, tzinfo=ZONE)]
HOURS = 6


def test_sun_times_through_the_seasons_and_at_the_poles():
    (midsummer,) = sun_times(*BERLIN, dt.date(2026, 6, 21), dt.date(2026, 6, 21))
    assert midsummer.sunrise.astimezone(ZONE).strftime("%H:%M") in ("04:43", "04:44")
    assert midsummer.sunset.astimezone(ZONE).strftime("%H:%M") in ("21:32", "21:33")  # published: 21:33
    # Across the change of clock (29 March): the sunrise moves an hour on the clock, two
    # minutes in UTC.
    before, change, after = sun_times(*BERLIN, dt.date(2026, 3, 28), dt.date(2026, 3, 30))
    assert after.sunrise.astimezone(ZONE).hour - before.sunrise.astimezone(ZONE).hour == 1
    assert dt.timedelta(minutes=3) < before.sunrise.replace(day=30) - after.sunrise < dt.timedelta(minutes=5)
    (svalbard,) = sun_times(78.22, 15.65, "Arctic/Longyearbyen", dt.date(2026, 6, 21), dt.date(2026, 6, 21))
    assert svalbard.sunrise is None and svalbard.sunset is None  # midnight sun


@pytest.fixture
def dawn_survey(make_user):
    """A located deployment and an unlocated one, each with the two dawn recordings."""
    project = create_project(make_user("dawn"), "Dawn chorus")
    model = register_embedding_model("sun-test", "1", 16, 60.0, 60.0, 16_000)
    rng = np.random.default_rng(4)
    located = create_deployment(project, "Located")
    update_deployment(located, latitude=BERLIN[0], longitude=BERLIN[1], timezone=BERLIN[2])
    unlocated = create_deployment(project, "No coordinates")
    update_deployment(unlocated, timezone=BERLIN[2])
    windows = {}  # window id -> (deployment, UTC start)
    for deployment in (located, unlocated):
        for number, started in enumerate(STARTS):
            recording = Recording.objects.create(
                deployment=deployment,
                path=f"/{deployment.pk}/{number}.wav",
                filename=f"{number}.wav",
                status=RecordingStatus.DONE,
                started_at=started,
                duration_s=HOURS * 3600.0,
            )
            starts = np.arange(HOURS * 60, dtype=np.float64) * 60
            vectors = (rng.standard_normal((len(starts), 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
            replace_windows(recording.pk, model, starts, starts + 60, vectors + 3)
            for window_id, start_s in recording.windows.values_list("id", "start_s"):
                windows[window_id] = (deployment.pk, started + dt.timedelta(seconds=start_s))
    return project, model, located, windows


def expected_windows(windows, located, event: str, low: float, high: float) -> set[int]:
    """Computed apart from the app: each day's event from astral, its minutes compared in Python."""
    days = {start.astimezone(ZONE).date() for start in STARTS}
    events = [getattr(t, event) for day in days for t in sun_times(*BERLIN, day, day)]
    return {
        window_id
        for window_id, (deployment_id, start) in windows.items()
        if deployment_id == located.pk
        and any(e + dt.timedelta(minutes=low) <= start < e + dt.timedelta(minutes=high) for e in events)
    }


@pytest.mark.parametrize("path", ["exact", "sketch", "index"])
def test_every_path_keeps_exactly_the_windows_near_each_days_sunrise_or_sunset(dawn_survey, path):
    project, model, located, windows = dawn_survey
    limits = {"exact": (10**9, 0), "sketch": (0, 10**9), "index": (0, 0)}[path]
    if path == "index":
        build_search_index(project, model)
    query = np.ones(16, np.float32)
    for event, low, high in (("sunrise", -30, 90), ("sunrise", 0, 45), ("sunset", -720, -660)):
        filters = SearchFilters(sun_event=event, sun_from_min=low, sun_to_min=high)
        found = nearest_window_ids(
            project, model, query, 500, filters=filters, exact_scan_max=limits[0], sketch_scan_max=limits[1]
        )
        expected = expected_windows(windows, located, event, low, high)
        assert expected, (event, low, high)  # the recordings reach into each range
        assert {window_id for window_id, _ in found.scored} == expected, (path, event, low, high)
        assert found.path == path
    # The dawn chorus of both days: 06:28 in April and 04:43 in June, on the clock.
    dawn = expected_windows(windows, located, "sunrise", -30, 90)
    clock = sorted({windows[w][1].astimezone(ZONE).strftime("%m-%d %H") for w in dawn})
    assert clock[0].startswith("04-10 05") and any(c.startswith("06-21 04") for c in clock)


def test_moving_a_deployment_works_its_sun_times_out_again(dawn_survey):
    project, _, located, _ = dawn_survey
    assert ensure_sun_days(project)  # the first search's work
    assert not ensure_sun_days(project)  # nothing new
    rows = SunDay.objects.filter(deployment=located)
    # Every local day from the first recording's to the last's, and one either side;
    # nothing for the deployment without coordinates.
    days = sorted(row.day for row in rows)
    assert days[0] == dt.date(2026, 4, 9) and days[-1] == dt.date(2026, 6, 22) and len(days) == 75
    assert SunDay.objects.exclude(deployment=located).count() == 0
    update_deployment(located, longitude=-3.70, latitude=40.42)  # Madrid, still in Berlin's zone
    assert ensure_sun_days(project)
    june = SunDay.objects.get(deployment=located, day=dt.date(2026, 6, 21))
    assert june.longitude == -3.70 and june.sunrise.astimezone(ZONE).strftime("%H") == "06"


def test_sun_filters_are_checked_and_kept_in_links_and_history(dawn_survey, client_for, make_user):
    project, model, located, windows = dawn_survey
    filters = filters_from_params({"sun": "sunrise"})
    assert (filters.sun_event, filters.sun_from_min, filters.sun_to_min) == ("sunrise", -30, 90)
    assert filters_from_params(dict(spec_params_of(filters))) == filters
    for bad in (
        {"sun": "noon"},
        {"sun": "sunset", "sun_from": "60", "sun_to": "30"},
        {"sun": "sunset", "sun_from": "-900"},
        {"sun": "sunrise", "hour_from": "4"},
        {"sun": "sunrise", "sun_from": "early"},
    ):
        with pytest.raises(InputError):
            filters_from_params(bad)
    window_id = next(iter(windows))
    api = client_for(project.created_by)
    url = f"/api/projects/{project.pk}/search/"
    answer = api.post(
        url,
        {"window_id": window_id, "k": 500, "sun_event": "sunset", "sun_from_min": -720, "sun_to_min": -660},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert {hit["window_id"] for hit in answer.json()["hits"]} == expected_windows(
        windows, located, "sunset", -720, -660
    ) - {window_id}
    refused = api.post(
        url, {"window_id": window_id, "sun_event": "sunrise", "sun_from_min": 30, "sun_to_min": 0}, format="json"
    )
    assert refused.status_code == 400 and "before their end" in refused.content.decode()
    # The page: the filter is saved with the search and shown again.
    client = Client()
    client.force_login(project.created_by)
    page = client.get(f"/projects/{project.pk}/search/", {"window": window_id, "sun": "sunrise", "sun_to": "60"})
    record = SearchRecord.objects.get()
    assert (record.sun_event, record.sun_from_min, record.sun_to_min) == ("sunrise", -30, 60)
    html = client.get(page["Location"]).content.decode()
    assert "<option selected>sunrise</option>" in html and 'name="sun_to"' in html and 'value="60"' in html


def spec_params_of(filters: SearchFilters) -> list[tuple[str, str]]:
    from annotations.search import SearchSpec

    return spec_params(SearchSpec(positive_windows=(1,), filters=filters))


def test_review_queues_keep_only_windows_near_sunrise_and_the_review_page_shows_the_filter(dawn_survey, make_user):
    project, model, located, windows = dawn_survey
    label = add_label(project, "Blackbird")
    classifier = Classifier.objects.create(
        project=project,
        version=1,
        embedding_model=model,
        status=TaskStatus.DONE,
        weights=np.ones((16, 1), np.float32).tobytes(),
        bias=np.zeros(1, np.float32).tobytes(),
    )
    ClassifierLabel.objects.create(classifier=classifier, label=label, index=0)
    score_project(classifier)
    classifier.refresh_from_db()
    dawn = expected_windows(windows, located, "sunrise", -30, 90)
    filters = SearchFilters(sun_event="sunrise", sun_from_min=-30, sun_to_min=90)
    for kind in ("top", "margin", "bins"):
        queue = {window_id for window_id, _ in review_queue(classifier, label.pk, kind, 50, filters)}
        assert queue and queue <= dawn, kind
    assert len({w for w, _ in review_queue(classifier, label.pk, "top", 500, filters)}) == len(dawn)
    client = Client()
    client.force_login(project.created_by)
    page = client.get(
        f"/projects/{project.pk}/classifiers/{classifier.pk}/review/",
        {"label": label.pk, "kind": "top", "sun": "sunrise", "sun_from": "-30", "sun_to": "90"},
    )
    html = page.content.decode()
    assert page.status_code == 200 and "<option selected>sunrise</option>" in html and 'value="-30"' in html
    assert html.count('class="hit"') == 50


def finished_run(dawn_survey, label_name: str, every: int) -> tuple[InferenceRun, list[int]]:
    """A finished run over the located deployment that detected every ``every``-th window."""
    project, model, located, windows = dawn_survey
    label = add_label(project, label_name)
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status=TaskStatus.DONE)
    ClassifierLabel.objects.create(classifier=classifier, label=label, index=0)
    run = InferenceRun.objects.create(classifier=classifier, deployment=located, status=TaskStatus.DONE)
    detected = sorted(w for w, (deployment_id, _) in windows.items() if deployment_id == located.pk)[::every]
    Detection.objects.bulk_create(Detection(run=run, window_id=w, label=label, score=0.9) for w in detected)
    return run, detected


def test_detections_events_and_their_exports_keep_only_those_near_sunrise(dawn_survey, client_for):
    project, _, located, windows = dawn_survey
    # Every tenth window of the located deployment detected: each detection its own event.
    run, detected = finished_run(dawn_survey, "Song thrush", every=10)
    store_detection_events(run)
    dawn = expected_windows(windows, located, "sunrise", -30, 90) & set(detected)
    assert 0 < len(dawn) < len(detected)
    filters = detection_filters_from_params({"sun": "sunrise"})
    assert {d.window_id for d in filtered_detections(run, filters)} == dawn
    assert {e.peak_window_id for e in filtered_events(run, filters)} == dawn
    assert detection_filters_from_params(filters.as_params()) == filters
    with pytest.raises(InputError):
        detection_filters_from_params({"sun": "sunset", "sun_from": "90", "sun_to": "-30"})
    api = client_for(project.created_by)
    csv = api.get(f"/api/projects/{project.pk}/runs/{run.pk}/detections.csv", {"sun": "sunrise"})
    assert csv.status_code == 200
    assert len(b"".join(csv.streaming_content).decode().strip().splitlines()) == 1 + len(dawn)
    client = Client()
    client.force_login(project.created_by)
    page = client.get(f"/projects/{project.pk}/runs/{run.pk}/", {"sun": "sunrise", "sun_to": "60"})
    html = page.content.decode()
    assert page.status_code == 200 and "<option selected>sunrise</option>" in html and "sun_to=60" in html


def test_a_runs_detections_are_charted_around_sunrise_and_sunset_per_recorded_hour(dawn_survey):
    project, _, located, windows = dawn_survey
    run, detected = finished_run(dawn_survey, "Robin", every=3)
    assert run_sun_rates(run) == []  # not counted yet: a run made before the counts
    store_sun_counts(run)
    run.refresh_from_db()
    (sunrise, sunset) = run_sun_rates(run)
    assert (sunrise.event, sunset.event) == ("sunrise", "sunset")
    offsets = [offset for offset, _ in sunrise.quarters]
    assert offsets[0] == -180 and offsets[-1] == 165 and len(offsets) == 24
    by_offset = dict(sunrise.quarters)
    # Both dawn recordings cover the quarter hour after sunrise: half an hour of effort.
    assert by_offset[0].recorded_hours == pytest.approx(0.5)
    assert by_offset[0].detections == len(expected_windows(windows, located, "sunrise", 0, 15) & set(detected))
    assert sum(rate.detections for _, rate in sunrise.quarters) == len(
        expected_windows(windows, located, "sunrise", -180, 180) & set(detected)
    )
    # Sunset lies 11-13 h after these recordings: no effort, nothing counted.
    assert all(not rate.effort and rate.detections == 0 for _, rate in sunset.quarters)
    client = Client()
    client.force_login(project.created_by)
    html = client.get(f"/projects/{project.pk}/runs/{run.pk}/").content.decode()
    assert "Around sunrise and sunset" in html and "Robin: detections per recorded hour around sunrise" in html
