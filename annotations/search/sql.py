"""SQL that every path shares: windows compared with the query by cosine."""

from __future__ import annotations

from annotations.models import EmbeddingModel


def distance_sql(model: EmbeddingModel) -> str:
    dim = int(model.embedding_dim)
    return f"w.embedding::halfvec({dim}) <=> %(query)s::halfvec({dim})"


def nearest_sql(
    source: str,
    where: str,
    model: EmbeddingModel,
    conditions: list[str],
    by_index: bool,
    limit: str = "k",
    per_recording: bool = False,
) -> str:
    """The best windows ``w`` of ``source`` passing ``where`` and ``conditions``, as many as
    the parameter ``limit`` says (none: all, in order, for a cursor to read as far as it
    needs): ordered by the distance operator, which the HNSW index serves, or (exact) by
    the score already computed, so that each row's distance is computed once. Rows are
    (id, score, recording_id); ``per_recording`` (exact only) keeps each recording's best."""
    distance = distance_sql(model)
    rows = (
        f"SELECT w.id, 1 - ({distance}) AS score, w.recording_id FROM {source} WHERE {where} "
        "AND NOT (w.id = ANY(%(exclude)s)) " + "".join(f"AND {condition} " for condition in conditions)
    )
    bound = f" LIMIT %({limit})s" if limit else ""
    if by_index:
        return f"{rows}ORDER BY {distance}{bound}"
    if per_recording:
        rows = f"SELECT DISTINCT ON (recording_id) * FROM ({rows}) scored ORDER BY recording_id, score DESC"
        return f"SELECT * FROM ({rows}) best ORDER BY score DESC{bound}"
    return f"{rows}ORDER BY score DESC{bound}"
