"""Spans: the ranges of window starts, per recording, that a search's date and hour filters keep."""

from __future__ import annotations

import datetime as dt

import numpy as np
from django.db import connections

from annotations.search.filters import SearchFilters, WindowConditions, hour_range, sun_event, sun_params

# A recording longer than this is never taken as steady (see WALL_CLOCK).
STEADY_RECORDING_MAX_S = 2 * 86400


# t.wall: a recording's local start, in seconds since 1970-01-01 00:00 local time; t.steady:
# whether its UTC offset is the same at its end (its length known and short enough not to
# hold two changes), so that local times inside it are its wall clock plus the offset.
_END = "(r.started_at + r.duration_s * interval '1 second')"
_OFFSET = "({0} AT TIME ZONE d.timezone) - ({0} AT TIME ZONE 'UTC')"
WALL_CLOCK = (
    "CROSS JOIN LATERAL (SELECT extract(epoch FROM r.started_at AT TIME ZONE d.timezone)::float8 AS wall, "
    f"r.duration_s IS NOT NULL AND r.duration_s <= {STEADY_RECORDING_MAX_S} "
    f"AND {_OFFSET.format('r.started_at')} = {_OFFSET.format(_END)} AS steady) t "
)


def recording_spans(filters: SearchFilters, recordings: str) -> tuple[str, dict]:
    """SQL rows (recording_id, windows_done, hop, lo, hi, recheck), ``recordings`` (SQL over
    ``r`` and ``d``) selecting the recordings: the ranges of window starts [lo, hi) in
    seconds from each recording's start where its windows pass the date and hour filters.

    In a recording whose UTC offset does not change, a window's local wall clock is the
    recording's plus its start, so the ranges are exact and a scan of them tests no
    window. Any other recording (its duration unknown, or daylight saving changing inside
    it) gets one unbounded span with ``recheck`` set: its windows are tested one by one.
    """
    # A recording's own hop where it has one (its deployment's), else the model's (%(hop)s).
    columns = "r.id AS recording_id, r.windows_done::float8 AS windows_done, coalesce(r.hop_s, %(hop)s) AS hop"
    source = "annotations_recording r JOIN annotations_deployment d ON d.id = r.deployment_id"
    if not filters.timed:
        return (
            f"SELECT {columns}, '-infinity'::float8 AS lo, 'infinity'::float8 AS hi, false AS recheck "
            f"FROM {source} WHERE {recordings}"
        ), {}
    epoch = dt.date(1970, 1, 1)
    params = {
        "span_date_lo": -np.inf if filters.date_from is None else (filters.date_from - epoch).days * 86400.0,
        "span_date_hi": np.inf if filters.date_to is None else ((filters.date_to - epoch).days + 1) * 86400.0,
        "span_hour_lo": -np.inf,
        "span_hour_hi": np.inf,
    }
    if filters.sun_event:
        return _sun_spans(filters, recordings, columns, source, params)
    days = "generate_series(0, 0)"  # without an hour filter, one span: the dates'
    if filters.hours:
        hour_from, hour_to = hour_range(filters)
        if hour_from > hour_to:
            hour_to += 24  # wraps midnight: the span runs into the next day
        params.update(span_hour_lo=round(hour_from * 3600.0), span_hour_hi=round(hour_to * 3600.0))
        # Every local day the recording touches, and the one before (a span that wraps).
        days = "generate_series(floor(t.wall / 86400)::int - 1, floor((t.wall + r.duration_s) / 86400)::int)"
    sql = (
        f"SELECT {columns}, span.lo, span.hi, NOT t.steady AS recheck FROM {source} {WALL_CLOCK}"
        "CROSS JOIN LATERAL ("
        "SELECT greatest(day * 86400.0 + %(span_hour_lo)s::float8, %(span_date_lo)s::float8) - t.wall AS lo, "
        "least(day * 86400.0 + %(span_hour_hi)s::float8, %(span_date_hi)s::float8) - t.wall AS hi "
        f"FROM {days} AS day WHERE t.steady "
        "UNION ALL SELECT '-infinity'::float8, 'infinity'::float8 WHERE NOT t.steady"
        ") span "
        f"WHERE {recordings} AND span.hi > greatest(span.lo, 0) AND (NOT t.steady OR span.lo < r.duration_s)"
    )
    return sql, params


