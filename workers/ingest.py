"""Ingest: decode a recording, cut it into model windows, embed them, store them.

The database holds the truth. A worker takes a recording under a PostgreSQL advisory
lock (released by the server when the worker dies, so a redelivered task can take it
again), and writes all of a recording's windows in one transaction, replacing any
earlier ones: a crash mid-file leaves nothing half-written, and a second run never
duplicates windows. One bad file is marked failed with its reason; the others go on.

A task for one recording also claims, as decoders come free, other recordings that no
worker holds, so that a pool of decoder processes (``workers.decode_pool``) decodes
several at once and their windows fill the model's batches across file boundaries. The
model runs in a thread of its own: the task's thread writes each finished recording
with COPY while the model embeds the next batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import redis
from django.db import InterfaceError, OperationalError, connection
from django.db.models import F
from django.utils import timezone

from annotations.audio import (
    AS_RECORDED,
    AudioError,
    AudioFeed,
    AudioInfo,
    Framing,
    band_limited,
    fed_blocks,
    iter_windows,
    probe,
)
from annotations.deployments import UNFINISHED, clip_feed, deployment_feed, file_fingerprint
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import ClipQuery, Deployment, EmbeddingModel, Recording, RecordingStatus
from annotations.search_index import index_wanted, request_index_build
from annotations.sun import ensure_sun_days
from workers.decode_pool import (
    Crashed,
    DecodePool,
    FileDecoded,
    FileFailed,
    Progress,
    batched_windows,
    concatenate,
    default_decoders,
    embedder,
)
from workers.embedding_models import LoadedModel, ModelSpec, WindowOutputs

logger = logging.getLogger(__name__)

# Advisory-lock namespace (first key) for recordings, so other locks cannot collide.
RECORDING_LOCK_NAMESPACE = 7_201
# Failures of the services, not of the audio: the task is retried (workers.tasks) rather
# than the recording marked failed.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.exceptions.ConnectionError)


# A task claims more recordings for this long, then lets those it holds finish: the next
# task carries on, well within Celery's time limit (workers.tasks).
CLAIM_FOR_S = 3600.0


@dataclasses.dataclass(frozen=True)
class EmbeddedAudio:
    """starts_s, ends_s: float64 [N], in the file's own seconds; outputs: the model's
    embeddings and top classes of the N windows."""

    starts_s: np.ndarray
    ends_s: np.ndarray
    outputs: WindowOutputs

    @classmethod
    def of(
        cls, starts: np.ndarray, outputs: WindowOutputs, spec: ModelSpec, duration_s: float, speed: float = 1.0
    ) -> EmbeddedAudio:
        """From the windows' first samples, int [N], at the model's rate, of the audio played
        at ``speed`` (a second of it is ``speed`` seconds of the file); the last window ends
        with the audio."""
        starts_s = np.asarray(starts, dtype=np.float64) / spec.sample_rate * speed
        return cls(starts_s, np.minimum(starts_s + spec.window_s * speed, duration_s), outputs)


def model_row(model: LoadedModel) -> EmbeddingModel:
    spec = model.spec
    return register_embedding_model(
        spec.name, spec.version, spec.embedding_dim, spec.window_s, spec.hop_s, spec.sample_rate, model.class_names
    )


@functools.cache
def decode_pool() -> DecodePool:
    """The process's decoders (PERCH_AGILE_DECODERS), started on first use and kept."""
    return DecodePool(default_decoders())


def embed_file(
    path: Path,
    model: LoadedModel,
    batch_size: int,
    info: AudioInfo | None = None,
    feed: AudioFeed = AS_RECORDED,
    span_s: tuple[float, float | None] = (0.0, None),
    box_hz: tuple[float, float] | None = None,
) -> EmbeddedAudio:
    """Embed every window of one audio file in this process (clips, and the reference that
    the decode pool must match). ``info``: the file's header, where the caller has already
    probed it; ``feed``: its channel, speed and band; ``span_s``: the part of the file to
    embed, (start, end or None for the rest), with window times counted from its start;
    ``box_hz``: (low, high) in the file's Hz, the one band of it to embed (a box)."""
    spec = model.spec
    framing = Framing.from_seconds(spec.sample_rate, spec.window_s, spec.hop_s)
    duration_s = (info or probe(path)).duration_s
    starts: list[int] = []
    chunks: list[WindowOutputs] = []
    blocks = fed_blocks(path, spec.sample_rate, feed, *span_s)
    if box_hz is not None:
        blocks = band_limited(blocks, spec.sample_rate, *(edge * feed.speed for edge in box_hz))
    for batch_starts, batch in prefetched(batched_windows(iter_windows(blocks, framing), batch_size)):
        chunks.append(model.embed_windows(batch))
        starts.extend(batch_starts)
    outputs = concatenate(chunks, spec.embedding_dim)
    return EmbeddedAudio.of(np.asarray(starts), outputs, spec, duration_s, feed.speed)


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


