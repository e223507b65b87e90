"""SQL that every path shares: windows compared with the query by cosine."""

from __future__ import annotations

from annotations.models import EmbeddingModel


def distance_sql(model: EmbeddingModel) -> str:
    dim = int(model.embedding_dim)
    return f"w.embedding::halfvec({dim}) <=> %(query)s::halfvec({dim})"


def nearest_sql(
    source: str, where: str, model: EmbeddingModel, conditions: list[str], by_index: bool, limit: str = "k"
) -> str:
    """The best windows ``w`` of ``source`` passing ``where`` and ``conditions``, as many as
    the parameter ``limit`` says: ordered by the distance operator, which the HNSW index
    serves, or (exact) by the score already computed, so that each row's distance is
    computed once."""
    distance = distance_sql(model)
    return (
        f"SELECT w.id, 1 - ({distance}) AS score FROM {source} WHERE {where} "
        "AND NOT (w.id = ANY(%(exclude)s)) "
        + "".join(f"AND {condition} " for condition in conditions)
        + f"ORDER BY {distance if by_index else 'score DESC'} LIMIT %({limit})s"
    )
