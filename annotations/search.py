"""Query by example: the windows nearest one or more examples by cosine similarity.

A search takes one of three paths (``nearest_window_ids``), and says which:

- **exact**, when the filters leave few windows (up to ``EXACT_SCAN_MAX_WINDOWS``): every
  one is compared with the query;
- **sketch**, when a filter leaves more, up to ``SKETCH_SCAN_MAX_WINDOWS`` (or the project
  has no index yet): every window that passes is ranked by the Hamming distance between
  its sign sketch and the query's, read from the ``one_window_per_start`` index alone
  (about 190 bytes a window instead of a 2 KB table row), and the best
  ``SKETCH_POOL_PER_K`` times k are compared exactly;
- **index**, otherwise: the project's own partial HNSW index (``annotations.search_index``)
  with pgvector's iterative scan under a filter, plus an exact scan of the windows written
  since the index was built.

The exact and sketch paths read windows through spans (``recording_spans``): for each
recording that may hold hits, the ranges of window starts that its date and hour filters
keep, so that a time filter costs range scans of the index rather than a test of every
window of every recording it touches. The index path tests filters on the window row
itself (it carries its project, deployment and start time), so its scan never joins per
candidate.

Several examples are combined either by their **mean** direction (one index query) or
by **best match** (a window scores its highest cosine with any example; one index query
per example, merged). **Negative** examples push results away: a candidate's score
loses ``NEGATIVE_WEIGHT`` times its highest cosine with any negative, so windows that
sound like a rejected example sink. Both re-rank a candidate pool exactly in NumPy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence

import numpy as np
from django.db import connection, models, transaction

from annotations.clips import check_quota, clip_folder
from annotations.deployments import AUDIO_EXTENSIONS, safe_filename
from annotations.embedding_store import center_array, raw_connection, sketch_text, window_embeddings, window_matrix
from annotations.errors import InputError
from annotations.labeling import labels_by_window
from annotations.models import (
    ClipQuery,
    Combine,
    EmbeddingModel,
    LabeledFilter,
    Project,
    Recording,
    RecordingStatus,
    SearchRecord,
    Window,
)
from annotations.predictions import Prediction, named_predictions
from annotations.probes import unit_rows
from annotations.queueing import EMBED_CLIP_QUERY, enqueue_on_commit
from annotations.search_index import index_state, newest_window_id

MAX_K = 500
PAGE_SIZE = 50
# A saved search keeps its best windows, ranked once: five pages of the page's list. (All
# MAX_K cost 4x the time of the first page: hnsw.ef_search grows with k.)
SAVED_RESULTS = 250
MAX_CLIP_BYTES = 50 * 1024 * 1024
NEGATIVE_WEIGHT = 0.5
MAX_EXAMPLES = 20
MAX_REGION_S = 60.0


@dataclasses.dataclass(frozen=True)
class SearchFilters:
    """Which windows a search may return; the defaults filter nothing.

    Dates and hours are local to each deployment's time zone; hours are [from, to) and
    may wrap midnight (22 to 4). Windows of recordings without a known start time never
    pass a date or hour filter.
    """

    deployment_id: int | None = None
    site: str = ""
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    hour_from: int | None = None
    hour_to: int | None = None
    predicted_class: str = ""  # part of a class name among the window's top model predictions
    label_id: int | None = None
    labeled: str = LabeledFilter.ANY  # for label_id
    one_per_recording: bool = False  # only each recording's best window

    @property
    def timed(self) -> bool:
        """Whether a date or hour filter applies (windows of unknown start never pass one)."""
        return bool(self.date_from or self.date_to or self.hour_from is not None or self.hour_to is not None)


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """A query by example: what to look for, what to avoid, where to look."""

    positive_windows: tuple[int, ...] = ()
    negative_windows: tuple[int, ...] = ()
    positive_clips: tuple[int, ...] = ()
    combine: str = Combine.MEAN
    filters: SearchFilters = SearchFilters()


@dataclasses.dataclass(frozen=True)
class SearchHit:
    window_id: int
    recording_id: int
    filename: str
    deployment_id: int
    deployment_name: str
    site: str
    start_s: float
    end_s: float
    score: float  # cosine similarity, 1.0 for the same direction (less any push from negatives)
    labels: list[dict]
    # Wall-clock start of the window in the deployment's time zone, when the recording's start is known.
    started_at: dt.datetime | None = None
    predictions: list[Prediction] = dataclasses.field(default_factory=list)  # the model's own top classes


@dataclasses.dataclass(frozen=True)
class Examples:
    """The embeddings a search starts from. positives: float32 [P, D]; negatives: float32 [Q, D]."""

    model: EmbeddingModel
    positives: np.ndarray
    negatives: np.ndarray
    exclude_window_ids: tuple[int, ...]


# Up to this many windows passing the filters, a search compares the query with each of
# them. An exact comparison costs about 0.8 us per 1024-d window (bench/scale.py, 1M
# windows); a sketch's first pass about 0.3-0.45 us, plus 5 us for each window of its pool,
# so sketches win from about this many.
EXACT_SCAN_MAX_WINDOWS = 10_000
# Up to this many, the sketch path; above it, the project's HNSW index is faster (its cost
# under a filter grows with the candidates it skips, not with the windows that pass).
# bench/scale.py at 1M: about 0.2 us a window plus 6 ms for the pool's exact comparison
# (21-25 ms for the 76,000 windows of 3 days or of hours 4-6), against 17-28 ms by index.
SKETCH_SCAN_MAX_WINDOWS = 100_000
# The sketch path compares this many times k of its best-sketched windows exactly (at least
# SKETCH_POOL_MIN): bench/scale.py finds 0.999 of the true top 100 in the best 500.
SKETCH_POOL_PER_K = 10
SKETCH_POOL_MIN = 1_000
# hnsw.ef_search: pgvector's default of 40 would cap a top-50 at 40 rows. A filtered query
# explores further, or the hits that pass the filter come back short.
EF_SEARCH_MIN = 100
FILTERED_EF_SEARCH_MIN = 400
# Under a filter, this many times k from the index: its iterative scan stops at the first
# rows that pass, and closer ones often come in the next batch. bench/scale.py, 8% hour and
# date filters at 1M: recall@100 0.94 with k alone, 0.955 with 1.5 k; the scan's time
# grows with the pool (each row that passes costs the rows it skipped), not with ef_search.
FILTERED_POOL = 1.6


class SearchPath(models.TextChoices):
    EXACT = "exact", "Exact: every window that passes the filters was compared"
    SKETCH = "sketch", "Every window that passes the filters ranked by sketch, the best compared exactly"
    INDEX = "index", "The project's HNSW index (windows newer than it compared exactly)"


@dataclasses.dataclass(frozen=True)
class NearestWindows:
    scored: list[tuple[int, float]]  # (window_id, cosine), best first
    path: str  # SearchPath
    candidates: int  # windows the filters leave (counted up to EXACT_SCAN_MAX_WINDOWS + 1)


def nearest_window_ids(
    project: Project,
    model: EmbeddingModel,
    query: np.ndarray,
    k: int,
    exclude_window_ids: Sequence[int] = (),
    filters: SearchFilters = SearchFilters(),
    exact_scan_max: int = EXACT_SCAN_MAX_WINDOWS,
    sketch_scan_max: int = SKETCH_SCAN_MAX_WINDOWS,
) -> NearestWindows:
    """The k windows of ``project`` nearest ``query`` (float32 [model.embedding_dim]) by
    cosine, best first: exactly when the filters leave at most ``exact_scan_max``
    windows, by sketch when they leave at most ``sketch_scan_max`` or the project has no
    index yet, otherwise from its HNSW index."""
    query = np.asarray(query, dtype=np.float32)
    if query.shape != (model.embedding_dim,):
        raise InputError(f"query has shape {query.shape}, {model} needs ({model.embedding_dim},)")
    if not np.any(query):
        raise InputError("the query embedding is all zeros: cosine similarity is undefined")
    k = max(1, min(int(k), MAX_K))
    where = window_conditions(project, model, filters)
    recordings, recording_params = recording_conditions(project, model, filters)
    spans, span_params = recording_spans(filters, recordings)
    params = {**where.params, **recording_params, **span_params}
    params.update(query=query, exclude=list(exclude_window_ids), k=k, hop=model.hop_s)
    index = index_state(project, model)
    if filters.deployment_id is None and not filters.site and not filters.timed and index.windows > exact_scan_max:
        candidates = index.windows  # the index alone holds too many to scan: no need to count
    else:
        candidates = candidate_windows(spans, params, max(exact_scan_max, sketch_scan_max) + 1)
    filtered = bool(where.all)
    # one_window_per_start carries neither a window's predicted classes nor, before the
    # model's first windows, a sketch to compare.
    sketchable = not filters.predicted_class and model.sketch_center is not None
    path = _choose_path(candidates, filtered, bool(index.index_name), sketchable, exact_scan_max, sketch_scan_max)
    with transaction.atomic(), raw_connection().cursor() as cursor:
        # Only the index (or the recordings' windows) may reach the rows: a planner that
        # misjudges a filter must not fall back to reading the whole table.
        cursor.execute("SET LOCAL enable_seqscan = off")
        # A worker process costs more to start than these small scans take.
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        if path == SearchPath.EXACT:
            cursor.execute(exact_sql(model, where, spans), params)
        elif path == SearchPath.SKETCH:
            params["sketch"] = sketch_text(query, center_array(model.sketch_center))
            params["pool"] = max(SKETCH_POOL_PER_K * k, SKETCH_POOL_MIN)
            cursor.execute(sketch_sql(model, where, spans), params)
        else:
            ef_search = max(2 * k, FILTERED_EF_SEARCH_MIN if filtered else EF_SEARCH_MIN)
            cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(ef_search)])
            cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
            cursor.execute("SELECT set_config('hnsw.max_scan_tuples', %s, true)", [str(100 * ef_search)])
            newest = newest_window_id(project, model)
            params["pool"] = round(FILTERED_POOL * k) if filtered else k
            cursor.execute(index_sql(project, model, index.max_window_id, where.all, newest), params)
        scored = sorted(cursor.fetchall(), key=lambda row: -row[1])[:k]
    return NearestWindows(scored, path, candidates)


def _choose_path(
    candidates: int, filtered: bool, indexed: bool, sketchable: bool, exact_scan_max: int, sketch_scan_max: int
) -> str:
    if candidates <= exact_scan_max or not (indexed or sketchable):
        return SearchPath.EXACT
    if sketchable and (not indexed or (filtered and candidates <= sketch_scan_max)):
        return SearchPath.SKETCH
    return SearchPath.INDEX


def _distance(model: EmbeddingModel) -> str:
    dim = int(model.embedding_dim)
    return f"w.embedding::halfvec({dim}) <=> %(query)s::halfvec({dim})"


def _nearest(
    source: str, where: str, model: EmbeddingModel, conditions: list[str], by_index: bool, limit: str = "k"
) -> str:
    """The best windows ``w`` of ``source`` passing ``where`` and ``conditions``, as many as
    the parameter ``limit`` says: ordered by the distance operator, which the HNSW index
    serves, or (exact) by the score already computed, so that each row's distance is
    computed once."""
    distance = _distance(model)
    return (
        f"SELECT w.id, 1 - ({distance}) AS score FROM {source} WHERE {where} "
        "AND NOT (w.id = ANY(%(exclude)s)) "
        + "".join(f"AND {condition} " for condition in conditions)
        + f"ORDER BY {distance if by_index else 'score DESC'} LIMIT %({limit})s"
    )


# The windows ``w`` inside the spans ``s`` (recording_spans): a range scan of
# one_window_per_start (recording, model, start_s) per span, which reads no window that
# the time filters reject.
SPAN_WINDOWS = (
    "s JOIN annotations_window w ON w.recording_id = s.recording_id AND w.model_id = %(model)s "
    "AND w.start_s >= s.lo AND w.start_s < s.hi"
)


def _with_spans(spans: str) -> str:
    # MATERIALIZED: inlined, the planner would work out a recording's spans again for
    # every window.
    return f"WITH s AS MATERIALIZED ({spans}) "


def _recheck(where: WindowConditions) -> list[str]:
    """The window conditions a span-bounded scan tests: the time filters only on the
    windows of spans that could not be bounded exactly."""
    if not where.time:
        return where.other
    return [*where.other, f"(NOT s.recheck OR ({' AND '.join(where.time)}))"]


def exact_sql(model: EmbeddingModel, where: WindowConditions, spans: str) -> str:
    """Every window of the spans that may hold hits, compared with the query."""
    return _with_spans(spans) + _nearest(
        SPAN_WINDOWS, "w.project_id = %(project)s", model, _recheck(where), by_index=False
    )


def sketch_sql(model: EmbeddingModel, where: WindowConditions, spans: str) -> str:
    """The ``pool`` windows of the spans that may hold hits whose sketches are nearest the
    query's, read from one_window_per_start alone (the conditions test only what it
    carries), then the best k of them by cosine."""
    pool = (
        f"{_with_spans(spans)}SELECT w.id FROM {SPAN_WINDOWS} WHERE NOT (w.id = ANY(%(exclude)s)) "
        + "".join(f"AND {condition} " for condition in _recheck(where))
        + "ORDER BY w.sketch <~> %(sketch)s::varbit LIMIT %(pool)s"
    )
    return _nearest("annotations_window w", f"w.id IN ({pool})", model, [], by_index=False)


def index_sql(
    project: Project, model: EmbeddingModel, max_window_id: int, conditions: list[str], newest_id: int | None
) -> str:
    """The project's HNSW index over its windows up to ``max_window_id`` (``pool`` of them),
    and an exact scan of the windows written since (``k``; ``annotations.search_index``).

    Project, model and id bound are literals so that the planner matches the partial index.
    """
    project_id, model_id, bound = int(project.pk), int(model.pk), int(max_window_id)
    table = "annotations_window w"
    indexed = f"w.project_id = {project_id} AND w.model_id = {model_id} AND w.id <= {bound}"
    index_part = _nearest(table, indexed, model, conditions, by_index=True, limit="pool")
    if newest_id is None or newest_id <= bound:
        return index_part  # nothing written since the build
    # Bounded on both sides: whichever index the planner walks, it stops at the newest window.
    newer = f"w.project_id = {project_id} AND w.model_id = {model_id} AND w.id > {bound} AND w.id <= {int(newest_id)}"
    return f"({index_part}) UNION ALL ({_nearest(table, newer, model, conditions, by_index=False)})"


def candidate_windows(spans: str, params: dict, cap: int) -> int:
    """Windows in the spans that may hold hits (windows every ``hop`` seconds from a
    recording's start), counted over at most ``cap`` spans (each holds at least one
    window, so reaching the cap means more than ``cap`` windows)."""
    first = "greatest(0, ceil(s.lo / %(hop)s))"
    past = "least(s.windows_done, ceil(s.hi / %(hop)s))"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*), coalesce(sum(n), 0) FROM (SELECT {past} - {first} AS n FROM ({spans}) s "
            f"WHERE {past} > {first} LIMIT %(cap)s) counted",
            {**params, "cap": cap},
        )
        spans_seen, windows = cursor.fetchone()
    return cap if spans_seen >= cap else min(int(windows), cap)


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
    local_start = "(r.started_at AT TIME ZONE d.timezone)"
    hours = "greatest(coalesce(r.duration_s, 0) / 3600.0, 1 / 3600.0)"
    if filters.date_from is not None:
        conditions.append(f"(({local_start} + {hours} * interval '1 hour')::date >= %(date_from)s)")
        params["date_from"] = filters.date_from
    if filters.date_to is not None:
        conditions.append(f"({local_start}::date <= %(date_to)s)")
        params["date_to"] = filters.date_to
    if filters.hour_from is not None or filters.hour_to is not None:
        hour_from, hour_to = _hour_range(filters)
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


# A recording is bounded exactly by its spans when its UTC offset is the same at both ends
# (no daylight-saving change inside it) and it is short enough not to hold two changes.
STEADY_RECORDING_MAX_S = 2 * 86400


def recording_spans(filters: SearchFilters, recordings: str) -> tuple[str, dict]:
    """SQL rows (recording_id, windows_done, lo, hi, recheck), ``recordings`` (SQL over
    ``r`` and ``d``) selecting the recordings: the ranges of window starts [lo, hi) in
    seconds from each recording's start where its windows pass the date and hour filters.

    In a recording whose UTC offset does not change, a window's local wall clock is the
    recording's plus its start, so the ranges are exact and a scan of them tests no
    window. Any other recording (its duration unknown, or daylight saving changing inside
    it) gets one unbounded span with ``recheck`` set: its windows are tested one by one.
    """
    columns = "r.id AS recording_id, r.windows_done::float8 AS windows_done"
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
    days = "generate_series(0, 0)"  # without an hour filter, one span: the dates'
    if filters.hour_from is not None or filters.hour_to is not None:
        hour_from, hour_to = _hour_range(filters)
        if hour_from > hour_to:
            hour_to += 24  # wraps midnight: the span runs into the next day
        params.update(span_hour_lo=hour_from * 3600.0, span_hour_hi=hour_to * 3600.0)
        # Every local day the recording touches, and the one before (a span that wraps).
        days = "generate_series(floor(t.wall / 86400)::int - 1, floor((t.wall + r.duration_s) / 86400)::int)"
    end = "(r.started_at + r.duration_s * interval '1 second')"
    offset = "({0} AT TIME ZONE d.timezone) - ({0} AT TIME ZONE 'UTC')"
    steady = (
        f"r.duration_s IS NOT NULL AND r.duration_s <= {STEADY_RECORDING_MAX_S} "
        f"AND {offset.format('r.started_at')} = {offset.format(end)}"
    )
    sql = (
        f"SELECT {columns}, span.lo, span.hi, NOT t.steady AS recheck FROM {source} "
        # wall: the recording's local start, in seconds since 1970-01-01 00:00 local time.
        "CROSS JOIN LATERAL (SELECT extract(epoch FROM r.started_at AT TIME ZONE d.timezone)::float8 AS wall, "
        f"{steady} AS steady) t "
        "CROSS JOIN LATERAL ("
        "SELECT greatest(day * 86400.0 + %(span_hour_lo)s::float8, %(span_date_lo)s::float8) - t.wall AS lo, "
        "least(day * 86400.0 + %(span_hour_hi)s::float8, %(span_date_hi)s::float8) - t.wall AS hi "
        f"FROM {days} AS day WHERE t.steady "
        "UNION ALL SELECT '-infinity'::float8, 'infinity'::float8 WHERE NOT t.steady"
        ") span "
        f"WHERE {recordings} AND span.hi > greatest(span.lo, 0) AND (NOT t.steady OR span.lo < r.duration_s)"
    )
    return sql, params


def _hour_range(filters: SearchFilters) -> tuple[int, int]:
    return filters.hour_from or 0, 24 if filters.hour_to is None else filters.hour_to


@dataclasses.dataclass(frozen=True)
class WindowConditions:
    """SQL conditions on windows ``w`` alone (no joins: an index scan tests them on each
    candidate row), and their parameters."""

    other: list[str]  # deployment, site, predicted classes, labeled or not
    time: list[str]  # dates and hours, on the window's local start
    params: dict

    @property
    def all(self) -> list[str]:
        return self.other + self.time


def window_conditions(project: Project, model: EmbeddingModel, filters: SearchFilters) -> WindowConditions:
    """What a window must pass to be a hit of a search under ``filters``."""
    conditions: list[str] = []
    times: list[str] = []
    params: dict = {}
    if filters.deployment_id is not None:
        conditions.append("w.deployment_id = %(deployment)s")
        params["deployment"] = filters.deployment_id
    if filters.site:
        conditions.append("w.deployment_id = ANY(%(site_deployments)s)")
        params["site_deployments"] = list(project.deployments.filter(site=filters.site).values_list("pk", flat=True))
    local = _local_time(project, params) if filters.timed else ""
    if filters.date_from is not None:
        times.append(f"{local}::date >= %(date_from)s")
        params["date_from"] = filters.date_from
    if filters.date_to is not None:
        times.append(f"{local}::date <= %(date_to)s")
        params["date_to"] = filters.date_to
    if filters.hour_from is not None or filters.hour_to is not None:
        hour_from, hour_to = _hour_range(filters)
        hour = f"EXTRACT(HOUR FROM {local})"
        joiner = "AND" if hour_from <= hour_to else "OR"  # 22 to 4 wraps midnight
        times.append(f"({hour} >= %(hour_from)s {joiner} {hour} < %(hour_to)s)")
        params.update(hour_from=hour_from, hour_to=hour_to)
    if filters.predicted_class:
        conditions.append("w.top_classes && %(classes)s::integer[]")
        params["classes"] = matching_classes(model, filters.predicted_class)
    if filters.labeled != LabeledFilter.ANY:
        if filters.label_id is None:
            raise InputError("choose the label whose labeled or unlabeled windows you want")
        exists = "EXISTS (SELECT 1 FROM annotations_annotation a WHERE a.window_id = w.id AND a.label_id = %(label)s)"
        conditions.append(exists if filters.labeled == LabeledFilter.LABELED else f"NOT {exists}")
        params["label"] = filters.label_id
    return WindowConditions(conditions, times, params)


def _local_time(project: Project, params: dict) -> str:
    """A window's local wall-clock time in its deployment's time zone (null when its start
    is unknown), choosing the zone by deployment only where the project has several."""
    zones: dict[str, list[int]] = {}
    for deployment_id, zone in project.deployments.values_list("pk", "timezone"):
        zones.setdefault(zone, []).append(deployment_id)
    if len(zones) <= 1:
        params["zone_0"] = next(iter(zones), "UTC")
        return "(w.started_at AT TIME ZONE %(zone_0)s)"
    cases = []
    for i, (zone, deployment_ids) in enumerate(sorted(zones.items())):
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


def hits_for(scored: list[tuple[int, float]]) -> list[SearchHit]:
    """Search hits (window, recording, site, time, labels, predictions) for [(window_id, score)], in that order."""
    windows = Window.objects.defer("embedding").select_related("recording__deployment").in_bulk([w for w, _ in scored])
    labels = labels_by_window(list(windows))
    predictions = named_predictions(windows.values())
    hits = []
    for window_id, score in scored:
        if (window := windows.get(window_id)) is None:
            continue  # deleted since (with its deployment)
        recording = window.recording
        hits.append(
            SearchHit(
                window_id=window_id,
                recording_id=recording.pk,
                filename=recording.filename,
                deployment_id=recording.deployment_id,
                deployment_name=recording.deployment.name,
                site=recording.deployment.site,
                start_s=window.start_s,
                end_s=window.end_s,
                score=float(score),
                labels=labels.get(window_id, []),
                started_at=window_start_time(window),
                predictions=predictions.get(window_id, []),
            )
        )
    return hits


def window_start_time(window: Window) -> dt.datetime | None:
    """When the window's audio was recorded, in its deployment's time zone."""
    recording = window.recording
    if recording.started_at is None:
        return None
    try:
        zone = zoneinfo.ZoneInfo(recording.deployment.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return (recording.started_at + dt.timedelta(seconds=window.start_s)).astimezone(zone)


def examples_for(project: Project, spec: SearchSpec) -> Examples:
    """The embeddings of a spec's example windows and clips, all of one model."""
    window_ids = list(dict.fromkeys(spec.positive_windows + spec.negative_windows))
    if not spec.positive_windows and not spec.positive_clips:
        raise InputError("give at least one example to search with: a window or a clip")
    if len(window_ids) + len(spec.positive_clips) > MAX_EXAMPLES:
        raise InputError(f"a search takes at most {MAX_EXAMPLES} examples")
    windows = Window.objects.defer("embedding").filter(pk__in=window_ids, recording__deployment__project=project)
    models = {w.pk: w.model for w in windows.select_related("model")}
    if missing := [w for w in window_ids if w not in models]:
        raise InputError(f"window {missing[0]} is not part of this project")
    clips = list(
        ClipQuery.objects.filter(pk__in=spec.positive_clips, project=project).select_related("embedding_model")
    )
    if len(clips) != len(set(spec.positive_clips)):
        raise InputError("a clip query of this search is not part of this project")
    for clip in clips:
        if clip.status != RecordingStatus.DONE:
            reason = f": {clip.error}" if clip.error else ""
            raise InputError(f"clip {clip.filename} is not embedded yet ({clip.status}{reason})")
    used = set(models.values()) | {clip.embedding_model for clip in clips}
    if len(used) > 1:
        raise InputError("the examples come from different embedding models and cannot be compared")
    model = used.pop()
    embeddings = window_embeddings(window_ids)
    positives = [embeddings[w] for w in spec.positive_windows] + [np.asarray(c.embedding) for c in clips]
    negatives = [embeddings[w] for w in spec.negative_windows]
    return Examples(
        model=model,
        positives=np.asarray(positives, dtype=np.float32).reshape(-1, model.embedding_dim),
        negatives=np.asarray(negatives, dtype=np.float32).reshape(-1, model.embedding_dim),
        exclude_window_ids=tuple(window_ids),
    )


