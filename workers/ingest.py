"""Ingest: decode a recording, cut it into model windows, embed them, store them.

The database holds the truth. A worker takes a recording under a PostgreSQL advisory
lock (released by the server when the worker dies, so a redelivered task can take it
again), and writes all of a recording's windows in one transaction, replacing any
earlier ones: a crash mid-file leaves nothing half-written, and a second run never
duplicates windows. One bad file is marked failed with its reason; the others go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import redis
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F
from django.utils import timezone

from annotations.audio import AudioError, AudioInfo, Framing, iter_resampled_blocks, iter_windows, probe
from annotations.deployments import UNFINISHED, file_fingerprint
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import ClipQuery, EmbeddingModel, Recording, RecordingStatus
from annotations.search_index import index_wanted, request_index_build
from workers.embedding_models import LoadedModel, WindowOutputs

logger = logging.getLogger(__name__)

# Advisory-lock namespace (first key) for recordings, so other locks cannot collide.
RECORDING_LOCK_NAMESPACE = 7_201
# Failures of the services, not of the audio: the task is retried (workers.tasks) rather
# than the recording marked failed.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.exceptions.ConnectionError)


@dataclasses.dataclass(frozen=True)
class EmbeddedAudio:
    """starts_s, ends_s: float64 [N]; outputs: the model's embeddings and top classes of the N windows."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    outputs: WindowOutputs


def model_row(model: LoadedModel) -> EmbeddingModel:
    spec = model.spec
    return register_embedding_model(
        spec.name, spec.version, spec.embedding_dim, spec.window_s, spec.hop_s, spec.sample_rate, model.class_names
    )


def embed_file(
    path: Path,
    model: LoadedModel,
    batch_size: int,
    on_batch=lambda windows_done: None,
    info: AudioInfo | None = None,
    channel: int | None = None,
    span_s: tuple[float, float | None] = (0.0, None),
) -> EmbeddedAudio:
    """Embed every window of an audio file; ``on_batch`` hears the running window count.
    ``info``: the file's header, where the caller has already probed it; ``channel``: the
    one channel to embed (None: the mix of all); ``span_s``: the part of the file to embed,
    (start, end or None for the rest), with window times counted from its start."""
    spec = model.spec
    framing = Framing.from_seconds(spec.sample_rate, spec.window_s, spec.hop_s)
    duration_s = (info or probe(path)).duration_s
    starts: list[int] = []
    chunks: list[WindowOutputs] = []
    blocks = iter_resampled_blocks(path, spec.sample_rate, channel, *span_s)
    batches = _batches(iter_windows(blocks, framing), batch_size)
    for batch_starts, batch in prefetched(batches):
        chunks.append(model.embed_windows(batch))
        starts.extend(batch_starts)
        on_batch(len(starts))
    starts_s = np.asarray(starts, dtype=np.float64) / spec.sample_rate
    ends_s = np.minimum(starts_s + spec.window_s, duration_s)
    return EmbeddedAudio(starts_s, ends_s, _concatenate(chunks, spec.embedding_dim))


def _concatenate(chunks: list[WindowOutputs], embedding_dim: int) -> WindowOutputs:
    if not chunks:
        return WindowOutputs(np.zeros((0, embedding_dim), np.float32))
    fields = (field.name for field in dataclasses.fields(WindowOutputs))
    return WindowOutputs(
        *(
            None if getattr(chunks[0], name) is None else np.concatenate([getattr(c, name) for c in chunks])
            for name in fields
        )
    )


def prefetched(items: Iterator, depth: int = 2) -> Iterator:
    """Produce ``items`` in a background thread, ``depth`` ahead: decoding and resampling
    (which release the GIL) overlap with the model working on the previous batch."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                buffer.put(item)
        except BaseException as error:  # re-raised in the consumer, where it can be handled
            buffer.put(error)
        buffer.put(done)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full buffer
            with contextlib.suppress(queue.Empty):
                buffer.get(timeout=0.1)


def _batches(windows: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    starts: list[int] = []
    batch: list[np.ndarray] = []
    for start, window in windows:
        starts.append(start)
        batch.append(window)
        if len(batch) == size:
            yield starts, np.stack(batch)
            starts, batch = [], []
    if batch:
        yield starts, np.stack(batch)


def ingest_recording(recording_id: int, model: LoadedModel, batch_size: int = 64) -> str:
    """Embed one recording unless another worker holds it or it is done. Returns its status."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RECORDING_LOCK_NAMESPACE, recording_id])
        if not cursor.fetchone()[0]:
            return "busy"
    try:
        return _ingest_locked(recording_id, model, batch_size)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RECORDING_LOCK_NAMESPACE, recording_id])


