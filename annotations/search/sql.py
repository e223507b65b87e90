"""SQL that every path shares: windows compared with the query by cosine."""

from __future__ import annotations

from annotations.models import EmbeddingModel


def distance_sql(model: EmbeddingModel) -> str:
    """Cosine distance of ``w`` from the parameter ``query``, a float32 array sent in binary:
    as text, 1,024 numbers took 0.4 ms to format, a tenth of a search's own time."""
    dim = int(model.embedding_dim)
    return f"w.embedding::halfvec({dim}) <=> %(query)b::halfvec({dim})"


def nearest_sql(
    source: str,
    where: str,
    model: EmbeddingModel,
    conditions: list[str],
    index_order: str = "",
    limit: str = "k",
    per_recording: bool = False,
) -> str:
    """The best windows ``w`` of ``source`` passing ``where`` and ``conditions``, as many as
    the parameter ``limit`` says (none: all, in order, for a cursor to read as far as it
    needs): in the order of ``index_order``, an expression an HNSW index serves (a pool,
    whose exact scores the caller sorts), or else by exact score, computed once per row.
    Rows are (id, score, recording_id); ``per_recording`` (exact order only) keeps each
    recording's best."""
    rows = (
        f"SELECT w.id, 1 - ({distance_sql(model)}) AS score, w.recording_id FROM {source} WHERE {where} "
        "AND NOT (w.id = ANY(%(exclude)s)) " + "".join(f"AND {condition} " for condition in conditions)
    )
    bound = f" LIMIT %({limit})s" if limit else ""
    if index_order:
        return f"{rows}ORDER BY {index_order}{bound}"
    if per_recording:
        rows = f"SELECT DISTINCT ON (recording_id) * FROM ({rows}) scored ORDER BY recording_id, score DESC"
        return f"SELECT * FROM ({rows}) best ORDER BY score DESC{bound}"
    return f"{rows}ORDER BY score DESC{bound}"
