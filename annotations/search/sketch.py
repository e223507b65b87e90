"""The sketch path: every window that passes ranked by an estimate of its cosine with the
query from its sketch, the best compared exactly.

A window's sketch is the signs of its residual r = unit(x) - c and the residual's length
|r| (``embedding_store.sketch_residuals``; c is the model's mean unit embedding). For one
query, cosine ranks windows as <r_q, r_x> - |r_x|^2 / 2 does, exactly; the pass estimates
<r_q, r_x> as |r_q| |r_x| cos(pi h / D) from the Hamming distance h between the signs.
Nothing in it depends on the query's length: a mean of unit-length examples and a stored
window at its own scale rank alike. (Signs of x - mean(x) did depend on it: real
embeddings' common mean is about 17x longer than a unit query, so the query's signs were
the mean's, and the pass ranked at random.)
"""

from __future__ import annotations

import math

import numpy as np

from annotations.embedding_store import center_array, sketch_query
from annotations.models import EmbeddingModel
from annotations.search.filters import WindowConditions
from annotations.search.spans import SPAN_WINDOWS, rechecked, with_spans
from annotations.search.sql import nearest_sql

# Up to this many, the sketch path; above it, the project's HNSW index is faster (its cost
# under a filter grows with the candidates it skips, not with the windows that pass).
# bench/scale.py at 1M on data shaped like real output: about 0.2 us a window for the
# index-only scan and 0.06 us for the estimate, plus 5 ms for the pool's exact comparison
# (22-25 ms for the 50,000 windows of one deployment); the index 24-37 ms under filters
# of 11-15%.
SKETCH_SCAN_MAX_WINDOWS = 100_000
# The sketch path compares this many times k of its best-estimated windows exactly (at least
# SKETCH_POOL_MIN).
SKETCH_POOL_PER_K = 10
SKETCH_POOL_MIN = 1_000
# For the best window per recording, each recording's best this many estimates join a pool
# three times the size: a recording's windows are close, and its best estimate is not
# always its best. bench/scale.py at 1M, one deployment of hour-long recordings: 8 in a
# pool twice the size found 0.89 of the recordings' best windows (the worst query 0.74) in
# 38 ms, 24 in three times 0.98 (0.90) in 42 ms.
SKETCH_POOL_PER_RECORDING = 24


def sketch_params(
    model: EmbeddingModel, query: np.ndarray, k: int, per_recording: bool = False, pushed: bool = False
) -> dict:
    """What sketch_sql needs of a query float32 [D]: its sketch, its residual's length,
    the angle of one differing bit, and the pool (twice as large for a query ``pushed``
    away from a negative: bench/scale.py at 1536-d, 3 days, the worst such query found
    0.68 of its hits with the plain pool)."""
    sketch, norm = sketch_query(query, center_array(model.sketch_center))
    pool = max(SKETCH_POOL_PER_K * k, SKETCH_POOL_MIN) * (3 if per_recording else 1) * (2 if pushed else 1)
    return {"sketch": sketch, "sketch_norm": norm, "bit_angle": math.pi / int(model.embedding_dim), "pool": pool}


def sketch_sql(model: EmbeddingModel, where: WindowConditions, spans: str, per_recording: bool = False) -> str:
    """The ``pool`` windows of the spans that may hold hits whose estimated cosine with the
    query is highest, read from one_window_per_start alone (the conditions test only what
    it carries), then the best k of them by cosine. For ``per_recording``, the pool holds
    each recording's SKETCH_POOL_PER_RECORDING best estimates and the answer each
    recording's best window."""
    estimate = (
        "w.sketch_norm * (%(sketch_norm)s * cos(%(bit_angle)s * (w.sketch <~> %(sketch)s::varbit)) "
        "- 0.5 * w.sketch_norm)"
    )
    conditions = "".join(f"AND {condition} " for condition in rechecked(where))
    if per_recording:
        # Each span's best estimates by a bounded top-N (a span holds part of one
        # recording, so together they hold each recording's best): sorting every window
        # by recording and estimate cost as much as reading them.
        best_of_span = (
            f"SELECT w.id, {estimate} AS estimate FROM annotations_window w WHERE w.recording_id = s.recording_id "
            "AND w.model_id = %(model)s AND w.start_s >= s.lo AND w.start_s < s.hi "
            f"AND NOT (w.id = ANY(%(exclude)s)) {conditions}"
            f"ORDER BY estimate DESC LIMIT {SKETCH_POOL_PER_RECORDING}"
        )
        pool = (
            f"{with_spans(spans)}SELECT best.id FROM s CROSS JOIN LATERAL ({best_of_span}) best "
            "ORDER BY best.estimate DESC LIMIT %(pool)s"
        )
    else:
        passing = f"FROM {SPAN_WINDOWS} WHERE NOT (w.id = ANY(%(exclude)s)) {conditions}"
        pool = f"{with_spans(spans)}SELECT w.id {passing}ORDER BY {estimate} DESC LIMIT %(pool)s"
    return nearest_sql("annotations_window w", f"w.id IN ({pool})", model, [], per_recording=per_recording)