def _sun_spans(filters: SearchFilters, recordings: str, columns: str, source: str, params: dict) -> tuple[str, dict]:
    """``recording_spans`` under a filter relative to the sun: one span per sunrise (or
    sunset) of the recording's deployment near the recording, from the event's minutes
    (exact: sun times are UTC instants), within the date filter's local days (exact in a
    recording whose UTC offset does not change; rechecked window by window otherwise)."""
    event = sun_event(filters)
    params = {**params, **sun_params(filters)}
    from_event = f"extract(epoch FROM sd.{event} - r.started_at)::float8"
    sql = (
        f"SELECT {columns}, span.lo, span.hi, NOT t.steady AS recheck FROM {source} {WALL_CLOCK}"
        f"JOIN annotations_sunday sd ON sd.deployment_id = r.deployment_id AND sd.{event} IS NOT NULL "
        f"AND sd.{event} > r.started_at - %(sun_to_min)s * interval '1 minute' "
        f"AND (r.duration_s IS NULL OR sd.{event} < r.started_at + (r.duration_s - 60 * %(sun_from_min)s) "
        "* interval '1 second') "
        "CROSS JOIN LATERAL (SELECT "
        f"greatest({from_event} + 60 * %(sun_from_min)s, %(span_date_lo)s::float8 - t.wall) AS lo, "
        f"least({from_event} + 60 * %(sun_to_min)s, %(span_date_hi)s::float8 - t.wall) AS hi) span "
        f"WHERE {recordings} AND span.hi > greatest(span.lo, 0) "
        "AND (r.duration_s IS NULL OR span.lo < r.duration_s)"
    )
    return sql, params


def candidate_windows(spans: str, params: dict, cap: int, alias: str) -> int:
    """Windows in the spans that may hold hits (windows every ``s.hop`` seconds from a
    recording's start), counted over at most ``cap`` spans (each holds at least one
    window, so reaching the cap means more than ``cap`` windows)."""
    first = "greatest(0, ceil(s.lo / s.hop))"
    past = "least(s.windows_done, ceil(s.hi / s.hop))"
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT {past} - {first} AS n FROM ({spans}) s "
            f"WHERE {past} > {first} LIMIT %(cap)s) counted",
            {**params, "cap": cap},
        )
        spans_seen, windows = cursor.fetchone()
    return cap if spans_seen >= cap else min(int(windows), cap)


# The windows ``w`` inside the spans ``s`` (recording_spans): a range scan of
# one_window_per_start (recording, model, start_s) per span, which reads no window that
# the time filters reject.
SPAN_WINDOWS = (
    "s JOIN annotations_window w ON w.recording_id = s.recording_id AND w.model_id = %(model)s "
    "AND w.start_s >= s.lo AND w.start_s < s.hi"
)


# How the span paths' rows must be reached: a nested loop over the spans, each a range
# scan of one_window_per_start. The planner cannot tell how many windows the spans hold (it
# guessed 9,000 for 8 spans) and otherwise read every window of the model or project
# through window_project_model_id to hash them against the spans (bench/scale.py at 1M:
# 470 ms for the 2,000 windows of one deployment's early hours).
# One statement, for the rest of the transaction.
SPAN_PLAN = (
    "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), "
    "set_config('enable_bitmapscan', 'off', true)"
)


def with_spans(spans: str) -> str:
    # MATERIALIZED: inlined, the planner would work out a recording's spans again for
    # every window.
    return f"WITH s AS MATERIALIZED ({spans}) "


def rechecked(where: WindowConditions) -> list[str]:
    """The window conditions a span-bounded scan tests: the time filters only on the
    windows of spans that could not be bounded exactly."""
    if not where.time:
        return where.other
    return [*where.other, f"(NOT s.recheck OR ({' AND '.join(where.time)}))"]