def combined_scores(candidates: np.ndarray, examples: Examples, combine: str) -> np.ndarray:
    """Scores float [N] of candidate embeddings [N, D]: cosine with the mean example
    direction or the best cosine with any example, less NEGATIVE_WEIGHT times the best
    cosine with any negative example."""
    unit = unit_rows(candidates)
    positives = unit_rows(examples.positives)
    if combine == Combine.BEST:
        scores = (unit @ positives.T).max(axis=1)
    else:
        scores = unit @ unit_rows(positives.mean(axis=0, keepdims=True))[0]
    if len(examples.negatives):
        scores = scores - NEGATIVE_WEIGHT * (unit @ unit_rows(examples.negatives).T).max(axis=1)
    return scores


@dataclasses.dataclass(frozen=True)
class SearchPage:
    model: EmbeddingModel
    hits: list[SearchHit]
    path: str = ""  # SearchPath of the index queries; empty for a saved search's page


@dataclasses.dataclass(frozen=True)
class Ranked:
    model: EmbeddingModel
    scored: list[tuple[int, float]]  # (window_id, score), best first
    path: str  # SearchPath


def ranked_windows(project: Project, spec: SearchSpec, wanted: int) -> Ranked:
    """The best ``wanted`` (at most MAX_K) windows of a query by example."""
    if spec.combine not in Combine.values:
        raise InputError(f"combine must be one of {', '.join(Combine.values)}")
    examples = examples_for(project, spec)
    wanted = min(max(int(wanted), 1), MAX_K)
    per_recording = spec.filters.one_per_recording
    single = len(examples.positives) == 1 and not len(examples.negatives) and not per_recording
    if single:  # the index's own cosine is the score: no re-ranking needed
        nearest = nearest_window_ids(
            project, examples.model, examples.positives[0], wanted, examples.exclude_window_ids, spec.filters
        )
        return Ranked(examples.model, nearest.scored, nearest.path)
    # A pool larger than the page (up to the index query's MAX_K), so that re-ranking (or
    # keeping one window per recording) has something to promote.
    pool = min((8 if per_recording else 2) * wanted, MAX_K)
    queries = examples.positives if spec.combine == Combine.BEST else unit_rows(examples.positives).mean(axis=0)[None]
    candidate_ids: dict[int, None] = {}
    paths = set()
    for query in queries:
        nearest = nearest_window_ids(project, examples.model, query, pool, examples.exclude_window_ids, spec.filters)
        candidate_ids.update((window_id, None) for window_id, _ in nearest.scored)
        paths.add(nearest.path)
    # The least exact of the paths taken.
    path = next(p for p in (SearchPath.INDEX, SearchPath.SKETCH, SearchPath.EXACT) if p in paths)
    if not candidate_ids:
        return Ranked(examples.model, [], path)
    ids = np.fromiter(candidate_ids, dtype=np.int64)
    recording_ids, embeddings = window_matrix(ids.tolist(), examples.model.embedding_dim)
    scores = combined_scores(embeddings, examples, spec.combine)
    order = np.argsort(-scores, kind="stable")
    if per_recording:
        _, first = np.unique(recording_ids[order], return_index=True)
        order = order[np.sort(first)]  # each recording's best, still best first
    return Ranked(examples.model, [(int(ids[i]), float(scores[i])) for i in order[:wanted]], path)


