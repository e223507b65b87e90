"""Detections normalised by recording effort: per local day, per hour of day, per site,
and per quarter hour around sunrise and sunset.

A day's rate is its detections per recorded hour. Days between a deployment's first and
last recording that hold no recording have no effort: their rate is unknown, not 0.
Detection counts per label, local day and hour are stored by the worker with the run's
detections (``store_detection_counts``); effort comes from the deployment's recordings
(start and duration), split at local hour boundaries.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from collections import defaultdict
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Count, Max, Q, Sum

from annotations.models import (
    Deployment,
    DetectionCount,
    InferenceRun,
    RecordingStatus,
    SunDay,
    SunDetectionCount,
    TaskStatus,
)
from annotations.sun import SUN_EVENTS, ensure_sun_days

# Around sunrise and sunset: quarter hours, three hours either side.
SUN_BIN_MIN = 15
SUN_REACH_MIN = 180
# Every time zone's offset from UTC is a whole number of quarter hours, so a quarter hour
# of UTC never straddles a local hour boundary.
QUARTER = dt.timedelta(minutes=15)
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def recording_effort(deployment: Deployment) -> dict[tuple[dt.date, int], float]:
    """Seconds of ingested audio per (local day, local hour), from recordings with a known start."""
    zone = ZoneInfo(deployment.timezone)
    effort: dict[tuple[dt.date, int], float] = defaultdict(float)
    recordings = deployment.recordings.filter(
        status=RecordingStatus.DONE, started_at__isnull=False, duration_s__gt=0
    ).values_list("started_at", "duration_s")
    for started, duration_s in recordings:
        end = started + dt.timedelta(seconds=duration_s)
        moment = started
        while moment < end:
            piece_end = min(end, moment - (moment - EPOCH) % QUARTER + QUARTER)
            local = moment.astimezone(zone)
            effort[(local.date(), local.hour)] += (piece_end - moment).total_seconds()
            moment = piece_end
    return dict(effort)


@dataclasses.dataclass(frozen=True)
class Rate:
    """Detections in a stretch of time (a day, an hour of day) and the hours recorded in it."""

    detections: int
    recorded_hours: float

    @property
    def effort(self) -> bool:
        return self.recorded_hours > 0

    @property
    def per_hour(self) -> float | None:
        """Detections per recorded hour; None without effort."""
        return self.detections / self.recorded_hours if self.effort else None


@dataclasses.dataclass(frozen=True)
class LabelRates:
    """One label of a run: every day from the first to the last recorded one, zero-filled,
    the 24 local hours of day, and detections in windows whose start is unknown."""

    label: str
    days: list[tuple[dt.date, Rate]]
    hours: list[Rate]  # index: local hour of day
    total: Rate
    unknown_start: int


def store_detection_counts(run: InferenceRun) -> None:
    """Count the run's detections per label, local day and local hour (a worker's part,
    after it stored the detections: it reads each of them once)."""
    DetectionCount.objects.filter(run=run).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DetectionCount._meta.db_table} (run_id, label_id, day, hour, detections) "
            "SELECT x.run_id, x.label_id, (w.started_at AT TIME ZONE d.timezone)::date, "
            "extract(hour FROM w.started_at AT TIME ZONE d.timezone)::int, count(*) "
            "FROM annotations_detection x JOIN annotations_window w ON w.id = x.window_id "
            "JOIN annotations_deployment d ON d.id = w.deployment_id WHERE x.run_id = %s GROUP BY 1, 2, 3, 4",
            [run.pk],
        )


def store_sun_counts(run: InferenceRun) -> None:
    """Count the run's detections per label in quarter hours around each day's sunrise
    and sunset at its deployment (a worker's part, with ``store_detection_counts``); a
    deployment without coordinates has none."""
    SunDetectionCount.objects.filter(run=run).delete()
    ensure_sun_days(run.deployment.project)
    with connection.cursor() as cursor:
        for event in SUN_EVENTS:  # a known column name
            cursor.execute(
                f"INSERT INTO {SunDetectionCount._meta.db_table} (run_id, label_id, event, offset_min, detections) "
                f"SELECT x.run_id, x.label_id, %(event)s, "
                f"floor(extract(epoch FROM w.started_at - sd.{event}) / %(bin_s)s)::int * %(bin_min)s, count(*) "
                "FROM annotations_detection x JOIN annotations_window w ON w.id = x.window_id "
                f"JOIN annotations_sunday sd ON sd.deployment_id = w.deployment_id "
                f"AND sd.{event} > w.started_at - %(reach_min)s * interval '1 minute' "
                f"AND sd.{event} <= w.started_at + %(reach_min)s * interval '1 minute' "
                "WHERE x.run_id = %(run)s GROUP BY 1, 2, 3, 4",
                {
                    "run": run.pk,
                    "event": event,
                    "bin_s": 60 * SUN_BIN_MIN,
                    "bin_min": SUN_BIN_MIN,
                    "reach_min": SUN_REACH_MIN,
                },
            )
    InferenceRun.objects.filter(pk=run.pk).update(sun_counted=True)


def sun_effort(deployment: Deployment, event: str) -> dict[int, float]:
    """Seconds of ingested audio in each quarter hour around the event, summed over days:
    {minutes from the event at the quarter's start: seconds}, within SUN_REACH_MIN."""
    events = list(
        SunDay.objects.filter(deployment=deployment, **{f"{event}__isnull": False})
        .order_by(event)
        .values_list(event, flat=True)
    )
    effort: dict[int, float] = defaultdict(float)
    recordings = deployment.recordings.filter(
        status=RecordingStatus.DONE, started_at__isnull=False, duration_s__gt=0
    ).values_list("started_at", "duration_s")
    reach = dt.timedelta(minutes=SUN_REACH_MIN)
    for started, duration_s in recordings:
        end = started + dt.timedelta(seconds=duration_s)
        # Only the events within reach of the recording: a season holds hundreds of days.
        for moment in events[bisect.bisect_right(events, started - reach) : bisect.bisect_left(events, end + reach)]:
            for offset in range(-SUN_REACH_MIN, SUN_REACH_MIN, SUN_BIN_MIN):
                low = moment + dt.timedelta(minutes=offset)
                overlap = (min(end, low + dt.timedelta(minutes=SUN_BIN_MIN)) - max(started, low)).total_seconds()
                if overlap > 0:
                    effort[offset] += overlap
    return dict(effort)


@dataclasses.dataclass(frozen=True)
class SunRates:
    """One label's detections per recorded hour in each quarter hour around an event:
    (minutes from the event at the quarter's start, rate), from -SUN_REACH_MIN on."""

    label: str
    event: str
    quarters: list[tuple[int, Rate]]


def run_sun_rates(run: InferenceRun) -> list[SunRates]:
    """Per label and event (sunrise, then sunset), where the worker counted them and the
    deployment has coordinates; none otherwise."""
    deployment = run.deployment
    if not run.sun_counted or deployment.latitude is None or deployment.longitude is None:
        return []
    counts: dict[tuple[str, str, int], int] = defaultdict(int)
    for label, event, offset, detections in run.sun_counts.values_list(
        "label__name", "event", "offset_min", "detections"
    ):
        counts[label, event, offset] += detections
    rates = []
    for event in SUN_EVENTS:
        effort = sun_effort(deployment, event)
        for label in _label_names(run):
            quarters = [
                (offset, Rate(counts[label, event, offset], effort.get(offset, 0.0) / 3600))
                for offset in range(-SUN_REACH_MIN, SUN_REACH_MIN, SUN_BIN_MIN)
            ]
            rates.append(SunRates(label, event, quarters))
    return rates


def _label_names(run: InferenceRun) -> list[str]:
    return list(run.classifier.outputs.order_by("index").values_list("label__name", flat=True))


def run_rates(run: InferenceRun) -> list[LabelRates]:
    """Detection rates of each of the run's labels (in the classifier's order). The total
    counts every detection against every recorded hour, starts known or not."""
    effort = recording_effort(run.deployment)
    counts = list(run.detection_counts.values_list("label__name", "day", "hour", "detections"))
    all_hours = recorded_hours([run.deployment_id])[run.deployment_id]
    known_days = [day for _, day, _, _ in counts if day is not None] + [day for day, _ in effort]
    if known_days:
        first, last = min(known_days), max(known_days)
        calendar = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    else:
        calendar = []
    day_hours: dict[dt.date, float] = defaultdict(float)
    hour_hours: dict[int, float] = defaultdict(float)
    for (day, hour), seconds in effort.items():
        day_hours[day] += seconds / 3600
        hour_hours[hour] += seconds / 3600
    rates = []
    for label in _label_names(run):
        per_day: dict[dt.date, int] = defaultdict(int)
        per_hour: dict[int, int] = defaultdict(int)
        unknown = 0
        for name, day, hour, count in counts:
            if name != label:
                continue
            if day is None:
                unknown += count
            else:
                per_day[day] += count
                per_hour[hour] += count
        rates.append(
            LabelRates(
                label,
                [(day, Rate(per_day[day], day_hours[day])) for day in calendar],
                [Rate(per_hour[hour], hour_hours[hour]) for hour in range(24)],
                Rate(sum(per_day.values()) + unknown, all_hours),
                unknown,
            )
        )
    return rates


def recorded_hours(deployment_ids: list[int]) -> dict[int, float]:
    """Hours of ingested audio per deployment, with or without a known start."""
    seconds = (
        Deployment.objects.filter(pk__in=deployment_ids)
        .annotate(seconds=Sum("recordings__duration_s", filter=Q(recordings__status=RecordingStatus.DONE)))
        .values_list("pk", "seconds")
    )
    return {pk: (total or 0.0) / 3600 for pk, total in seconds}


@dataclasses.dataclass(frozen=True)
class SiteRate:
    """One label at one deployment: detections, hours recorded, local days with a detection."""

    label: str
    rate: Rate
    days_detected: int


@dataclasses.dataclass(frozen=True)
class SiteRates:
    """One deployment's latest finished run of a classifier, and its rates per label."""

    run: InferenceRun
    recorded_hours: float
    rates: list[SiteRate]  # in the classifier's label order

    @property
    def deployment(self) -> Deployment:
        return self.run.deployment


def site_rates(run: InferenceRun) -> list[SiteRates]:
    """The run's classifier at every deployment it has a finished run on (the latest run
    of each), by deployment name: the sites table and the map."""
    latest = (
        InferenceRun.objects.filter(classifier=run.classifier_id, status=TaskStatus.DONE)
        .values("deployment")
        .annotate(latest=Max("pk"))
        .values_list("latest", flat=True)
    )
    runs = list(InferenceRun.objects.filter(pk__in=latest).select_related("deployment").order_by("deployment__name"))
    hours = recorded_hours([r.deployment_id for r in runs])
    labels = _label_names(run)
    counts = _site_counts(runs)
    return [
        SiteRates(
            site_run,
            hours[site_run.deployment_id],
            [
                SiteRate(label, Rate(detections, hours[site_run.deployment_id]), days)
                for label in labels
                for detections, days in [counts.get((site_run.pk, label), (0, 0))]
            ],
        )
        for site_run in runs
    ]


def _site_counts(runs: list[InferenceRun]) -> dict[tuple[int, str], tuple[int, int]]:
    """{(run, label): (detections, local days with a detection)}."""
    counts = (
        DetectionCount.objects.filter(run__in=runs)
        .values_list("run_id", "label__name")
        .annotate(detections=Sum("detections"), days=Count("day", distinct=True))
        .order_by()
    )
    return {(run_id, label): (detections, days) for run_id, label, detections, days in counts}
