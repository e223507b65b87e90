"""Writing and reading embeddings in PostgreSQL + pgvector.

Windows are written with psycopg's binary COPY (the ORM's ``bulk_create`` is an order
of magnitude slower for vectors). Embeddings are stored as float16 ``halfvec`` and read
and written in pgvector's binary form, encoded and decoded for a whole batch by one NumPy
call. Search indexes are ``annotations.search_index``'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import weakref
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, router, transaction
from pgvector import HalfVector
from pgvector.psycopg import register_vector
from psycopg.adapt import Loader
from psycopg.pq import Format

from annotations.label_carryover import labels_on_recording, restore_labels
from annotations.models import EmbeddingModel, Project, Recording, Window
from annotations.probes import unit_rows

_registered_connections: weakref.WeakSet = weakref.WeakSet()


def read_alias() -> str:
    """The database that serves reads now: the primary, or a hot standby inside
    ``perch_agile.replicas.standby_reads`` (Django's router decides)."""
    return router.db_for_read(Window)


def raw_connection(alias: str = DEFAULT_DB_ALIAS) -> psycopg.Connection:
    """Django's psycopg connection, with pgvector's types registered (once per connection)."""
    connections[alias].ensure_connection()
    raw = connections[alias].connection
    if raw not in _registered_connections:
        register_vector(raw)
        _registered_connections.add(raw)
    return raw


def bound_cursor(raw: psycopg.Connection, name: str = "") -> psycopg.Cursor | psycopg.ServerCursor:
    """A cursor on ``raw`` that sends parameters apart from the SQL, each in the format its
    placeholder asks for (``%b``: binary). Django's cursors bind on the client, formatting
    every parameter into the text: a 1,024-d query vector took 0.6 ms each time, three
    times a search. A ``name`` makes it a server-side cursor."""
    return psycopg.ServerCursor(raw, name) if name else psycopg.Cursor(raw)


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
    """Replace a recording's windows for ``model``, atomically, and note their number and
    model on the recording.

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
    recording = Recording.objects.select_related("deployment").get(pk=recording_id)
    started = recording.started_at
    sketches, sketch_norms = sketch_binary(embeddings, sketch_center(model, embeddings))
    with transaction.atomic():
        # Labels stay on their spans of time, on whichever new windows cover them.
        held = labels_on_recording(recording_id, model.pk)
        Window.objects.filter(recording_id=recording_id, model=model).delete()
        rows = (
            (
                recording_id,
                model.pk,
                recording.deployment.project_id,
                recording.deployment_id,
                float(start),
                float(end),
                None if started is None else started + dt.timedelta(seconds=float(start)),
                embedding,
                sketch,
                sketch_norm,
                window_classes,
                window_logits,
            )
            for start, end, embedding, sketch, sketch_norm, window_classes, window_logits in zip(
                starts_s, ends_s, halfvec_binary(embeddings), sketches, sketch_norms, classes, logits, strict=True
            )
        )
        # What searches count to choose their path (annotations.search.candidate_windows).
        Recording.objects.filter(pk=recording_id).update(windows_done=len(starts_s), embedding_model=model)
        written = copy_rows(
            Window._meta.db_table,
            WINDOW_COLUMNS,
            ["bigint", "bigint", "bigint", "bigint", "double precision", "double precision", "timestamptz", "bytea"]
            + ["bytea", "double precision", "integer[]", "double precision[]"],
            rows,
        )
        if held:
            new = Window.objects.filter(recording_id=recording_id, model=model).order_by("start_s")
            spans = np.array(list(new.values_list("pk", "start_s", "end_s")), dtype=np.float64).reshape(-1, 3)
            restore_labels(held, spans[:, 0].astype(np.int64), spans[:, 1], spans[:, 2])
        return written


WINDOW_COLUMNS = [
    "recording_id",
    "model_id",
    "project_id",
    "deployment_id",
    "start_s",
    "end_s",
    "started_at",
    "embedding",
    "sketch",
    "sketch_norm",
    "top_classes",
    "top_logits",
]


def sync_window_start_times(recording: Recording) -> int:
    """Give a recording's windows its (new) start time; returns how many were updated."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Window._meta.db_table} SET started_at = %s::timestamptz + start_s * interval '1 second' "
            "WHERE recording_id = %s",
            [recording.started_at, recording.pk],
        )
        return cursor.rowcount


def halfvec_binary(embeddings: np.ndarray) -> list[bytes]:
    """float [N, D] -> pgvector's binary ``halfvec`` of each row (int16 D, int16 unused,
    D big-endian float16), which binary COPY sends as it is (declared ``bytea``)."""
    n, dim = embeddings.shape
    rows = np.empty((n, 4 + 2 * dim), dtype=np.uint8)
    rows[:, :4] = np.frombuffer(np.array([dim, 0], dtype=">i2").tobytes(), dtype=np.uint8)
    rows[:, 4:] = np.ascontiguousarray(embeddings, dtype=">f2").view(np.uint8).reshape(n, 2 * dim)
    return [row.tobytes() for row in rows]


