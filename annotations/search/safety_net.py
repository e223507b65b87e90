"""The index path's check: do the windows around the query's own examples beat its answer?

An HNSW search can settle in the wrong part of its graph and return windows far worse than
the true nearest (bench/scale.py at 1M, on embeddings shaped like real ones: one query in
thirty found none of its 100 nearest; its best hit scored 0.67 where its own recording held
0.86). Windows close in time to an example are among its nearest almost always (a
recording's background drifts slowly, calls come in bouts), and reading them is cheap: a
range scan of one_window_per_start per example. When one of them, passing the filters,
scores above the index's k-th answer and is missing from it (enough of them to cost the
page RESCUE_SHARE of its hits), the index missed the query's neighbourhood, and the search
is answered by another path instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import psycopg

from annotations.embedding_store import bound_cursor
from annotations.models import EmbeddingModel
from annotations.search.filters import WindowConditions
from annotations.search.sql import nearest_sql
from annotations.search_probe import SCORE_TOLERANCE  # a neighbour must beat the k-th by more

# Seconds either side of an example whose windows are checked: 40 windows at BirdNET's 3 s.
NEIGHBOURHOOD_S = 60.0
# The share of the page that missing neighbours must take before another path answers: one
# missed hit costs the page little (recall 0.99), a rescue a scan of every window that
# passes (a few hundred ms at a million), which a lost index (every neighbour missing)
# is worth and a near miss is not.
RESCUE_SHARE = 0.05


def missed_neighbours(
    raw: psycopg.Connection,
    model: EmbeddingModel,
    anchor_window_ids: Sequence[int],
    where: WindowConditions,
    params: dict,
    rows: list[tuple[int, float, int]],
    per_recording: bool,
) -> bool:
    """Whether windows within NEIGHBOURHOOD_S of an anchor window, passing ``where``, beat
    the k-th of the index's answer ``rows`` (id, score, recording_id, best first; each a
    recording's best for ``per_recording``) and are missing from them: at least
    RESCUE_SHARE of the page, and at least one."""
    if not anchor_window_ids:
        return False
    kth = rows[-1][1] if len(rows) == params["k"] else float("-inf")
    source = (
        "annotations_window a JOIN annotations_window w ON w.recording_id = a.recording_id "
        "AND w.model_id = a.model_id AND w.start_s >= a.start_s - %(reach)s AND w.start_s <= a.start_s + %(reach)s"
    )
    sql = nearest_sql(source, "a.id = ANY(%(anchors)s)", model, where.all, per_recording=per_recording)
    with bound_cursor(raw) as cursor:
        cursor.execute(sql, {**params, "anchors": list(anchor_window_ids), "reach": NEIGHBOURHOOD_S})
        neighbours = cursor.fetchall()
    found = {row[2] if per_recording else row[0] for row in rows}
    missing = sum(
        score > kth + SCORE_TOLERANCE and (recording if per_recording else window_id) not in found
        for window_id, score, recording in neighbours
    )
    return missing >= max(1, math.ceil(RESCUE_SHARE * params["k"]))
