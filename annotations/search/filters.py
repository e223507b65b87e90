"""What a search may return: its filters as SQL over windows, and over recordings."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from annotations.errors import InputError
from annotations.models import EmbeddingModel, LabeledFilter, Project
from annotations.search_index import project_zones
from annotations.sun import check_sun_filter


@dataclasses.dataclass(frozen=True)
class SearchFilters:
    """Which windows a search may return; the defaults filter nothing.

    Dates and times of day are local to each deployment's time zone; times of day are
    hours since midnight, fractions for minutes (5.5 is 05:30), [from, to), and may wrap
    midnight (22 to 4). Windows of recordings without a known start time never
    pass a date or hour filter.
    """

    deployment_id: int | None = None
    site: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    hour_from: float | None = None
    hour_to: float | None = None
    predicted_class: str = ""  # part of a class name among the window's top model predictions
    label_id: int | None = None
    labeled: str = LabeledFilter.ANY  # for label_id
    one_per_recording: bool = False  # only each recording's best window
    all_overlapping: bool = False  # every overlapping window of a call, not only its best
    # Minutes from the day's sunrise or sunset at the deployment's place, [from, to):
    # "sunrise", -30, 90 keeps the dawn chorus (annotations.sun).
    sun_event: str = ""
    sun_from_min: float | None = None
    sun_to_min: float | None = None

    @property
    def hours(self) -> bool:
        """Whether a time-of-day filter applies."""
        return self.hour_from is not None or self.hour_to is not None

    @property
    def timed(self) -> bool:
        """Whether a date, hour or sun filter applies (windows of unknown start never pass one)."""
        return bool(self.date_from or self.date_to or self.hours or self.sun_event)


def recording_conditions(project: Project, model: EmbeddingModel, filters: SearchFilters) -> tuple[str, dict]:
    """SQL over recordings ``r`` and deployments ``d`` that keeps every recording that may
    hold a window passing ``filters`` (and may keep a few more): the recordings whose spans
    ``recording_spans`` works out, a cheap first cut before its per-day ranges."""
    conditions = ["d.project_id = %(project)s", "r.embedding_model_id = %(model)s"]
    params: dict = {"project": project.pk, "model": model.pk}
    if filters.deployment_id is not None:
        conditions.append("r.deployment_id = %(deployment)s")
        params["deployment"] = filters.deployment_id
    if filters.site:
        conditions.append("d.site = %(site)s")
        params["site"] = filters.site
    if filters.timed:
        conditions.append("r.started_at IS NOT NULL")
    if filters.sun_event:
        conditions.append("d.latitude IS NOT NULL AND d.longitude IS NOT NULL")
    local_start = "(r.started_at AT TIME ZONE d.timezone)"
    hours = "greatest(coalesce(r.duration_s, 0) / 3600.0, 1 / 3600.0)"
    if filters.date_from is not None:
        conditions.append(f"(({local_start} + {hours} * interval '1 hour')::date >= %(date_from)s)")
        params["date_from"] = filters.date_from
    if filters.date_to is not None:
        conditions.append(f"({local_start}::date <= %(date_to)s)")
        params["date_to"] = filters.date_to
    if filters.hours:
        hour_from, hour_to = hour_range(filters)
        if hour_to <= hour_from:
            hour_to += 24  # wraps midnight
        # Does [start, start + duration) meet [from, to) on some day? Local hours of the
        # start, an hour wider either side for a change of daylight saving inside a file.
        start = f"(EXTRACT(EPOCH FROM {local_start}::time) / 3600.0)"
        overlaps = " OR ".join(
            f"({start} < %(rec_hour_to)s + {24 * day} AND {start} + {hours} > %(rec_hour_from)s + {24 * day})"
            for day in (-1, 0, 1)
        )
        conditions.append(f"({hours} >= 23 OR {overlaps})")
        params.update(rec_hour_from=hour_from - 1, rec_hour_to=hour_to + 1)
    return " AND ".join(conditions), params


def sun_condition(filters: SearchFilters, deployment: str, start: str) -> str:
    """SQL: a window of ``deployment`` starting at ``start`` (timestamptz) lies within the
    filter's minutes of one of its deployment's sunrises (or sunsets): that event lies in
    (start - to, start - from]."""
    event = sun_event(filters)
    return (
        f"EXISTS (SELECT 1 FROM annotations_sunday sd WHERE sd.deployment_id = {deployment} "
        f"AND sd.{event} > {start} - %(sun_to_min)s * interval '1 minute' "
        f"AND sd.{event} <= {start} - %(sun_from_min)s * interval '1 minute')"
    )


def sun_params(filters: SearchFilters) -> dict:
    return {"sun_from_min": float(filters.sun_from_min), "sun_to_min": float(filters.sun_to_min)}


def sun_event(filters: SearchFilters) -> str:
    """The SunDay column of the filter's event, checked with its minutes (it becomes SQL)."""
    check_sun_filter(filters.sun_event, filters.sun_from_min, filters.sun_to_min)
    if filters.hours:
        raise InputError(f"filter by time of day or by minutes from {filters.sun_event}, not both")
    return filters.sun_event


def hour_range(filters: SearchFilters) -> tuple[float, float]:
    return filters.hour_from or 0, 24 if filters.hour_to is None else filters.hour_to


def time_of_day(text: str, name: str) -> float | None:
    """Hours since midnight from "5", "05:30" or "5:30:00" (a time input's value); None
    for nothing. 24 (or 24:00) is the end of the day."""
    text = str(text).strip()
    if not text:
        return None
    parts = text.split(":")
    if len(parts) <= 3 and all(part.isdigit() and len(part) <= 2 for part in parts):
        hours, minutes = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        if minutes < 60 and hours * 60 + minutes <= 24 * 60 and (len(parts) < 3 or int(parts[2]) == 0):
            return hours + minutes / 60
    raise InputError(f"{name} must be a time of day like 5, 05:30 or 24:00, not {text[:40]!r}")