def sketch_center(model: EmbeddingModel, embeddings: np.ndarray) -> np.ndarray:
    """The model's sketch centre, float32 [D]: the mean of ``embeddings`` [N, D] scaled to
    unit length, when these are the model's first windows (whichever writer comes first
    sets it for all)."""
    if model.sketch_center is None:
        first = np.mean(unit_rows(embeddings), axis=0, dtype=np.float64).astype(np.float32)
        EmbeddingModel.objects.filter(pk=model.pk, sketch_center__isnull=True).update(sketch_center=first)
        model.sketch_center = EmbeddingModel.objects.values_list("sketch_center", flat=True).get(pk=model.pk)
    return center_array(model.sketch_center)


def center_array(center) -> np.ndarray:
    """A model's sketch_center as float32 [D] (the field holds a pgvector HalfVector)."""
    return np.asarray(center.to_numpy() if isinstance(center, HalfVector) else center, np.float32)


def sketch_residuals(embeddings: np.ndarray, center: np.ndarray) -> np.ndarray:
    """float32 [N, D]: each embedding [N, D], as stored (float16), scaled to unit length,
    less ``center`` [D]. Length-free, so a query sketches alike whatever its scale.

    Cosine follows from it exactly: with u = unit(x) = c + r, <u_q, u_x> = <u_q, c> +
    <r_q, r_x> - |r_x|^2 / 2 + (1 - |c|^2) / 2, so for one query windows rank by
    <r_q, r_x> - |r_x|^2 / 2 (``annotations.search.sketch`` estimates <r_q, r_x> from the
    signs of r and the lengths |r|).
    """
    stored = np.asarray(embeddings, np.float16).astype(np.float32)
    return unit_rows(stored) - np.asarray(center, np.float16).astype(np.float32)


