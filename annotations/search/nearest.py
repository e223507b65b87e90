"""The k windows nearest one query, by whichever path the filters make fastest."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from django.db import models, transaction

from annotations.embedding_store import raw_connection
from annotations.errors import InputError
from annotations.models import EmbeddingModel, Project
from annotations.search.exact import EXACT_SCAN_MAX_WINDOWS, exact_sql
from annotations.search.filters import SearchFilters, recording_conditions, window_conditions
from annotations.search.index import index_rows
from annotations.search.sketch import SKETCH_SCAN_MAX_WINDOWS, sketch_params, sketch_sql
from annotations.search.spans import SPAN_PLAN, candidate_windows, recording_spans
from annotations.search_index import index_state

MAX_K = 500


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
    cosine, best first (each recording's best only, under ``filters.one_per_recording``):
    exactly when the filters leave at most ``exact_scan_max`` windows, by sketch when they
    leave at most ``sketch_scan_max`` or the project has no index yet, otherwise from its
    HNSW index."""
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
    per_recording = filters.one_per_recording
    raw = raw_connection()
    with transaction.atomic():
        with raw.cursor() as cursor:
            # Only the index (or the recordings' windows) may reach the rows: a planner that
            # misjudges a filter must not fall back to reading the whole table.
            cursor.execute("SET LOCAL enable_seqscan = off")
            # A worker process costs more to start than these small scans take.
            cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            if path in (SearchPath.EXACT, SearchPath.SKETCH):
                for setting in SPAN_PLAN:
                    cursor.execute(setting)
            if path == SearchPath.EXACT:
                cursor.execute(exact_sql(model, where, spans, per_recording), params)
            elif path == SearchPath.SKETCH:
                params.update(sketch_params(model, query, k, per_recording))
                cursor.execute(sketch_sql(model, where, spans, per_recording), params)
            rows = cursor.fetchall() if path != SearchPath.INDEX else []
        if path == SearchPath.INDEX:
            rows = index_rows(raw, project, model, index, where.all, params, per_recording)
    rows.sort(key=lambda row: -row[1])
    if per_recording:
        rows = _best_per_recording(rows)
    scored = [(window_id, score) for window_id, score, _ in rows[:k]]
    return NearestWindows(scored, path, candidates)


def _best_per_recording(rows: list[tuple[int, float, int]]) -> list[tuple[int, float, int]]:
    """The first of each recording's rows (id, score, recording_id), in order."""
    seen: set[int] = set()
    return [row for row in rows if not (row[2] in seen or seen.add(row[2]))]


def _choose_path(
    candidates: int, filtered: bool, indexed: bool, sketchable: bool, exact_scan_max: int, sketch_scan_max: int
) -> str:
    if candidates <= exact_scan_max or not (indexed or sketchable):
        return SearchPath.EXACT
    if sketchable and (not indexed or (filtered and candidates <= sketch_scan_max)):
        return SearchPath.SKETCH
    return SearchPath.INDEX