def run_search(project: Project, spec: SearchSpec, k: int = PAGE_SIZE, offset: int = 0) -> SearchPage:
    """Hits ``offset`` to ``offset + k`` (at most MAX_K in all) of a query by example."""
    offset = max(int(offset), 0)
    ranked = ranked_windows(project, spec, offset + max(int(k), 1))
    return SearchPage(ranked.model, hits_for(ranked.scored[offset : offset + k]), ranked.path)


def saved_results_page(project: Project, record: SearchRecord, offset: int, k: int = PAGE_SIZE) -> SearchPage:
    """A page of a saved search's results as they were when it first ran (the best
    SAVED_RESULTS are ranked and kept then), so going back in the history shows what was
    seen, whatever was ingested or labeled since."""
    if record.result_window_ids is None:
        ranked = ranked_windows(project, spec_of(record), SAVED_RESULTS)
        record.embedding_model = ranked.model
        record.result_window_ids = [window_id for window_id, _ in ranked.scored]
        record.result_scores = [score for _, score in ranked.scored]
        record.result_count = len(ranked.scored)
        record.save(update_fields=["embedding_model", "result_window_ids", "result_scores", "result_count"])
    scored = list(zip(record.result_window_ids, record.result_scores, strict=True))
    return SearchPage(record.embedding_model, hits_for(scored[offset : offset + k]))


