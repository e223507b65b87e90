"""A search as parameters: read from a page's or the API's, written back for links, saved."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from annotations.errors import InputError
from annotations.models import Combine, LabeledFilter, SearchRecord
from annotations.search.filters import SearchFilters, clock, sun_event, time_of_day
from annotations.search.ranking import SearchSpec
from annotations.sun import DEFAULT_SUN_FROM_MIN, DEFAULT_SUN_TO_MIN


def spec_from_params(params: Mapping) -> SearchSpec:
    """A spec from a page's or the API's parameters (a QueryDict or a dict of lists/values).

    Repeated ``window``, ``negative`` and ``clip`` give several examples.
    """

    def many(name: str) -> tuple[int, ...]:
        values = params.getlist(name) if hasattr(params, "getlist") else params.get(name) or []
        values = values if isinstance(values, list | tuple) else [values]
        return tuple(_int(v, name) for v in values if str(v).strip())

    return SearchSpec(
        positive_windows=many("window"),
        negative_windows=many("negative"),
        positive_clips=many("clip"),
        combine=_one(params, "combine") or Combine.MEAN,
        filters=filters_from_params(params),
    )


def _one(params: Mapping, name: str) -> str:
    value = params.get(name, "")
    return str(value).strip() if value is not None else ""


def filters_from_params(params: Mapping) -> SearchFilters:
    """The filters of a page's or the API's parameters (deployment, site, date_from,
    date_to, hour_from, hour_to, sun, sun_from, sun_to, predicted, label, labeled,
    per_recording, all_overlapping). ``sun`` is "sunrise" or "sunset", ``sun_from`` and
    ``sun_to`` minutes from it (default -30 and 90: the dawn chorus)."""

    def one(name: str) -> str:
        return _one(params, name)

    filters = SearchFilters(
        deployment_id=_int(one("deployment"), "deployment") if one("deployment") else None,
        site=one("site")[:200],
        date_from=_date(one("date_from"), "date_from"),
        date_to=_date(one("date_to"), "date_to"),
        hour_from=time_of_day(one("hour_from"), "hour_from"),
        hour_to=time_of_day(one("hour_to"), "hour_to"),
        predicted_class=one("predicted")[:200],
        label_id=_int(one("label"), "label") if one("label") else None,
        labeled=one("labeled") or LabeledFilter.ANY,
        one_per_recording=one("per_recording") == "1",
        all_overlapping=one("all_overlapping") == "1",
        sun_event=one("sun")[:16],
        sun_from_min=_minutes(one("sun_from"), "sun_from", DEFAULT_SUN_FROM_MIN) if one("sun") else None,
        sun_to_min=_minutes(one("sun_to"), "sun_to", DEFAULT_SUN_TO_MIN) if one("sun") else None,
    )
    if filters.sun_event:
        sun_event(filters)  # checked here, for a clear error before anything runs
    if filters.labeled not in LabeledFilter.values:
        raise InputError(f"labeled must be one of {', '.join(LabeledFilter.values)}")
    return filters


def spec_params(spec: SearchSpec) -> list[tuple[str, str]]:
    """The parameters that ``spec_from_params`` reads back as ``spec``, for links."""
    params = [("window", str(w)) for w in spec.positive_windows]
    params += [("negative", str(w)) for w in spec.negative_windows]
    params += [("clip", str(c)) for c in spec.positive_clips]
    if spec.combine != Combine.MEAN:
        params.append(("combine", spec.combine))
    f = spec.filters
    for name, value in (
        ("deployment", f.deployment_id),
        ("site", f.site),
        ("date_from", f.date_from),
        ("date_to", f.date_to),
        ("hour_from", None if f.hour_from is None else clock(f.hour_from)),
        ("hour_to", None if f.hour_to is None else clock(f.hour_to)),
        ("predicted", f.predicted_class),
        ("label", f.label_id),
        ("labeled", "" if f.labeled == LabeledFilter.ANY else f.labeled),
        ("per_recording", "1" if f.one_per_recording else ""),
        ("all_overlapping", "1" if f.all_overlapping else ""),
        ("sun", f.sun_event),
        ("sun_from", None if f.sun_from_min is None else f"{f.sun_from_min:g}"),
        ("sun_to", None if f.sun_to_min is None else f"{f.sun_to_min:g}"),
    ):
        if value not in (None, ""):
            params.append((name, value.isoformat() if isinstance(value, dt.date) else str(value)))
    return params


def _int(value, name: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise InputError(f"{name} must be a whole number, not {str(value)[:40]!r}") from None
    if not 0 < number < 10**18:
        raise InputError(f"{name} {number} is out of range")
    return number


def _minutes(value: str, name: str, default: float) -> float:
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise InputError(f"{name} must be a number of minutes like -30 or 90, not {value[:40]!r}") from None


def _date(value: str, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{name} must be a date like 2024-05-21, not {value[:40]!r}") from None


def spec_of(record: SearchRecord) -> SearchSpec:
    return SearchSpec(
        positive_windows=tuple(record.positive_windows),
        negative_windows=tuple(record.negative_windows),
        positive_clips=tuple(record.positive_clips),
        combine=record.combine,
        filters=SearchFilters(
            **{field.name: getattr(record, field.name) for field in dataclasses.fields(SearchFilters)}
        ),
    )