def clock(hours: float) -> str:
    """ "05:30" for 5.5 hours since midnight."""
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclasses.dataclass(frozen=True)
class WindowConditions:
    """SQL conditions on windows ``w`` alone (no joins: an index scan tests them on each
    candidate row), and their parameters."""

    other: list[str]  # deployment, site, predicted classes, labeled or not
    days: list[str]  # dates and minutes from sunrise or sunset, on the window's local start
    params: dict
    # They test only a window's deployment_id and started_at, which a search index's table
    # carries beside each reduced vector (annotations.search_index).
    placed_in_time_only: bool = True
    hours: list[str] = dataclasses.field(default_factory=list)  # the time of day, on its local start
    # The time of day kept, in seconds since local midnight [from, to) (from > to wraps it).
    seconds: tuple[int, int] | None = None
    # (deployment_id, time zone) of each of the project's deployments, under a date or hour filter.
    zones: tuple[tuple[int, str], ...] = ()

    @property
    def time(self) -> list[str]:
        return self.days + self.hours

    @property
    def all(self) -> list[str]:
        return self.other + self.time

    def on(self, table: str, hours: bool = True) -> list[str]:
        """``all`` over the alias ``table`` instead of ``w`` (without the time of day, for
        not ``hours``): a table whose deployment_id and started_at are the windows' own,
        where ``placed_in_time_only``."""
        if not self.placed_in_time_only:
            raise ValueError("these conditions test more of a window than its deployment and start")
        conditions = self.all if hours else self.other + self.days
        return [re.sub(r"\bw\.", f"{table}.", condition) for condition in conditions]


def window_conditions(project: Project, model: EmbeddingModel, filters: SearchFilters) -> WindowConditions:
    """What a window must pass to be a hit of a search under ``filters``."""
    conditions: list[str] = []
    days: list[str] = []
    hours: list[str] = []
    seconds = None
    params: dict = {}
    if filters.deployment_id is not None:
        conditions.append("w.deployment_id = %(deployment)s")
        params["deployment"] = filters.deployment_id
    if filters.site:
        conditions.append("w.deployment_id = ANY(%(site_deployments)s)")
        params["site_deployments"] = list(project.deployments.filter(site=filters.site).values_list("pk", flat=True))
    zones = project_zones(project) if filters.timed else ()
    local = _local_time(zones, params) if filters.timed else ""
    if filters.date_from is not None:
        days.append(f"{local}::date >= %(date_from)s")
        params["date_from"] = filters.date_from
    if filters.date_to is not None:
        days.append(f"{local}::date <= %(date_to)s")
        params["date_to"] = filters.date_to
    if filters.hours:
        hour_from, hour_to = hour_range(filters)
        # Whole seconds since local midnight: minutes compare exactly, no float rounding.
        second = f"EXTRACT(EPOCH FROM {local}::time)"
        joiner = "AND" if hour_from <= hour_to else "OR"  # 22 to 4 wraps midnight
        hours.append(f"({second} >= %(second_from)s {joiner} {second} < %(second_to)s)")
        seconds = (round(hour_from * 3600), round(hour_to * 3600))
        params.update(second_from=seconds[0], second_to=seconds[1])
    if filters.sun_event:
        days.append(sun_condition(filters, "w.deployment_id", "w.started_at"))
        params.update(sun_params(filters))
    if filters.predicted_class:
        conditions.append("w.top_classes && %(classes)s::integer[]")
        params["classes"] = matching_classes(model, filters.predicted_class)
    if filters.labeled != LabeledFilter.ANY:
        if filters.label_id is None:
            raise InputError("choose the label whose labeled or unlabeled windows you want")
        exists = "EXISTS (SELECT 1 FROM annotations_annotation a WHERE a.window_id = w.id AND a.label_id = %(label)s)"
        conditions.append(exists if filters.labeled == LabeledFilter.LABELED else f"NOT {exists}")
        params["label"] = filters.label_id
    placed_in_time_only = not filters.predicted_class and filters.labeled == LabeledFilter.ANY
    return WindowConditions(conditions, days, params, placed_in_time_only, hours, seconds, zones)


def _local_time(zones: tuple[tuple[int, str], ...], params: dict) -> str:
    """A window's local wall-clock time in its deployment's time zone (null when its start
    is unknown), choosing the zone by deployment only where the project has several;
    ``zones``: (deployment_id, zone) of each of the project's deployments."""
    by_zone: dict[str, list[int]] = {}
    for deployment_id, zone in zones:
        by_zone.setdefault(zone, []).append(deployment_id)
    if len(by_zone) <= 1:
        params["zone_0"] = next(iter(by_zone), "UTC")
        return "(w.started_at AT TIME ZONE %(zone_0)s)"
    cases = []
    for i, (zone, deployment_ids) in enumerate(sorted(by_zone.items())):
        params[f"zone_{i}"], params[f"zone_{i}_deployments"] = zone, deployment_ids
        deployments, zone_name = f"%(zone_{i}_deployments)s", f"%(zone_{i})s"
        cases.append(f"WHEN w.deployment_id = ANY({deployments}) THEN w.started_at AT TIME ZONE {zone_name}")
    return f"(CASE {' '.join(cases)} END)"


def matching_classes(model: EmbeddingModel, text: str) -> list[int]:
    """Indices of the model's classes whose name contains ``text`` (case-insensitive)."""
    needle = text.strip().lower()
    indices = [i for i, name in enumerate(model.class_names or []) if needle in name.lower()]
    if not indices:
        raise InputError(f"{model} has no class whose name contains {text!r}")
    return indices