def spec_from_params(params: Mapping) -> SearchSpec:
    """A spec from a page's or the API's parameters (a QueryDict or a dict of lists/values).

    Repeated ``window``, ``negative`` and ``clip`` give several examples.
    """

    def many(name: str) -> tuple[int, ...]:
        values = params.getlist(name) if hasattr(params, "getlist") else params.get(name) or []
        values = values if isinstance(values, list | tuple) else [values]
        return tuple(_int(v, name) for v in values if str(v).strip())

    def one(name: str) -> str:
        value = params.get(name, "")
        return str(value).strip() if value is not None else ""

    filters = SearchFilters(
        deployment_id=_int(one("deployment"), "deployment") if one("deployment") else None,
        site=one("site")[:200],
        date_from=_date(one("date_from"), "date_from"),
        date_to=_date(one("date_to"), "date_to"),
        hour_from=_hour(one("hour_from"), "hour_from"),
        hour_to=_hour(one("hour_to"), "hour_to"),
        predicted_class=one("predicted")[:200],
        label_id=_int(one("label"), "label") if one("label") else None,
        labeled=one("labeled") or LabeledFilter.ANY,
        one_per_recording=one("per_recording") == "1",
    )
    if filters.labeled not in LabeledFilter.values:
        raise InputError(f"labeled must be one of {', '.join(LabeledFilter.values)}")
    return SearchSpec(
        positive_windows=many("window"),
        negative_windows=many("negative"),
        positive_clips=many("clip"),
        combine=one("combine") or Combine.MEAN,
        filters=filters,
    )


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
        ("hour_from", f.hour_from),
        ("hour_to", f.hour_to),
        ("predicted", f.predicted_class),
        ("label", f.label_id),
        ("labeled", "" if f.labeled == LabeledFilter.ANY else f.labeled),
        ("per_recording", "1" if f.one_per_recording else ""),
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


