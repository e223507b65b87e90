"""The exact path: every window that passes the filters compared with the query."""

from __future__ import annotations

from annotations.models import EmbeddingModel
from annotations.search.filters import WindowConditions
from annotations.search.spans import SPAN_WINDOWS, rechecked, with_spans
from annotations.search.sql import nearest_sql

# Up to this many windows passing the filters, a search compares the query with each of
# them. An exact comparison costs about 0.8 us per 1024-d window (bench/scale.py, 1M
# windows); a sketch's first pass about 0.3-0.45 us, plus 5 us for each window of its pool,
# so sketches win from about this many.
EXACT_SCAN_MAX_WINDOWS = 10_000


def exact_sql(model: EmbeddingModel, where: WindowConditions, spans: str, per_recording: bool = False) -> str:
    """Every window of the spans that may hold hits, compared with the query (the best of
    each recording, for ``per_recording``).

    The spans alone say which windows, through one range scan of one_window_per_start
    each (``SPAN_PLAN``); no condition on the window's project, which would offer the
    planner window_project_model_id.
    """
    conditions = rechecked(where)
    return with_spans(spans) + nearest_sql(SPAN_WINDOWS, "true", model, conditions, per_recording=per_recording)
