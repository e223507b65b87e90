"""Which of a run's detections to show or export, and in what order: by label, score,
what people said of them, local date and minutes from sunrise or sunset; best first or in time order; each window, or
events (annotations.detection_events) judged by their peak window.

The run page, the detections API and both exports (CSV, Raven tables) read the same
filters, so that what a person narrowed the page to is what they download.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from zoneinfo import ZoneInfo

from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, QuerySet

from annotations.errors import InputError
from annotations.models import Annotation, Detection, DetectionEvent, InferenceRun, LabelValue, SunDay
from annotations.sun import DEFAULT_SUN_FROM_MIN, DEFAULT_SUN_TO_MIN, check_sun_filter, ensure_sun_days

# What people said of a detection (annotations.exports.review_state).
REVIEWS = ("verified", "rejected", "unsure", "disputed", "unreviewed")
ORDERS = {
    "score": ("-score", "window_id"),  # best first
    "time": ("window__recording__started_at", "window__recording__filename", "window__start_s", "label_id"),
}
EVENT_ORDERS = {
    "score": ("-peak_score", "peak_window_id"),
    "time": ("recording__started_at", "recording__filename", "start_s", "label_id"),
}
UNITS = ("windows", "events")


@dataclasses.dataclass(frozen=True)
class DetectionFilters:
    """The defaults keep every detection, best first. Dates are local to the deployment."""

    label_id: int | None = None
    min_score: float | None = None
    review: str = ""  # one of REVIEWS, or "" for any
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    # Minutes from the day's sunrise or sunset at the deployment, [from, to) (annotations.sun).
    sun_event: str = ""
    sun_from_min: float | None = None
    sun_to_min: float | None = None
    order: str = "score"  # a key of ORDERS
    unit: str = "windows"  # one of UNITS: each window at or above the threshold, or events

    def as_params(self) -> dict[str, str]:
        """Query parameters that ``detection_filters_from_params`` reads back as these filters."""
        params = {
            "label": self.label_id,
            "min_score": self.min_score,
            "review": self.review,
            "date_from": self.date_from,
            "date_to": self.date_to,
            "sun": self.sun_event,
            "sun_from": None if self.sun_from_min is None else f"{self.sun_from_min:g}",
            "sun_to": None if self.sun_to_min is None else f"{self.sun_to_min:g}",
            "order": "" if self.order == "score" else self.order,
            "unit": "" if self.unit == "windows" else self.unit,
        }
        return {name: str(value) for name, value in params.items() if value not in (None, "")}


def detection_filters_from_params(params: Mapping) -> DetectionFilters:
    """Filters from a page's or the API's query parameters; a clear error for a bad one."""

    def one(name: str) -> str:
        return str(params.get(name, "") or "").strip()

    try:
        filters = DetectionFilters(
            label_id=int(one("label")) if one("label") else None,
            min_score=float(one("min_score")) if one("min_score") else None,
            review=one("review"),
            date_from=dt.date.fromisoformat(one("date_from")) if one("date_from") else None,
            date_to=dt.date.fromisoformat(one("date_to")) if one("date_to") else None,
            sun_event=one("sun")[:16],
            sun_from_min=float(one("sun_from") or DEFAULT_SUN_FROM_MIN) if one("sun") else None,
            sun_to_min=float(one("sun_to") or DEFAULT_SUN_TO_MIN) if one("sun") else None,
            order=one("order") or "score",
            unit=one("unit") or "windows",
        )
    except ValueError as error:
        raise InputError(f"detection filters: {error}") from error
    if filters.review and filters.review not in REVIEWS:
        raise InputError(f"review must be one of {', '.join(REVIEWS)}")
    if filters.unit not in UNITS:
        raise InputError(f"unit must be one of {', '.join(UNITS)}")
    if filters.order not in ORDERS:
        raise InputError(f"order must be one of {', '.join(ORDERS)}")
    if filters.min_score is not None and not 0 <= filters.min_score <= 1:
        raise InputError("min_score must be between 0 and 1")
    if filters.sun_event:
        check_sun_filter(filters.sun_event, filters.sun_from_min, filters.sun_to_min)
    return filters


def _reviewed(window_field: str, value: str | None = None, other_than: str | None = None) -> Exists:
    """Whether someone labeled the detection's window (or event's peak window: the
    ``window_field``) for its label (with ``value``, or with anything but ``other_than``)."""
    labels = Annotation.objects.filter(window_id=OuterRef(window_field), label_id=OuterRef("label_id"))
    if value is not None:
        labels = labels.filter(value=value)
    if other_than is not None:
        labels = labels.exclude(value=other_than)
    return Exists(labels)


def _review_condition(review: str, window_field: str = "window_id") -> Q | Exists:
    """The detections whose labels ``review_state`` would call ``review``."""
    if review == "unreviewed":
        return ~_reviewed(window_field)
    if review == "disputed":
        return Exists(
            Annotation.objects.filter(window_id=OuterRef(window_field), label_id=OuterRef("label_id"))
            .values("window_id")
            .annotate(values=Count("value", distinct=True))
            .filter(values__gt=1)
        )
    value = {"verified": LabelValue.POSITIVE, "rejected": LabelValue.NEGATIVE, "unsure": LabelValue.UNSURE}[review]
    return _reviewed(window_field, value) & ~_reviewed(window_field, other_than=value)


def filtered_detections(run: InferenceRun, filters: DetectionFilters) -> QuerySet[Detection]:
    """The run's detections that pass ``filters``, in their order."""
    return _filtered(
        Detection.objects.filter(run=run), run, filters, "score", "window_id", "window__started_at"
    ).order_by(*ORDERS[filters.order])