def ingest_recording(
    recording_id: int, model: LoadedModel, batch_size: int = 64, pool: DecodePool | None = None
) -> str:
    """Embed one recording unless another worker holds it or it is done; returns its status
    ("busy": another worker holds it).

    To keep the model's batches full across files, the ingest also claims, one by one as
    decoders come free, other unfinished recordings that no worker holds (queued ones, and
    ones a dead worker left): their own tasks then find them done. Each recording is still
    taken under its advisory lock and written in one transaction.
    """
    if not _try_lock(recording_id):
        return "busy"
    locked = {recording_id}
    try:
        recording = Recording.objects.filter(pk=recording_id).first()
        if recording is None:
            return "deleted"
        if recording.status not in UNFINISHED:
            return recording.status  # done or failed already: this message is a duplicate
        statuses = _ingest_claimed(recording_id, locked, model, batch_size, pool or decode_pool())
        return statuses[recording_id]
    finally:
        for held in locked:
            with contextlib.suppress(*TRANSIENT_ERRORS):  # a lost connection has dropped its locks
                _unlock(held)


def _try_lock(recording_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [RECORDING_LOCK_NAMESPACE, recording_id])
        return cursor.fetchone()[0]


def _unlock(recording_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [RECORDING_LOCK_NAMESPACE, recording_id])


def _claim_next(locked: set[int]) -> int | None:
    """Lock an unfinished recording that no worker holds; adds it to ``locked``."""
    pending = Recording.objects.filter(status__in=UNFINISHED).exclude(pk__in=locked).order_by("pk")
    for recording_id in pending.values_list("pk", flat=True)[:100]:
        if _try_lock(recording_id):
            locked.add(recording_id)
            return recording_id
    return None


def _ingest_claimed(
    first_id: int, locked: set[int], model: LoadedModel, batch_size: int, pool: DecodePool
) -> dict[int, str]:
    """Embed the locked recording ``first_id`` and those claimed beside it; each is
    unlocked (and left ``locked``) once it is stored or failed. Returns their statuses."""
    embedding_model = model_row(model)
    statuses: dict[int, str] = {}
    held: dict[int, tuple[Recording, AudioInfo]] = {}
    decoding: set[int] = set()
    claim_until = time.monotonic() + CLAIM_FOR_S

    def finish(recording_id: int, status: str) -> None:
        held.pop(recording_id, None)
        decoding.discard(recording_id)
        statuses[recording_id] = status
        _unlock(recording_id)
        locked.discard(recording_id)

    with embedder(pool, model, batch_size) as (worker, reports):

        def start(recording_id: int) -> None:
            recording = Recording.objects.select_related("deployment").filter(pk=recording_id).first()
            if recording is None or recording.status not in UNFINISHED:  # done since it was listed
                finish(recording_id, recording.status if recording else "deleted")
                return
            framing = deployment_framing(recording.deployment, model.spec)
            info = _begin(recording, model, embedding_model, framing)
            if info is None:
                finish(recording_id, RecordingStatus.FAILED)
                return
            held[recording_id] = (recording, info)
            decoding.add(recording_id)
            worker.submit(recording_id, Path(recording.path), deployment_feed(recording.deployment), framing)

        start(first_id)
        claiming = True
        while True:
            # One file more than decoders, so that none waits between files.
            while claiming and len(decoding) <= pool.decoders:
                claimed = _claim_next(locked) if time.monotonic() < claim_until else None
                if claimed is None:
                    claiming = False
                else:
                    start(claimed)
            if not held:
                return statuses
            report = reports.get()
            if isinstance(report, Crashed):
                raise report.error
            if report.key not in held:
                continue
            recording, info = held[report.key]
            if isinstance(report, Progress):
                _update(recording, windows_done=report.windows_done)
            elif isinstance(report, FileDecoded):
                decoding.discard(report.key)
                claiming = True
            elif isinstance(report, FileFailed):
                logger.warning("ingest of recording %s failed: %s", report.key, report.error)
                _update(recording, status=RecordingStatus.FAILED, error=report.error)
                finish(report.key, RecordingStatus.FAILED)
                claiming = True
            else:
                speed = recording.deployment.speed_factor
                embedded = EmbeddedAudio.of(report.starts, report.outputs, model.spec, info.duration_s, speed)
                status = _store(recording, embedding_model, embedded)
                # Which worker embedded what, in its log (with several workers, on several hosts).
                logger.info("recording %s: %d windows %s", report.key, len(report.starts), status)
                finish(report.key, status)


