"""The k windows nearest one query, by whichever path the filters make fastest."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import psycopg
from django.db import DEFAULT_DB_ALIAS, models, transaction

from annotations.embedding_store import bound_cursor, raw_connection, read_alias
from annotations.errors import InputError
from annotations.models import EmbeddingModel, Project
from annotations.search.exact import EXACT_SCAN_MAX_WINDOWS, exact_sql
from annotations.search.filters import SearchFilters, WindowConditions, recording_conditions, window_conditions
from annotations.search.index import GraphPart, hour_graphs, index_rows, place_graphs, probe_of_graphs
from annotations.search.safety_net import missed_neighbours
from annotations.search.sketch import SKETCH_SCAN_MAX_WINDOWS, sketch_params, sketch_sql
from annotations.search.spans import SPAN_PLAN, candidate_windows, recording_spans
from annotations.search_index import IndexState, index_state
from annotations.search_probe import IndexProbe, probe_misses
from annotations.sun import ensure_sun_days

MAX_K = 500


class SearchPath(models.TextChoices):
    EXACT = "exact", "Exact: every window that passes the filters was compared"
    SKETCH = (
        "sketch",
        ("Approximate: every window that passes the filters was ranked by a compact sketch, the best compared exactly"),
    )
    INDEX = "index", "Approximate: the project's search index (windows added since its build compared exactly)"


@dataclasses.dataclass(frozen=True)
class NearestWindows:
    scored: list[tuple[int, float]]  # (window_id, cosine), best first
    path: str  # SearchPath
    candidates: int  # windows the filters leave (counted up to the largest scan + 1)
    rescued: bool = False  # the index's answer failed its check, and ``path`` answered instead
    widened: bool = False  # the index's answer missed its probe windows, and a wider search answered


# The best window per recording reads each recording's best estimates from the sketch
# pass up to this many windows (index-only, about 0.3 us a window): the index would have to
# read on until it held k recordings, often thousands of windows of a few.
SKETCH_PER_RECORDING_MAX_WINDOWS = 300_000


def nearest_window_ids(
    project: Project,
    model: EmbeddingModel,
    query: np.ndarray,
    k: int,
    exclude_window_ids: Sequence[int] = (),
    filters: SearchFilters = SearchFilters(),
    exact_scan_max: int | None = None,
    sketch_scan_max: int | None = None,
    anchor_window_ids: Sequence[int] = (),
    pushed: bool = False,
) -> NearestWindows:
    """The k windows of ``project`` nearest ``query`` (float32 [model.embedding_dim]) by
    cosine, best first (each recording's best only, under ``filters.one_per_recording``):
    exactly when the filters leave at most ``exact_scan_max`` windows (by default
    EXACT_SCAN_MAX_WINDOWS), by sketch when they leave at most ``sketch_scan_max`` (by
    default SKETCH_SCAN_MAX_WINDOWS, or SKETCH_PER_RECORDING_MAX_WINDOWS for each
    recording's best) or the project has no index yet, otherwise from its HNSW index.

    An index's answer is checked against the windows around ``anchor_window_ids`` (the
    examples the query was made of: ``safety_net``); where they beat it, the index missed
    the query's neighbourhood, and the sketch path (or the exact one) answers instead.
    Unfiltered, it is first checked against the index's probe windows (``search_probe``),
    which every query has, an uploaded clip's included; where they beat it, the graph is
    searched again as widely as it can be.

    ``pushed``: the query was pushed away from a negative example. Such a direction is less
    like any window, and the sketch's estimates of it looser: the sketch pass compares
    twice its pool exactly.
    """
    query = np.asarray(query, dtype=np.float32)
    if query.shape != (model.embedding_dim,):
        raise InputError(f"query has shape {query.shape}, {model} needs ({model.embedding_dim},)")
    if not np.any(query):
        raise InputError("the query embedding is all zeros: cosine similarity is undefined")
    k = max(1, min(int(k), MAX_K))
    per_recording = filters.one_per_recording
    exact_scan_max = EXACT_SCAN_MAX_WINDOWS if exact_scan_max is None else exact_scan_max
    if sketch_scan_max is None:
        sketch_scan_max = SKETCH_PER_RECORDING_MAX_WINDOWS if per_recording else SKETCH_SCAN_MAX_WINDOWS
    where = window_conditions(project, model, filters)
    recordings, recording_params = recording_conditions(project, model, filters)
    spans, span_params = recording_spans(filters, recordings)
    params = {**where.params, **recording_params, **span_params}
    params.update(query=query, exclude=list(exclude_window_ids), k=k, hop=model.hop_s)
    index = index_state(project, model)
    # Sun times just worked out are on the primary alone: a standby may not hold them yet.
    alias = DEFAULT_DB_ALIAS if filters.sun_event and ensure_sun_days(project) else read_alias()
    counted = max(exact_scan_max, sketch_scan_max)
    if filters.deployment_id is None and not filters.site and not filters.timed and index.windows > counted:
        candidates = index.windows  # the index alone holds too many to scan: no need to count
    else:
        candidates = candidate_windows(spans, params, counted + 1, alias)
    # one_window_per_start carries neither a window's predicted classes nor, before the
    # model's first windows, a sketch to compare.
    sketchable = not filters.predicted_class and model.sketch_center is not None
    # A filter's pool, or each recording's best, comes cheaper from the spans than from the
    # index, up to their limits.
    spans_first = bool(where.all) or per_recording
    path = _choose_path(candidates, spans_first, bool(index.index_name), sketchable, exact_scan_max, sketch_scan_max)
    # A place's own graphs answer where the project's graph would, and where the sketch
    # would for a place alone: at 1M, one deployment (50,000 windows) 10-12 ms against the
    # sketch's 23-32. Under a time filter too they read 3-4 rows for each that passes (a
    # site over 10 days: 47-51 ms against the sketch's 34-41), so there the sketch keeps
    # what it can. So do the graphs of the bands of a time of day, for an hour filter
    # alone. Each recording's best reads one graph in order through a cursor: a band's,
    # where the filter keeps one band (a deployment's holds too few recordings for a page of
    # them), else the project's.
    graphs = [] if per_recording else place_graphs(index, where, filters.deployment_id, bool(filters.site))
    if graphs and path == SearchPath.SKETCH and index.index_name and not where.time:
        path = SearchPath.INDEX
    if not graphs:
        graphs = hour_graphs(index, where)
        if per_recording and len(graphs) > 1:
            graphs = []
        if graphs and path == SearchPath.SKETCH and not (where.other or where.days or per_recording):
            path = SearchPath.INDEX
    raw = raw_connection(alias)
    rescued = widened = False
    with transaction.atomic(using=alias):
        with bound_cursor(raw) as cursor:
            # Only an index (or the recordings' windows) may reach the rows: a planner that
            # misjudges a filter must not fall back to reading the whole table; and a worker
            # process costs more to start than these small scans take.
            cursor.execute(
                "SELECT set_config('enable_seqscan', 'off', true), "
                "set_config('max_parallel_workers_per_gather', '0', true)"
            )
        if path == SearchPath.INDEX:
            anchored = bool(anchor_window_ids)
            found = _index_rows(raw, alias, project, model, index, where, params, per_recording, anchored, graphs)
            rows = _ranked(found, per_recording, k)
            probe = _probe_for(raw, alias, index, where, graphs, per_recording)
            if probe is not None and probe_misses(probe, query, rows, k, set(exclude_window_ids)):
                as_widely_as_it_can = (where, params, per_recording, anchored, graphs, True)
                found = _index_rows(raw, alias, project, model, index, *as_widely_as_it_can)
                rows, widened = _ranked(found, per_recording, k), True
            if missed_neighbours(raw, model, anchor_window_ids, where, params, rows, per_recording):
                path, rescued = (SearchPath.SKETCH if sketchable else SearchPath.EXACT), True
        if path != SearchPath.INDEX:
            span_rows = _span_rows(raw, model, path, where, spans, params, query, per_recording, pushed)
            rows = _ranked(span_rows, per_recording, k)
    scored = [(window_id, score) for window_id, score, _ in rows]
    return NearestWindows(scored, path, candidates, rescued, widened)


def _probe_for(
    raw: psycopg.Connection,
    alias: str,
    index: IndexState,
    where: WindowConditions,
    graphs: Sequence[GraphPart],
    per_recording: bool,
) -> IndexProbe | None:
    """The probe windows an index answer must hold where they beat its k-th: every one
    unfiltered; those that partial graphs hold where the graphs are the whole filter (a
    place's, or an hour filter's bands); none otherwise (under other filters, or per
    recording, probe windows that do not pass would count as misses)."""
    if index.probe is None or per_recording:
        return None
    if not where.all:
        return index.probe
    by_hours = bool(graphs) and graphs[0].seconds is not None
    # The bands' graphs stand for the hour filter; a place's, for the place filter.
    graphs_are_the_filter = not (where.other or where.days) if by_hours else not where.time
    if graphs and where.placed_in_time_only and graphs_are_the_filter:
        try:
            with transaction.atomic(using=alias):  # a savepoint, to go on after the error
                return probe_of_graphs(raw, index, graphs)
        except psycopg.errors.UndefinedTable:
            return None  # a rebuild retired the index meanwhile, and the new one answered
    return None


def _index_rows(
    raw: psycopg.Connection,
    alias: str,
    project: Project,
    model: EmbeddingModel,
    index: IndexState,
    where: WindowConditions,
    params: dict,
    per_recording: bool,
    anchored: bool,
    graphs: Sequence[GraphPart] = (),
    widest: bool = False,
) -> list[tuple[int, float, int]]:
    """``index_rows``, once more with the new index where a rebuild retired the one that
    ``index`` names between reading it and using it (its table is dropped; the new one
    has no partial graphs yet, and the project's graph answers)."""
    try:
        with transaction.atomic(using=alias):  # a savepoint, to go on after the error
            return index_rows(raw, project, model, index, where, params, per_recording, anchored, widest, graphs=graphs)
    except psycopg.errors.UndefinedTable:
        current = index_state(project, model)
        return index_rows(raw, project, model, current, where, params, per_recording, anchored, widest)


def _span_rows(
    raw: psycopg.Connection,
    model: EmbeddingModel,
    path: str,
    where: WindowConditions,
    spans: str,
    params: dict,
    query: np.ndarray,
    per_recording: bool,
    pushed: bool,
) -> list[tuple[int, float, int]]:
    """Rows (id, score, recording_id) of the exact or sketch path through ``spans`` (SQL),
    in the caller's transaction."""
    with bound_cursor(raw) as cursor:
        cursor.execute(SPAN_PLAN)
        if path == SearchPath.EXACT:
            cursor.execute(exact_sql(model, where, spans, per_recording), params)
        else:
            params.update(sketch_params(model, query, params["k"], per_recording, pushed))
            cursor.execute(sketch_sql(model, where, spans, per_recording), params)
        return cursor.fetchall()


def _ranked(rows: list[tuple[int, float, int]], per_recording: bool, k: int) -> list[tuple[int, float, int]]:
    """The best k of rows (id, score, recording_id), best first; only each recording's
    best, for ``per_recording``."""
    rows = sorted(rows, key=lambda row: -row[1])
    if per_recording:
        seen: set[int] = set()
        rows = [row for row in rows if not (row[2] in seen or seen.add(row[2]))]
    return rows[:k]


def _choose_path(
    candidates: int, spans_first: bool, indexed: bool, sketchable: bool, exact_scan_max: int, sketch_scan_max: int
) -> str:
    if candidates <= exact_scan_max or not (indexed or sketchable):
        return SearchPath.EXACT
    if sketchable and (not indexed or (spans_first and candidates <= sketch_scan_max)):
        return SearchPath.SKETCH
    return SearchPath.INDEX