def _date(value: str, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InputError(f"{name} must be a date like 2024-05-21, not {value[:40]!r}") from None


def _hour(value: str, name: str) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 24:
        raise InputError(f"{name} must be an hour from 0 to 24, not {value[:40]!r}")
    return int(value)


def save_search(project: Project, user, spec: SearchSpec) -> SearchRecord:
    """Remember a search in the user's history (after checking that it can run)."""
    examples_for(project, spec)
    f = spec.filters
    if f.deployment_id is not None and not project.deployments.filter(pk=f.deployment_id).exists():
        raise InputError(f"deployment {f.deployment_id} is not part of this project")
    if f.label_id is not None and not project.labels.filter(pk=f.label_id).exists():
        raise InputError(f"label {f.label_id} is not part of this project")
    return SearchRecord.objects.create(
        project=project,
        user=user,
        positive_windows=list(spec.positive_windows),
        negative_windows=list(spec.negative_windows),
        positive_clips=list(spec.positive_clips),
        combine=spec.combine,
        **dataclasses.asdict(f),  # SearchRecord's filter columns are named as SearchFilters' fields
    )


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


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """A saved search as the history list tells it: what it searched with, and where."""

    record: SearchRecord
    examples: list[str]  # each example's file and time; pushed-away ones start with "not"
    filters: list[str]


def search_history(project: Project, user, limit: int = 20) -> list[HistoryEntry]:
    """The user's latest searches, newest first, each with its examples and filters told."""
    records = list(
        SearchRecord.objects.filter(project=project, user=user).select_related("deployment", "label")[:limit]
    )
    windows = (
        Window.objects.defer("embedding")
        .select_related("recording__deployment")
        .in_bulk({w for r in records for w in r.positive_windows + r.negative_windows})
    )
    clips = ClipQuery.objects.select_related("recording").in_bulk({c for r in records for c in r.positive_clips})
    return [
        HistoryEntry(
            record,
            [_told_window(windows[w]) for w in record.positive_windows if w in windows]
            + [_told_clip(clips[c]) for c in record.positive_clips if c in clips]
            + [f"not {_told_window(windows[w])}" for w in record.negative_windows if w in windows],
            _told_filters(record),
        )
        for record in records
    ]


def _told_window(window: Window) -> str:
    started = window_start_time(window)
    when = f" ({started:%Y-%m-%d %H:%M:%S %Z})" if started else ""
    return f"{window.recording.filename} at {window.start_s:g} s{when}"


def _told_clip(clip: ClipQuery) -> str:
    name = f"a region of {clip.recording.filename}" if clip.recording else f"clip {clip.filename}"
    if clip.start_s is None and clip.end_s is None:
        return name
    end = f"{clip.end_s:g}" if clip.end_s is not None else "end"
    return f"{name}, {clip.start_s or 0:g}–{end} s"


def _told_filters(record: SearchRecord) -> list[str]:
    told = ["best match of the examples"] if record.combine == Combine.BEST else []
    if record.deployment:
        told.append(f"deployment {record.deployment.name}")
    if record.site:
        told.append(f"site {record.site}")
    if record.date_from or record.date_to:
        told.append(f"days {record.date_from or '…'} to {record.date_to or '…'}")
    if record.hour_from is not None or record.hour_to is not None:
        told.append(f"hours {record.hour_from or 0}–{24 if record.hour_to is None else record.hour_to} local")
    if record.predicted_class:
        told.append(f"model hears {record.predicted_class!r}")
    if record.label and record.labeled != LabeledFilter.ANY:  # a label alone filters nothing
        told.append(f"{'not ' if record.labeled == LabeledFilter.UNLABELED else ''}labeled {record.label.name}")
    if record.one_per_recording:
        told.append("best window per recording")
    return told


def _checked_span(start_s: float | None, end_s: float | None) -> tuple[float | None, float | None]:
    if start_s is None and end_s is None:
        return None, None
    start_s = 0.0 if start_s is None else float(start_s)
    if not (start_s >= 0 and (end_s is None or end_s > start_s)):
        raise InputError("a trimmed clip needs 0 <= start < end (seconds)")
    if end_s is not None and end_s - start_s > MAX_REGION_S:
        raise InputError(f"an example is at most {MAX_REGION_S:g} s long; trim it to the sound of interest")
    return start_s, end_s


def request_clip_query(
    project: Project, user, upload, start_s: float | None = None, end_s: float | None = None
) -> ClipQuery:
    """Store an uploaded example clip, optionally trimmed to [start_s, end_s), and queue its
    embedding; within the user's clip quota (``clips``)."""
    name = safe_filename(upload.name)
    if not any(name.lower().endswith(ext) for ext in AUDIO_EXTENSIONS):
        raise InputError(f"{upload.name}: unsupported file type; expected {', '.join(sorted(AUDIO_EXTENSIONS))}")
    if upload.size > MAX_CLIP_BYTES:
        raise InputError("an example clip must be under 50 MB; trim it to the sound of interest")
    start_s, end_s = _checked_span(start_s, end_s)
    check_quota(user, upload.size)
    with transaction.atomic():
        query = ClipQuery.objects.create(
            project=project, created_by=user, filename=name, path="", start_s=start_s, end_s=end_s
        )
        folder = clip_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{query.pk}-{name}"
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        query.path = str(path)
        query.save(update_fields=["path"])
        _queue_clip_embedding(query)
    return query


def request_region_query(project: Project, user, recording_id: int, start_s: float, end_s: float) -> ClipQuery:
    """Queue the embedding of a region dragged on a recording's spectrogram, as an example."""
    recording = Recording.objects.filter(pk=recording_id, deployment__project=project).first()
    if recording is None:
        raise InputError(f"recording {recording_id} is not part of this project")
    start_s, end_s = _checked_span(start_s, end_s)
    if end_s is None or (recording.duration_s and start_s >= recording.duration_s):
        raise InputError(f"the region must lie inside the recording (0 to {recording.duration_s or 0:.1f} s)")
    with transaction.atomic():
        query = ClipQuery.objects.create(
            project=project,
            created_by=user,
            recording=recording,
            path=recording.path,
            filename=f"{recording.filename} {start_s:.2f}-{end_s:.2f} s",
            start_s=start_s,
            end_s=end_s,
        )
        _queue_clip_embedding(query)
    return query


def _queue_clip_embedding(query: ClipQuery) -> None:
    enqueue_on_commit(
        EMBED_CLIP_QUERY,
        query.pk,
        on_failure=lambda why: ClipQuery.objects.filter(pk=query.pk).update(status=RecordingStatus.FAILED, error=why),
    )