def _ingest_locked(recording_id: int, model: LoadedModel, batch_size: int) -> str:
    recording = Recording.objects.select_related("deployment").filter(pk=recording_id).first()
    if recording is None:
        return "deleted"
    if recording.status not in UNFINISHED:
        return recording.status  # done or failed already: this message is a duplicate
    embedding_model = model_row(model)
    Recording.objects.filter(pk=recording.pk).update(attempts=F("attempts") + 1)
    try:
        info = probe(Path(recording.path))
        framing = Framing.from_seconds(model.spec.sample_rate, model.spec.window_s, model.spec.hop_s)
        _update(
            recording,
            status=RecordingStatus.EMBEDDING,
            error="",
            warning=info.warning,
            duration_s=info.duration_s,
            sample_rate=info.sample_rate,
            channels=info.channels,
            windows_done=0,
            windows_expected=framing.window_count(round(info.duration_s * model.spec.sample_rate)),
            embedding_model=embedding_model,
            # Recordings registered before fingerprints existed get one now.
            fingerprint=recording.fingerprint or file_fingerprint(Path(recording.path)),
        )
        embedded = embed_file(
            Path(recording.path),
            model,
            batch_size,
            on_batch=lambda done: _update(recording, windows_done=done),
            info=info,
            channel=recording.deployment.channel,
        )
    except AudioError as error:
        _update(recording, status=RecordingStatus.FAILED, error=str(error))
        return RecordingStatus.FAILED
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:  # a broken file must not cost the rest of the deployment
        logger.exception("ingest of recording %s failed", recording_id)
        _update(recording, status=RecordingStatus.FAILED, error=f"could not be processed: {error!r}")
        return RecordingStatus.FAILED
    outputs = embedded.outputs
    replace_windows(
        recording.pk,
        embedding_model,
        embedded.starts_s,
        embedded.ends_s,
        outputs.embeddings,
        outputs.top_classes,
        outputs.top_logits,
    )
    _update(recording, status=RecordingStatus.DONE, windows_done=len(embedded.starts_s))
    project = recording.deployment.project
    ingesting = Recording.objects.filter(deployment__project=project, status__in=UNFINISHED).exists()
    if not ingesting and index_wanted(project, embedding_model):
        # The project's ingest is over: index what it added, in a task of its own.
        request_index_build(project, embedding_model)
    return RecordingStatus.DONE


def _update(recording: Recording, **fields) -> None:
    for name, value in fields.items():
        setattr(recording, name, value)
    Recording.objects.filter(pk=recording.pk).update(updated_at=timezone.now(), **fields)


def embed_clip_query(clip_query_id: int, model: LoadedModel) -> str:
    """Embed an example clip (an upload, or a region of a recording), trimmed to its span:
    the mean of its windows' embeddings. A region is read from the deployment's channel."""
    query = ClipQuery.objects.select_related("recording__deployment").get(pk=clip_query_id)
    channel = query.recording.deployment.channel if query.recording else None
    try:
        embedded = embed_file(
            Path(query.path), model, batch_size=64, channel=channel, span_s=(query.start_s or 0.0, query.end_s)
        )
        if not len(embedded.starts_s):
            raise AudioError("the chosen part of the clip holds no audio (is the start past its end?)")
    except AudioError as error:
        ClipQuery.objects.filter(pk=query.pk).update(status=RecordingStatus.FAILED, error=str(error))
        return RecordingStatus.FAILED
    ClipQuery.objects.filter(pk=query.pk).update(
        status=RecordingStatus.DONE,
        embedding=embedded.outputs.embeddings.mean(axis=0),
        embedding_model=model_row(model),
    )
    return RecordingStatus.DONE


def requeue_stalled() -> int:
    """Send again every recording that is queued or embedding but that no worker holds.

    Run when a worker starts: a worker killed mid-file (SIGKILL, lost machine) leaves its
    recording "embedding" and its messages unacknowledged in Redis until the visibility
    timeout; the database knows what is unfinished, so the new worker picks it up now.
    A duplicate message is harmless: the recording is skipped once done.
    """
    from workers.tasks import ingest_recording

    pending = Recording.objects.filter(status__in=UNFINISHED)
    requeued = 0
    with connection.cursor() as cursor:
        for recording_id in pending.values_list("pk", flat=True):
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RECORDING_LOCK_NAMESPACE, recording_id])
            if not cursor.fetchone()[0]:
                continue  # a live worker is on it
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RECORDING_LOCK_NAMESPACE, recording_id])
            ingest_recording.delay(recording_id)
            requeued += 1
    return requeued