def sketch_binary(embeddings: np.ndarray, center: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    """float [N, D] -> (PostgreSQL's binary ``bit`` of each row's sketch: int32 length in
    bits, then the signs of its residual, first dimension in the first byte's high bit;
    the residuals' lengths float64 [N])."""
    residuals = sketch_residuals(embeddings, center)
    n, dim = residuals.shape
    packed = np.packbits(residuals > 0, axis=1)
    length = np.frombuffer(np.array([dim], dtype=">i4").tobytes(), dtype=np.uint8)
    bits = [row.tobytes() for row in np.concatenate([np.broadcast_to(length, (n, 4)), packed], axis=1)]
    return bits, np.linalg.norm(residuals, axis=1).astype(np.float64)


def sketch_query(embedding: np.ndarray, center: np.ndarray) -> tuple[str, float]:
    """One embedding [D]'s sketch as a ``bit`` literal ('0110...') and its residual's length."""
    residual = sketch_residuals(embedding[None, :], center)[0]
    return "".join("1" if bit else "0" for bit in residual > 0), float(np.linalg.norm(residual))


class _VectorBytesLoader(Loader):
    """Leaves a binary ``halfvec`` as its bytes, so that a whole batch is decoded by one
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
    raw = raw_connection(DEFAULT_DB_ALIAS if server_side_name else read_alias())
    cursor = raw.cursor(name=server_side_name, withhold=True, binary=True) if server_side_name else psycopg.Cursor(raw)
    cursor.adapters.register_loader("halfvec", _VectorBytesLoader)
    return cursor


def _stack_vectors(blobs: Sequence[bytes], dim: int) -> np.ndarray:
    """pgvector's binary halfvecs (int16 dim, int16 unused, dim big-endian float16) -> float32 [N, dim]."""
    if not blobs:
        return np.zeros((0, dim), np.float32)
    raw = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    if raw.size != len(blobs) * (4 + 2 * dim):
        raise ValueError(f"embeddings are not all {dim}-dimensional")
    return raw.reshape(len(blobs), 4 + 2 * dim)[:, 4:].copy().view(">f2").astype(np.float32)


def window_embeddings(window_ids: Sequence[int]) -> dict[int, np.ndarray]:
    """Embeddings of the given windows: {window_id: float32 [dim]}."""
    return {window_id: embedding for window_id, (_, embedding) in _windows_with_models(window_ids).items()}


def project_window_embeddings(project_id: int, window_ids: Sequence[int]) -> dict[int, tuple[int, np.ndarray]]:
    """{window_id: (model_id, float32 [dim])} of those of the windows that are the
    project's (others are left out): a search's examples, checked and read in one query."""
    return _windows_with_models(window_ids, project_id)


def _windows_with_models(window_ids: Sequence[int], project_id: int | None = None) -> dict[int, tuple[int, np.ndarray]]:
    in_project = "" if project_id is None else "AND project_id = %s"
    with _binary_vector_cursor() as cursor:
        cursor.execute(
            f"SELECT id, model_id, embedding FROM {Window._meta.db_table} WHERE id = ANY(%s) {in_project}",
            [list(window_ids)] + ([] if project_id is None else [int(project_id)]),
            binary=True,
        )
        rows = cursor.fetchall()
    if not rows:
        return {}
    # Windows of several models (several widths) are stacked one width at a time.
    found = {}
    for dim in {(len(row[2]) - 4) // 2 for row in rows}:
        same = [row for row in rows if (len(row[2]) - 4) // 2 == dim]
        embeddings = _stack_vectors([row[2] for row in same], dim)
        found.update({row[0]: (row[1], embedding) for row, embedding in zip(same, embeddings, strict=True)})
    return found


def sample_window_ids(project: Project, model: EmbeddingModel, count: int, max_window_id: int) -> np.ndarray:
    """Up to ``count`` of the project's window ids (of ``model``, up to ``max_window_id``),
    int64 [<= count], ascending: drawn at random, the same draw for the same windows."""
    window_ids = np.array(
        Window.objects.filter(project=project, model=model, id__lte=max_window_id).values_list("id", flat=True),
        dtype=np.int64,
    )
    rng = np.random.default_rng(int(max_window_id))
    return np.sort(rng.choice(window_ids, min(count, len(window_ids)), replace=False))


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
    deployment_id: int, model: EmbeddingModel, chunk_size: int = 4096, unscored_by: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream a deployment's windows of one model in chunks, never all in memory; only
    those without stored scores of classifier ``unscored_by``, when given.

    Yields (window_ids int64 [n], embeddings float32 [n, dim]) with n <= chunk_size.
    """
    unscored = (
        ""
        if unscored_by is None
        else "AND NOT EXISTS (SELECT 1 FROM annotations_windowscore s "
        f"WHERE s.classifier_id = {int(unscored_by)} AND s.output_index = 0 AND s.window_id = w.id) "
    )
    with _binary_vector_cursor(f"deployment_embeddings_{deployment_id}") as cursor:
        # Through the recordings: their windows are found by one_window_per_start's index.
        cursor.execute(
            f"SELECT w.id, w.embedding FROM {Window._meta.db_table} w "
            "JOIN annotations_recording r ON r.id = w.recording_id "
            f"WHERE r.deployment_id = %s AND w.model_id = %s {unscored}ORDER BY w.id",
            [deployment_id, model.pk],
        )
        while rows := cursor.fetchmany(chunk_size):
            ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
            yield ids, _stack_vectors([row[1] for row in rows], model.embedding_dim)


@dataclasses.dataclass(frozen=True)
class WindowChunk:
    """Consecutive windows of one project and model, in id order.

    ids: int64 [n]; embeddings: float32 [n, dim]; deployment_ids: int64 [n]; started:
    n timezone-aware datetimes, None where a window's start is unknown.
    """

    ids: np.ndarray
    embeddings: np.ndarray
    deployment_ids: np.ndarray
    started: list[dt.datetime | None]


def iter_window_embeddings(
    project: Project, model: EmbeddingModel, max_window_id: int, chunk_size: int = 8192
) -> Iterator[WindowChunk]:
    """Stream a project's windows of one model up to ``max_window_id``, in id order, in
    chunks of at most ``chunk_size``, never all in memory. Each chunk is its own query,
    from where the last one ended (a cursor held across chunks would first copy every row
    aside)."""
    after = 0
    while True:
        with _binary_vector_cursor() as cursor:
            # "= ANY" keeps the order of window_project_model_id (newest_window_id says why).
            cursor.execute(
                f"SELECT id, embedding, deployment_id, started_at FROM {Window._meta.db_table} "
                "WHERE project_id = ANY(ARRAY[%s]::bigint[]) AND model_id = ANY(ARRAY[%s]::bigint[]) "
                "AND id > %s AND id <= %s ORDER BY project_id, model_id, id LIMIT %s",
                [project.pk, model.pk, after, max_window_id, chunk_size],
                binary=True,
            )
            rows = cursor.fetchall()
        if not rows:
            return
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        yield WindowChunk(
            ids=ids,
            embeddings=_stack_vectors([row[1] for row in rows], model.embedding_dim),
            deployment_ids=np.fromiter((row[2] for row in rows), dtype=np.int64, count=len(rows)),
            started=[row[3] for row in rows],
        )
        after = int(ids[-1])