def deployment_framing(deployment: Deployment, spec: ModelSpec) -> Framing:
    """How the model cuts a deployment's audio as played to it: its windows, at the
    deployment's hop (both in seconds of the played audio)."""
    return Framing.from_seconds(spec.sample_rate, spec.window_s, deployment.hop_s or spec.hop_s)


def _begin(
    recording: Recording, model: LoadedModel, embedding_model: EmbeddingModel, framing: Framing
) -> AudioInfo | None:
    """Count the attempt and read the file's header; None where the file is unusable (failed)."""
    Recording.objects.filter(pk=recording.pk).update(attempts=F("attempts") + 1)
    speed = recording.deployment.speed_factor
    try:
        info = probe(Path(recording.path))
        _update(
            recording,
            status=RecordingStatus.EMBEDDING,
            error="",
            warning=info.warning,
            duration_s=info.duration_s,
            sample_rate=info.sample_rate,
            channels=info.channels,
            windows_done=0,
            windows_expected=framing.window_count(round(info.duration_s / speed * model.spec.sample_rate)),
            embedding_model=embedding_model,
            hop_s=framing.hop_samples / framing.sample_rate * speed,
            speed_factor=speed,
            # Recordings registered before fingerprints existed get one now.
            fingerprint=recording.fingerprint or file_fingerprint(Path(recording.path)),
        )
    except AudioError as error:
        _update(recording, status=RecordingStatus.FAILED, error=str(error))
        return None
    except TRANSIENT_ERRORS:
        raise
    except Exception as error:  # a broken file must not cost the rest of the deployment
        logger.exception("ingest of recording %s failed", recording.pk)
        _update(recording, status=RecordingStatus.FAILED, error=f"could not be processed: {error!r}")
        return None
    return info


def _store(recording: Recording, embedding_model: EmbeddingModel, embedded: EmbeddedAudio) -> str:
    """Write a recording's windows, replacing earlier ones, and mark it done."""
    outputs = embedded.outputs
    try:
        replace_windows(
            recording.pk,
            embedding_model,
            embedded.starts_s,
            embedded.ends_s,
            outputs.embeddings,
            outputs.top_classes,
            outputs.top_logits,
        )
    except Recording.DoesNotExist:
        return "deleted"  # removed while it was being embedded
    _update(recording, status=RecordingStatus.DONE, windows_done=len(embedded.starts_s))
    project = recording.deployment.project
    ingesting = Recording.objects.filter(deployment__project=project, status__in=UNFINISHED).exists()
    if not ingesting:
        # The project's ingest is over: the sun times of the days it added, for filters
        # relative to sunrise (not left to the first search that needs them), and an index
        # of what it added, in a task of its own.
        ensure_sun_days(project)
        if index_wanted(project, embedding_model):
            request_index_build(project, embedding_model)
    return RecordingStatus.DONE


def _update(recording: Recording, **fields) -> None:
    for name, value in fields.items():
        setattr(recording, name, value)
    Recording.objects.filter(pk=recording.pk).update(updated_at=timezone.now(), **fields)


def embed_clip_query(clip_query_id: int, model: LoadedModel) -> str:
    """Embed an example clip (an upload, or a region of a recording), trimmed to its span:
    the mean of its windows' embeddings. A region is fed to the model as its recording's
    deployment feeds the rest (channel, speed, band); an upload as ``clip_feed`` says."""
    query = ClipQuery.objects.select_related("recording__deployment", "project").get(pk=clip_query_id)
    if query.recording:
        feed = dataclasses.replace(deployment_feed(query.recording.deployment), speed=query.recording.speed_factor)
    else:
        feed = clip_feed(query.project)
    try:
        embedded = embed_file(
            Path(query.path),
            model,
            batch_size=64,
            feed=feed,
            span_s=(query.start_s or 0.0, query.end_s),
            box_hz=None if query.low_hz is None else (query.low_hz, query.high_hz),
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
    for recording_id in pending.values_list("pk", flat=True):
        if not _try_lock(recording_id):
            continue  # a live worker is on it
        _unlock(recording_id)
        ingest_recording.delay(recording_id)
        requeued += 1
    return requeued
