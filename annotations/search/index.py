"""The index path: the project's HNSW index, and the windows written since its build."""

from __future__ import annotations

from annotations.models import EmbeddingModel, Project
from annotations.search.sql import nearest_sql

# hnsw.ef_search: pgvector's default of 40 would cap a top-50 at 40 rows. A filtered query
# explores further, or the hits that pass the filter come back short.
EF_SEARCH_MIN = 100
FILTERED_EF_SEARCH_MIN = 400
# Under a filter, this many times k from the index: its iterative scan stops at the first
# rows that pass, and closer ones often come in the next batch. bench/scale.py, 8% hour and
# date filters at 1M: recall@100 0.94 with k alone, 0.955 with 1.5 k; the scan's time
# grows with the pool (each row that passes costs the rows it skipped), not with ef_search.
FILTERED_POOL = 1.6


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
    index_part = nearest_sql(table, indexed, model, conditions, by_index=True, limit="pool")
    if newest_id is None or newest_id <= bound:
        return index_part  # nothing written since the build
    # Bounded on both sides: whichever index the planner walks, it stops at the newest window.
    newer = f"w.project_id = {project_id} AND w.model_id = {model_id} AND w.id > {bound} AND w.id <= {int(newest_id)}"
    return f"({index_part}) UNION ALL ({nearest_sql(table, newer, model, conditions, by_index=False)})"
