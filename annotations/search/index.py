"""The index path: the project's HNSW index, and the windows written since its build."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import psycopg

from annotations.embedding_store import bound_cursor
from annotations.models import EmbeddingModel, Project
from annotations.search.filters import WindowConditions
from annotations.search.sql import nearest_sql
from annotations.search_index import HOUR_BAND_S, IndexState, hour_band_predicate, newest_window_id, zones_changed
from annotations.search_probe import IndexProbe
from annotations.search_reduction import reduce_query

# A filter of at most this many deployments, each with a graph of its own, walks their
# graphs one after another (about 3-4 ms each at 50,000 windows); over more, the
# project's graph filtered costs less.
PLACE_GRAPHS_MAX = 8
# A time of day over at most this many bands (HOUR_BAND_S) walks their graphs: up to
# eight hours, or twelve that begin and end on a band's edge.
HOUR_GRAPHS_MAX = 3
DAY_S = 24 * 3600


@dataclasses.dataclass(frozen=True)
class GraphPart:
    """A partial graph on the index's table that a search walks instead of the project's
    graph: a deployment's, or a band of the time of day's (``annotations.search_index``)."""

    where: str  # SQL over the index's table ``v``: the partial index's predicate, and any clip of it
    deployment_id: int | None = None  # a deployment's graph
    seconds: tuple[int, int] | None = None  # a band's graph: the local seconds of the day [from, to) it keeps

    def holds(self, deployments: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """bool [n]: which windows of deployments int64 [n], local seconds of the day
        int64 [n] (-1 where unknown), pass ``where``."""
        if self.seconds is not None:
            return (seconds >= self.seconds[0]) & (seconds < self.seconds[1])
        return deployments == self.deployment_id


# hnsw.ef_search: pgvector's default of 40 would cap a top-50 at 40 rows. The iterative
# scan reads on past it to the pool (bench/scale.py at 1M: ef_search k and a pool of 2 k
# found what ef_search 3 k and a pool of 3 k did, unfiltered, 2-4 ms sooner).
EF_SEARCH_MIN = 100
# Some searches explore further (and the scan may read 100 times as many tuples, pgvector's
# max_scan_tuples, before it gives up):
# - a filtered one, or the hits that pass the filter come back short;
# - a query with no windows of its own (an uploaded clip), which has no neighbourhood to
#   check its answer by and more often lands where the graph strands it (bench/scale.py at
#   1M, 300 clips: at 100, 5 found under 0.8 of their best 100; at 400, 3, ~2 ms more);
# - the best window per recording, which reads on until it holds enough recordings (at
#   1M, 30 queries: at 100, tie-tolerant recall 0.959, the worst 0.78, 150 of the best
#   recordings missing; at 400 with PER_RECORDING_SCAN_MAX 40,000, 0.988 and 0.89, in no
#   more time: a better order reaches the recordings sooner).
WIDE_EF_SEARCH_MIN = 400
EF_SEARCH_MAX = 1000  # pgvector's limit; its iterative scan reads on past it
# The index ranks by reduced vectors (annotations.search_reduction): this many times k of
# its best are compared exactly. Under a filter its iterative scan also stops at the first
# rows that pass, and closer ones often come in the next batch. bench/scale.py at 1M: 2 k
# kept tie-tolerant recall >= 0.988 (3 k: 0.995) and cut filtered searches of 11-15% from
# 31-77 ms to 25-57 ms.
POOL_PER_K = 2
# The best window per recording: the index's nearest windows are read in batches until
# they hold this many times k recordings (or PER_RECORDING_SCAN_MAX windows were read).
PER_RECORDING_MARGIN = 1.2
PER_RECORDING_BATCH = 500
PER_RECORDING_SCAN_MAX = 40_000


def index_sql(
    project: Project,
    model: EmbeddingModel,
    index: IndexState,
    where: WindowConditions,
    newest_id: int | None,
    per_recording: bool = False,
    graphs: Sequence[int] = (),
) -> tuple[str, str | None]:
    """(the project's HNSW index over its windows up to ``index.max_window_id``, the
    ``pool`` best by reduced vectors that pass ``where``, with exact scores; an exact scan
    of the windows written since, ``k`` of them, or None when there are none:
    ``annotations.search_index``). For ``per_recording`` the index part has no limit (a
    cursor reads it as far as it needs) and the newer part is each recording's best.

    Filters of place and time are tested on the index's own table, where it carries them:
    the scan returns 5-20 rows for each that passes a filter of 10-15%, and each row
    joined to its window first cost a read of that window's 2 KB row. The reduced query
    is the parameter ``reduced_query``.

    ``graphs``: the partial graphs that answer instead (``place_graphs``,
    ``hour_graphs``), each its own pool, all of them merged by the caller; a band's graph
    tests the time of day by its own clip.
    """
    project_id, model_id, bound = int(project.pk), int(model.pk), int(index.max_window_id)
    # A window replaced since the build (a recording embedded again) has left the window
    # table: its row in the index's table finds no partner.
    indexed = f"{index.vector_table} v JOIN annotations_window w ON w.id = v.window_id"
    order = f"v.reduced <=> %(reduced_query)b::halfvec({index.reduction.dim})"
    limit = "" if per_recording else "pool"
    conditions = where.on("v") if index.places and where.placed_in_time_only else where.all
    if graphs:
        # Each part's SQL holds its partial index's predicate, so the planner walks that graph.
        index_part = " UNION ALL ".join(
            f"({nearest_sql(indexed, part.where, model, where.on('v', hours=part.seconds is None), order, limit)})"
            for part in graphs
        )
    else:
        index_part = nearest_sql(indexed, "true", model, conditions, index_order=order, limit=limit)
    if newest_id is None or newest_id <= bound:
        return index_part, None  # nothing written since the build
    # Bounded on both sides: whichever index the planner walks, it stops at the newest window.
    newer = f"w.project_id = {project_id} AND w.model_id = {model_id} AND w.id > {bound} AND w.id <= {int(newest_id)}"
    return index_part, nearest_sql("annotations_window w", newer, model, where.all, per_recording=per_recording)


def index_rows(
    raw: psycopg.Connection,
    project: Project,
    model: EmbeddingModel,
    index: IndexState,
    where: WindowConditions,
    params: dict,
    per_recording: bool,
    anchored: bool = True,
    widest: bool = False,
    graphs: Sequence[GraphPart] = (),
) -> list[tuple[int, float, int]]:
    """Rows (id, score, recording_id) of the project's index and its newer windows, in the
    caller's transaction: POOL_PER_K times k windows, the best by the index's reduced
    vectors, with exact scores; or windows enough to hold k recordings' best
    (``per_recording``), read through a cursor in batches. ``anchored``: the query has
    windows of its own, whose neighbourhood checks the answer (``safety_net``);
    ``widest``: the graph searched as widely as pgvector allows (EF_SEARCH_MAX), for a
    query whose first answer failed its check (``annotations.search_probe``); ``graphs``:
    the partial graphs that answer (``index_sql``), one at most for ``per_recording``."""
    if len(graphs) > 1 and per_recording:
        raise ValueError("each recording's best is read in order through one graph")
    # Partial graphs explore as widely as a filtered search does: at 5M, a deployment's
    # graph of 250,000 windows searched at ef_search 100 left background queries (a recorder's
    # near-alike hours) with 0.01-0.46 of their nearest windows.
    k, filtered = params["k"], bool(where.all)
    pool = POOL_PER_K * k
    floor = WIDE_EF_SEARCH_MIN if filtered or per_recording or not anchored else EF_SEARCH_MIN
    ef_search = EF_SEARCH_MAX if widest else min(max(k, floor), EF_SEARCH_MAX)
    params["pool"] = pool
    params["reduced_query"] = reduce_query(params["query"], index.reduction)
    newest_id = newest_window_id(project, model)
    index_part, newer_part = index_sql(project, model, index, where, newest_id, per_recording, graphs)
    with bound_cursor(raw) as cursor:
        # The index part must walk the HNSW index. Under a filter the planner guesses a few
        # thousand rows pass (4,032 for an hours filter that 107,000 pass, at 1M), and past a
        # pool of a few hundred it prefers to read them all by primary key and sort them:
        # 0.9 s instead of 70 ms (bench/scale.py --hop 1.5, a grouped search's pool of 640).
        # Without a sort, only the index's order is left. Sorts come back for the rest of
        # the transaction (the newer windows and the safety net). One statement: each
        # round trip costs a search about 0.15 ms.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %s, true), set_config('enable_sort', 'off', true)",
            [str(ef_search), str(100 * ef_search)],
        )
        rows = []
        if not per_recording:
            cursor.execute(index_part, params)
            rows += cursor.fetchall()
    if per_recording:
        rows += _windows_per_recording(raw, index_part, params)
    with bound_cursor(raw) as cursor:
        cursor.execute("SELECT set_config('enable_sort', 'on', true)")
        if newer_part:
            cursor.execute(newer_part, params)
            rows += cursor.fetchall()
    return rows


def _windows_per_recording(raw: psycopg.Connection, index_part: str, params: dict) -> list[tuple[int, float, int]]:
    """The index part read through a cursor until its rows hold enough recordings."""
    # The iterative scan goes on as the cursor reads: batches until k recordings are held,
    # and a margin for the scan's relaxed order.
    rows = []
    with bound_cursor(raw, "windows_per_recording") as streamed:
        streamed.execute(index_part, params)
        recordings: set[int] = set()
        read = 0
        while len(recordings) < PER_RECORDING_MARGIN * params["k"] and read < PER_RECORDING_SCAN_MAX:
            batch = streamed.fetchmany(PER_RECORDING_BATCH)
            if not batch:
                break
            read += len(batch)
            rows += batch
            recordings.update(row[2] for row in batch)
    return rows


def place_graphs(index: IndexState, where: WindowConditions, deployment_id: int | None, site: bool) -> list[GraphPart]:
    """The graphs of the deployments of a search filtered to ``deployment_id`` or a site
    (``where``'s ``site_deployments``), when each of them has one and they are at most
    PLACE_GRAPHS_MAX; otherwise none. A deployment without a graph (small, or ingested
    since the build) leaves the search to the project's graph."""
    if not (index.places and index.deployment_graphs) or (deployment_id is None and not site):
        return []
    deployments = set(where.params["site_deployments"]) if site else {deployment_id}
    if deployment_id is not None:
        deployments &= {deployment_id}
    if not deployments or len(deployments) > PLACE_GRAPHS_MAX or not deployments <= index.deployment_graphs:
        return []
    return [GraphPart(f"v.deployment_id = {int(d)}", deployment_id=int(d)) for d in sorted(deployments)]


def hour_graphs(index: IndexState, where: WindowConditions) -> list[GraphPart]:
    """The graphs of the bands of the time of day that a search's hour filter touches, each
    clipped to the hours it keeps, when each band has one, they are at most
    HOUR_GRAPHS_MAX, and every deployment's time zone is the one its table's local times
    were worked out in; otherwise none."""
    if not (index.hour_graphs and index.local_zones and where.seconds and where.placed_in_time_only):
        return []
    if zones_changed(index.local_zones, where.zones):
        return []  # its local times of day are not the deployments' now, until the next build
    start, end = where.seconds
    ranges = [(start, end)] if start <= end else [(start, DAY_S), (0, end)]  # 22 to 4 wraps midnight
    parts = []
    for first, last in ranges:
        for band in range(first // HOUR_BAND_S, -(-last // HOUR_BAND_S)):
            low, high = max(first, band * HOUR_BAND_S), min(last, (band + 1) * HOUR_BAND_S)
            where_sql = hour_band_predicate(band, "v.local_second")
            if low > band * HOUR_BAND_S:
                where_sql += f" AND v.local_second >= {low}"
            if high < (band + 1) * HOUR_BAND_S:
                where_sql += f" AND v.local_second < {high}"
            parts.append((band, GraphPart(where_sql, seconds=(low, high))))
    if not parts or len(parts) > HOUR_GRAPHS_MAX or any(band not in index.hour_graphs for band, _ in parts):
        return []
    return [part for _, part in parts]


# Each index's probe windows' deployments and local seconds of the day, read once per
# process (index names are unique per build): partial graphs are checked against the
# probe windows they hold.
_PROBE_PLACES: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def probe_of_graphs(raw: psycopg.Connection, index: IndexState, graphs: Sequence[GraphPart]) -> IndexProbe:
    """The probe windows (``index.probe``) that ``graphs`` hold, in the caller's transaction:
    their density is the project's, so an answer from a partial graph that settled in the
    wrong part of it misses them as an unfiltered one misses the project's."""
    places = _PROBE_PLACES.get(index.index_name)
    if places is None:
        # A table built before it carried local times of day has no hours' graphs.
        seconds = "local_second" if index.local_zones else "NULL::integer"
        with bound_cursor(raw) as cursor:
            cursor.execute(
                f"SELECT window_id, deployment_id, {seconds} FROM {index.vector_table} WHERE window_id = ANY(%(ids)s)",
                {"ids": index.probe.window_ids.tolist()},
            )
            of_window = {window_id: (deployment, second) for window_id, deployment, second in cursor.fetchall()}
        found = [of_window.get(int(w), (-1, None)) for w in index.probe.window_ids]
        places = (
            np.array([deployment for deployment, _ in found], np.int64),
            np.array([-1 if second is None else second for _, second in found], np.int64),
        )
        if len(_PROBE_PLACES) >= 32:
            _PROBE_PLACES.clear()
        _PROBE_PLACES[index.index_name] = places
    held = np.zeros(len(index.probe.window_ids), bool)
    for part in graphs:
        held |= part.holds(*places)
    return index.probe.subset(held)
