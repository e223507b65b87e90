"""The sketch path: every window that passes ranked by its sign sketch, the best compared exactly."""

from __future__ import annotations

from annotations.models import EmbeddingModel
from annotations.search.filters import WindowConditions
from annotations.search.spans import SPAN_WINDOWS, rechecked, with_spans
from annotations.search.sql import nearest_sql

# Up to this many, the sketch path; above it, the project's HNSW index is faster (its cost
# under a filter grows with the candidates it skips, not with the windows that pass).
# bench/scale.py at 1M: about 0.2 us a window plus 6 ms for the pool's exact comparison
# (21-25 ms for the 76,000 windows of 3 days or of hours 4-6), against 17-28 ms by index.
SKETCH_SCAN_MAX_WINDOWS = 100_000
# The sketch path compares this many times k of its best-sketched windows exactly (at least
# SKETCH_POOL_MIN): bench/scale.py finds 0.999 of the true top 100 in the best 500.
SKETCH_POOL_PER_K = 10
SKETCH_POOL_MIN = 1_000


def sketch_sql(model: EmbeddingModel, where: WindowConditions, spans: str) -> str:
    """The ``pool`` windows of the spans that may hold hits whose sketches are nearest the
    query's, read from one_window_per_start alone (the conditions test only what it
    carries), then the best k of them by cosine."""
    pool = (
        f"{with_spans(spans)}SELECT w.id FROM {SPAN_WINDOWS} WHERE NOT (w.id = ANY(%(exclude)s)) "
        + "".join(f"AND {condition} " for condition in rechecked(where))
        + "ORDER BY w.sketch <~> %(sketch)s::varbit LIMIT %(pool)s"
    )
    return nearest_sql("annotations_window w", f"w.id IN ({pool})", model, [], by_index=False)
