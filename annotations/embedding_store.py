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
from psycopg.adapt import Loader
from psycopg.pq import Format

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
    name: str,
    version: str,
    embedding_dim: int,
    window_s: float,
    hop_s: float,
    sample_rate: int,
    class_names: Sequence[str] = (),
) -> EmbeddingModel:
    """Find or create the row that names a model and its framing, and its output classes."""
    model, _ = EmbeddingModel.objects.get_or_create(
        name=name,
        version=version,
        window_s=window_s,
        hop_s=hop_s,
        sample_rate=sample_rate,
        defaults={"embedding_dim": embedding_dim, "class_names": list(class_names)},
    )
    if model.embedding_dim != embedding_dim:
        raise ValueError(f"{model} is registered with {model.embedding_dim} dimensions, not {embedding_dim}")
    if class_names and not model.class_names:  # a row registered before classes were kept
        model.class_names = list(class_names)
        EmbeddingModel.objects.filter(pk=model.pk).update(class_names=model.class_names)
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
        # Fresh statistics, or right after a first bulk load the planner still believes the
        # table is tiny and sorts every row instead of using the index (measured: 233 ms
        # instead of 10 ms for 20,000 windows, bench/search_page.py).
        cursor.execute("ANALYZE annotations_window, annotations_recording, annotations_deployment")
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
    recording_id: int,
    model: EmbeddingModel,
    starts_s: np.ndarray,
    ends_s: np.ndarray,
    embeddings: np.ndarray,
    top_classes: np.ndarray | None = None,
    top_logits: np.ndarray | None = None,
) -> int:
    """Replace a recording's windows for ``model``, atomically.

    starts_s, ends_s: float64 [N]; embeddings: float32 [N, model.embedding_dim];
    top_classes: int [N, K] indices into model.class_names, best first, and top_logits:
    float [N, K], or both None for a model without classes.
    """
    if embeddings.shape != (len(starts_s), model.embedding_dim):
        raise ValueError(f"embeddings of shape {embeddings.shape} do not fit {len(starts_s)} windows of {model}")
    if (top_classes is None) != (top_logits is None):
        raise ValueError("give both top_classes and top_logits, or neither")
    # Lists, converted at once: one NumPy call instead of one per window.
    classes = top_classes.tolist() if top_classes is not None else [None] * len(starts_s)
    logits = top_logits.tolist() if top_logits is not None else [None] * len(starts_s)
    with transaction.atomic():
        Window.objects.filter(recording_id=recording_id, model=model).delete()
        rows = (
            (recording_id, model.pk, float(start), float(end), embedding, window_classes, window_logits)
            for start, end, embedding, window_classes, window_logits in zip(
                starts_s, ends_s, embeddings, classes, logits, strict=True
            )
        )
        return copy_rows(
            Window._meta.db_table,
            ["recording_id", "model_id", "start_s", "end_s", "embedding", "top_classes", "top_logits"],
            ["bigint", "bigint", "double precision", "double precision", "vector", "integer[]", "double precision[]"],
            rows,
        )


class _VectorBytesLoader(Loader):
    """Leaves a binary ``vector`` as its bytes, so that a whole batch is decoded by one
    NumPy call (``_stack_vectors``) instead of one Python object per row."""

    format = Format.BINARY

    def load(self, data) -> bytes:
        return bytes(data)


def _binary_vector_cursor(server_side_name: str = "") -> psycopg.Cursor | psycopg.ServerCursor:
    """A cursor for reading vectors in binary: parsing them from text costs more than using them.

    Django's connection makes client-side cursors, which cannot return binary, so this
    makes its own. A named one is server-side and WITH HOLD, so that it lives outside a
    transaction and whatever is written between its chunks is visible to others at once.
    """
    raw = raw_connection()
    cursor = raw.cursor(name=server_side_name, withhold=True, binary=True) if server_side_name else psycopg.Cursor(raw)
    cursor.adapters.register_loader("vector", _VectorBytesLoader)
    return cursor


def _stack_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """pgvector's binary vectors (int16 dim, int16 unused, dim big-endian float32) -> float32 [N, dim]."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    if raw.size != len(blobs) * (4 + 4 * dim):
        raise ValueError(f"embeddings are not all {dim}-dimensional")
    return raw.reshape(len(blobs), 4 + 4 * dim)[:, 4:].copy().view(">f4").astype(np.float32)


def window_embeddings(window_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Embeddings of the given windows: {window_id: float32 [dim]}."""
    with _binary_vector_cursor() as cursor:
        cursor.execute(
            f"SELECT id, embedding FROM {Window._meta.db_table} WHERE id = ANY(%s)", [list(window_ids)], binary=True
        )
        rows = cursor.fetchall()
    if not rows:
        return {}
    embeddings = _stack_vectors([row[1] for row in rows], (len(rows[0][1]) - 4) // 4)
    return {row[0]: embedding for row, embedding in zip(rows, embeddings, strict=True)}


def window_matrix(window_ids: Sequence[int], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Recording ids int64 [N] and embeddings float32 [N, dim] of the windows, in the given order.

    One binary query for both: training reads thousands of windows and nothing else.
    """
    with _binary_vector_cursor() as cursor:
        cursor.execute(
            f"SELECT w.id, w.recording_id, w.embedding FROM unnest(%s::bigint[]) WITH ORDINALITY AS q(id, n) "
            f"JOIN {Window._meta.db_table} w ON w.id = q.id ORDER BY q.n",
            [list(window_ids)],
            binary=True,
        )
        rows = cursor.fetchall()
    if len(rows) != len(window_ids):
        missing = set(window_ids) - {row[0] for row in rows}
        raise LookupError(f"windows {sorted(missing)[:5]} no longer exist")
    recording_ids = np.fromiter((row[1] for row in rows), dtype=np.int64, count=len(rows))
    return recording_ids, _stack_vectors([row[2] for row in rows], dim)


def iter_deployment_embeddings(
    deployment_id: int, model: EmbeddingModel, chunk_size: int = 4096
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a deployment's windows of one model in chunks, never all in memory.

    Yields (window_ids int64 [n], embeddings float32 [n, dim]) with n <= chunk_size.
    """
    with _binary_vector_cursor(f"deployment_embeddings_{deployment_id}") as cursor:
        cursor.execute(
            f"SELECT w.id, w.embedding FROM {Window._meta.db_table} w "
            "JOIN annotations_recording r ON r.id = w.recording_id "
            "WHERE r.deployment_id = %s AND w.model_id = %s ORDER BY w.id",
            [deployment_id, model.pk],
        )
        while rows := cursor.fetchmany(chunk_size):
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            yield ids, _stack_vectors([row[1] for row in rows], model.embedding_dim)
