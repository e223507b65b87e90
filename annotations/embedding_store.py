"""Writing and reading embeddings in PostgreSQL + pgvector.

Windows are written with psycopg's binary COPY (the ORM's ``bulk_create`` is an order
of magnitude slower for vectors), and each embedding model gets a partial HNSW index
over ``embedding::vector(dim)``: one ``vector`` column holds models of every dimension
while searches stay on an index of one model.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import psycopg
from django.db import connection, transaction
from pgvector.psycopg import register_vector

from annotations.models import EmbeddingModel, Window

_registered_connections: weakref.WeakSet = weakref.WeakSet()


def raw_connection() -> psycopg.Connection:
    """Django's psycopg connection, with pgvector's types registered (once per connection)."""
    connection.ensure_connection()
    raw = connection.connection
    if raw not in _registered_connections:
        register_vector(raw)
        _registered_connections.add(raw)
    return raw


def index_name(model: EmbeddingModel) -> str:
    return f"window_embedding_hnsw_model_{model.pk}"


def register_embedding_model(
    name: str, version: str, embedding_dim: int, window_s: float, hop_s: float, sample_rate: int
) -> EmbeddingModel:
    """Find or create the row that names a model and its framing."""
    model, _ = EmbeddingModel.objects.get_or_create(
        name=name,
        version=version,
        window_s=window_s,
        hop_s=hop_s,
        sample_rate=sample_rate,
        defaults={"embedding_dim": embedding_dim},
    )
    if model.embedding_dim != embedding_dim:
        raise ValueError(f"{model} is registered with {model.embedding_dim} dimensions, not {embedding_dim}")
    return model


def has_search_index(model: EmbeddingModel) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [index_name(model)])
        return cursor.fetchone()[0]


def ensure_search_index(model: EmbeddingModel) -> bool:
    """Build the model's partial HNSW index if it is missing; returns whether it was built.

    Built after a bulk ingest rather than before it: every row COPYed into an indexed
    table pays for an HNSW insertion (measured here: ~100 rows/s instead of thousands).
    Until it exists, searches scan exactly. Outside a transaction it is built
    CONCURRENTLY, so ingest and labeling go on meanwhile.
    """
    if has_search_index(model):
        return False
    concurrently = "" if connection.in_atomic_block else "CONCURRENTLY"
    with connection.cursor() as cursor:
        if connection.in_atomic_block:
            # Inside a transaction: check deferred foreign keys now, or CREATE INDEX refuses to run.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        # pk and dimension are integers from our own table: safe to format into DDL.
        cursor.execute(
            f"CREATE INDEX {concurrently} IF NOT EXISTS {index_name(model)} ON {Window._meta.db_table} "
            f"USING hnsw ((embedding::vector({int(model.embedding_dim)})) vector_cosine_ops) "
            f"WHERE model_id = {int(model.pk)}"
        )
    return True


def copy_rows(table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[Sequence]) -> int:
    """Binary COPY ``rows`` into ``table``, in the caller's transaction. Returns the row count."""
    count = 0
    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT BINARY)"
    with raw_connection().cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def replace_windows(
    recording_id: int, model: EmbeddingModel, starts_s: np.ndarray, ends_s: np.ndarray, embeddings: np.ndarray
) -> int:
    """Replace a recording's windows for ``model``, atomically.

    starts_s, ends_s: float64 [N]; embeddings: float32 [N, model.embedding_dim].
    """
    if embeddings.shape != (len(starts_s), model.embedding_dim):
        raise ValueError(f"embeddings of shape {embeddings.shape} do not fit {len(starts_s)} windows of {model}")
    with transaction.atomic():
        Window.objects.filter(recording_id=recording_id, model=model).delete()
        rows = (
            (recording_id, model.pk, float(start), float(end), embedding)
            for start, end, embedding in zip(starts_s, ends_s, embeddings, strict=True)
        )
        return copy_rows(
            Window._meta.db_table,
            ["recording_id", "model_id", "start_s", "end_s", "embedding"],
            ["bigint", "bigint", "double precision", "double precision", "vector"],
            rows,
        )


def window_embeddings(window_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Embeddings of the given windows: {window_id: float32 [dim]}."""
    # Binary transfer: parsing vectors from text costs more than using them.
    # (Django's connection makes client-side cursors, which cannot return binary.)
    with psycopg.Cursor(raw_connection()) as cursor:
        cursor.execute(
            f"SELECT id, embedding FROM {Window._meta.db_table} WHERE id = ANY(%s)", [list(window_ids)], binary=True
        )
        return {row[0]: row[1].to_numpy() for row in cursor.fetchall()}


def iter_deployment_embeddings(
    deployment_id: int, model: EmbeddingModel, chunk_size: int = 4096
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a deployment's windows of one model in chunks, never all in memory.

    Yields (window_ids int64 [n], embeddings float32 [n, dim]) with n <= chunk_size.
    """
    raw = raw_connection()
    # WITH HOLD keeps the server-side cursor alive outside a transaction, so progress
    # written between chunks is visible to others at once. Binary transfer: parsing
    # vectors from text cost more than scoring them (bench/inference.py).
    with raw.cursor(name=f"deployment_embeddings_{deployment_id}", withhold=True, binary=True) as cursor:
        cursor.execute(
            f"SELECT w.id, w.embedding FROM {Window._meta.db_table} w "
            "JOIN annotations_recording r ON r.id = w.recording_id "
            "WHERE r.deployment_id = %s AND w.model_id = %s ORDER BY w.id",
            [deployment_id, model.pk],
        )
        while rows := cursor.fetchmany(chunk_size):
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            yield ids, np.stack([row[1].to_numpy() for row in rows])