def filtered_events(run: InferenceRun, filters: DetectionFilters) -> QuerySet[DetectionEvent]:
    """The run's events that pass ``filters``: the score is the peak's, the review the
    peak window's, the date the event's start."""
    events = _filtered(
        DetectionEvent.objects.filter(run=run), run, filters, "peak_score", "peak_window_id", "started_at"
    )
    return events.order_by(*EVENT_ORDERS[filters.order])


def _filtered(rows: QuerySet, run: InferenceRun, filters: DetectionFilters, score: str, window: str, started: str):
    if filters.label_id is not None:
        rows = rows.filter(label_id=filters.label_id)
    if filters.min_score is not None:
        rows = rows.filter(**{f"{score}__gte": filters.min_score})
    if filters.review:
        rows = rows.filter(_review_condition(filters.review, window))
    zone = ZoneInfo(run.deployment.timezone)
    if filters.date_from is not None:
        rows = rows.filter(**{f"{started}__gte": dt.datetime.combine(filters.date_from, dt.time(), zone)})
    if filters.date_to is not None:
        end = dt.datetime.combine(filters.date_to + dt.timedelta(days=1), dt.time(), zone)
        rows = rows.filter(**{f"{started}__lt": end})
    if filters.sun_event:
        rows = rows.filter(_near_the_sun(run, filters, started))
    return rows


def _near_the_sun(run: InferenceRun, filters: DetectionFilters, started: str) -> Exists:
    """A detection starting at ``started`` lies within the filter's minutes of one of the
    deployment's sunrises (or sunsets): that event lies in (start - to, start - from]."""
    ensure_sun_days(run.deployment.project)
    event = check_sun_filter(filters.sun_event, filters.sun_from_min, filters.sun_to_min)

    def start_less(minutes: float) -> ExpressionWrapper:
        return ExpressionWrapper(OuterRef(started) - dt.timedelta(minutes=minutes), output_field=DateTimeField())

    return Exists(
        SunDay.objects.filter(
            deployment_id=run.deployment_id,
            **{f"{event}__gt": start_less(filters.sun_to_min), f"{event}__lte": start_less(filters.sun_from_min)},
        )
    )


def listed(run: InferenceRun, filters: DetectionFilters) -> QuerySet[Detection] | QuerySet[DetectionEvent]:
    """The detections or events (``filters.unit``) a page or the API lists, with what they
    show: each one's window (an event's peak window), its recording and its label."""
    if filters.unit == "events":
        rows = filtered_events(run, filters).select_related("peak_window__recording", "label")
        return rows.defer("peak_window__embedding")
    return filtered_detections(run, filters).select_related("window__recording", "label").defer("window__embedding")
