"""A pool of decoder processes feeding one model's batches, across file boundaries.

Decoding and resampling a 48 kHz file takes one core per file; a model on a GPU embeds
far faster than that. So N processes decode N recordings at once, each streaming its
windows in chunks of bounded size through a bounded queue (memory stays flat however
long the files), and one thread cuts the chunks of all files into full batches for the
model. No Django here: ``workers.ingest`` claims recordings and stores what comes out.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import billiard
import numpy as np

from annotations.audio import AudioError, AudioFeed, Framing, fed_blocks, iter_windows
from workers.embedding_models import LoadedModel, WindowOutputs

logger = logging.getLogger(__name__)

# Largest chunk of windows a decoder sends at once: bounds the queue's memory, not the batch.
CHUNK_BYTES = 16 * 1024**2
# How long the model waits for more windows before embedding a batch that is not full.
LINGER_S = 0.05


def default_decoders() -> int:
    """PERCH_AGILE_DECODERS, or the cores left over beside the process running the model (at least 1)."""
    configured = os.environ.get("PERCH_AGILE_DECODERS", "")
    if configured:
        return max(1, int(configured))
    return max(1, len(os.sched_getaffinity(0)) - 1)


def batched_windows(windows: Iterator[tuple[int, np.ndarray]], size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """Group ``(start, window)`` pairs into (starts, float32 [<= size, window_samples])."""
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


@dataclasses.dataclass(frozen=True)
class DecodeJob:
    """One recording to decode: ``key`` names it in the messages that come back."""

    key: int
    generation: int
    path: str
    feed: AudioFeed
    framing: Framing


# A decoder's messages carry their job's generation: those of an ingest that gave up
# (and may be retried with the same keys) are told apart and dropped.


@dataclasses.dataclass(frozen=True)
class Started:
    generation: int
    key: int
    pid: int


@dataclasses.dataclass(frozen=True)
class Chunk:
    """starts: int64 [n] first sample of each window; windows: float32 [n, window_samples]."""

    generation: int
    key: int
    starts: np.ndarray
    windows: np.ndarray


@dataclasses.dataclass(frozen=True)
class Ended:
    """A recording's last chunk was sent (error ""), or its decoding failed with that reason."""

    generation: int
    key: int
    error: str = ""


def _decode(job: DecodeJob, results, generation) -> None:
    chunk_windows = max(1, CHUNK_BYTES // (4 * job.framing.window_samples))
    try:
        blocks = fed_blocks(Path(job.path), job.framing.sample_rate, job.feed)
        for starts, windows in batched_windows(iter_windows(blocks, job.framing), chunk_windows):
            if generation.value != job.generation:
                return  # the ingest that asked for it has given up
            results.put(Chunk(job.generation, job.key, np.asarray(starts, np.int64), windows))
    except AudioError as error:
        results.put(Ended(job.generation, job.key, str(error)))
    except Exception as error:  # reported as the file's failure, as ingest does
        results.put(Ended(job.generation, job.key, f"could not be processed: {error!r}"))
    else:
        results.put(Ended(job.generation, job.key))


def _decoder_main(jobs, results, generation, parent_pid: int) -> None:
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return  # the worker died (SIGKILL): do not outlive it
            continue
        if job.generation == generation.value:
            results.put(Started(job.generation, job.key, os.getpid()))
            _decode(job, results, generation)


class DecodePool:
    """``decoders`` spawned processes (not forked: the parent runs TensorFlow's threads).

    Through billiard, Celery's multiprocessing: a prefork pool worker is a daemonic
    process, which the standard library forbids to start children.
    """

    def __init__(self, decoders: int):
        self._context = billiard.get_context("spawn")
        self.decoders = decoders
        self.jobs = self._context.Queue()
        # Two chunks per decoder in flight: enough that none waits on the model's turn.
        self.results = self._context.Queue(maxsize=2 * decoders)
        self.generation = self._context.Value("i", 0)
        self._processes = [self._spawn() for _ in range(decoders)]

    def _spawn(self):
        process = self._context.Process(
            target=_decoder_main,
            args=(self.jobs, self.results, self.generation, os.getpid()),
            daemon=True,
            name="perch-decoder",
        )
        process.start()
        return process

    def begin(self) -> int:
        """Start a new generation of jobs; whatever an earlier one left is dropped."""
        with self.generation.get_lock():
            self.generation.value += 1
            return self.generation.value

    def replace_dead(self) -> set[int]:
        """Respawn decoders that died (a decoder crash, the OOM killer); returns their pids."""
        dead = {p.pid for p in self._processes if not p.is_alive()}
        if dead:
            self._processes = [p if p.is_alive() else self._spawn() for p in self._processes]
        return dead

    def close(self) -> None:
        for process in self._processes:
            process.terminate()
            process.join()


@dataclasses.dataclass
class _File:
    starts: list[np.ndarray] = dataclasses.field(default_factory=list)
    outputs: list[WindowOutputs] = dataclasses.field(default_factory=list)
    pending: int = 0  # windows received but not yet embedded
    done: int = 0  # windows embedded
    ended: bool = False
    pid: int = 0


@dataclasses.dataclass(frozen=True)
class FileEmbedded:
    """starts: int64 [N] first sample of each window; outputs: the model's, for the N windows."""

    key: int
    starts: np.ndarray
    outputs: WindowOutputs


@dataclasses.dataclass(frozen=True)
class FileDecoded:
    """All of a file's windows reached the model: a decoder is free for the next file."""

    key: int


@dataclasses.dataclass(frozen=True)
class FileFailed:
    key: int
    error: str


@dataclasses.dataclass(frozen=True)
class Progress:
    key: int
    windows_done: int


@dataclasses.dataclass(frozen=True)
class Crashed:
    """The model thread itself failed: the ingest cannot go on."""

    error: BaseException


def concatenate(chunks: list[WindowOutputs], embedding_dim: int) -> WindowOutputs:
    if not chunks:
        return WindowOutputs(np.zeros((0, embedding_dim), np.float32))
    fields = (field.name for field in dataclasses.fields(WindowOutputs))
    return WindowOutputs(
        *(
            None if getattr(chunks[0], name) is None else np.concatenate([getattr(c, name) for c in chunks])
            for name in fields
        )
    )


def _part(outputs: WindowOutputs, begin: int, end: int) -> WindowOutputs:
    values = (getattr(outputs, field.name) for field in dataclasses.fields(WindowOutputs))
    return WindowOutputs(*(None if value is None else value[begin:end] for value in values))


class Embedder:
    """The model thread: embeds the decoders' chunks of every file in full batches.

    It reports to ``report`` (called from its thread) a ``Progress`` per file per batch,
    ``FileDecoded`` when a file's windows have all arrived, then ``FileEmbedded`` or
    ``FileFailed``.
    """

    def __init__(self, pool: DecodePool, model: LoadedModel, batch_size: int, report: Callable[[object], None]):
        self._generation = pool.begin()
        self._pool = pool
        self._model = model
        self._batch_size = batch_size
        self._report = report
        self._files: dict[int, _File] = {}
        self._lock = threading.Lock()
        self._pending: collections.deque[Chunk] = collections.deque()
        self._pending_windows = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="perch-embedder")
        self._thread.start()

    def submit(self, key: int, path: Path, feed: AudioFeed, framing: Framing) -> None:
        """Have the pool decode a file as ``feed`` says (its channel, speed and band) into
        the windows of ``framing`` (the model's, at the deployment's hop)."""
        with self._lock:
            self._files[key] = _File()
        self._pool.jobs.put(DecodeJob(key, self._generation, str(path), feed, framing))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    message = self._pool.results.get(timeout=LINGER_S)
                except queue.Empty:
                    if self._pending_windows:
                        self._embed(self._pending_windows)  # nothing more is coming soon
                    else:
                        self._fail_dead_decoders()
                    continue
                self._receive(message)
                while self._pending_windows >= self._batch_size:
                    self._embed(self._batch_size)
        except BaseException as error:  # handed to the ingest, which gives up and retries
            self._report(Crashed(error))

    def _receive(self, message) -> None:
        with self._lock:
            state = self._files.get(message.key) if message.generation == self._generation else None
        if state is None:
            return  # a file of an ingest that gave up, or that failed already
        if isinstance(message, Started):
            state.pid = message.pid
        elif isinstance(message, Chunk):
            self._pending.append(message)
            self._pending_windows += len(message.starts)
            state.pending += len(message.starts)
            state.starts.append(message.starts)
        elif message.error:
            self._fail(message.key, message.error)
        else:
            state.ended = True
            self._report(FileDecoded(message.key))
            self._finish_if_done(message.key, state)

    def _fail(self, key: int, error: str) -> None:
        with self._lock:
            self._files.pop(key, None)
        kept = [chunk for chunk in self._pending if chunk.key != key]
        self._pending = collections.deque(kept)
        self._pending_windows = sum(len(chunk.starts) for chunk in kept)
        self._report(FileFailed(key, error))

    def _fail_dead_decoders(self) -> None:
        dead = self._pool.replace_dead()
        if not dead:
            return
        with self._lock:
            lost = [key for key, state in self._files.items() if state.pid in dead and not state.ended]
        for key in lost:
            self._fail(key, "could not be processed: the decoder process died while reading it")

    def _embed(self, count: int) -> None:
        """Embed the first ``count`` pending windows, of however many files they are."""
        parts: list[Chunk] = []
        taken = 0
        while taken < count:
            chunk = self._pending.popleft()
            take = min(len(chunk.starts), count - taken)
            if take < len(chunk.starts):
                rest = Chunk(chunk.generation, chunk.key, chunk.starts[take:], chunk.windows[take:])
                self._pending.appendleft(rest)
                chunk = Chunk(chunk.generation, chunk.key, chunk.starts[:take], chunk.windows[:take])
            parts.append(chunk)
            taken += take
        self._pending_windows -= taken
        windows = parts[0].windows if len(parts) == 1 else np.concatenate([part.windows for part in parts])
        try:
            outputs = self._model.embed_windows(windows)
            pieces: list[WindowOutputs | str] = _split(outputs, parts)
        except Exception:
            # One file's windows may break the model: embed each file's part alone, so
            # that only that file fails.
            logger.exception("a batch of %d windows failed; embedding its files one by one", len(windows))
            pieces = [self._embed_alone(part) for part in parts]
        touched: dict[int, _File] = {}
        for part, piece in zip(parts, pieces, strict=True):
            with self._lock:
                state = self._files.get(part.key)
            if state is None:
                continue  # its file failed meanwhile
            if isinstance(piece, str):
                self._fail(part.key, piece)
                continue
            state.outputs.append(piece)
            state.pending -= len(part.starts)
            state.done += len(part.starts)
            touched[part.key] = state
        for key, state in touched.items():
            with self._lock:
                alive = key in self._files
            if alive:
                self._report(Progress(key, state.done))
                self._finish_if_done(key, state)

    def _embed_alone(self, part: Chunk) -> WindowOutputs | str:
        """The outputs of one file's windows, or why the model failed on them."""
        try:
            return self._model.embed_windows(part.windows)
        except Exception as error:
            return f"could not be processed: {error!r}"

    def _finish_if_done(self, key: int, state: _File) -> None:
        if not state.ended or state.pending:
            return
        with self._lock:
            self._files.pop(key, None)
        starts = np.concatenate(state.starts) if state.starts else np.zeros(0, np.int64)
        self._report(FileEmbedded(key, starts, concatenate(state.outputs, self._model.spec.embedding_dim)))


def _split(outputs: WindowOutputs, parts: list[Chunk]) -> list[WindowOutputs]:
    bounds = np.cumsum([0] + [len(part.starts) for part in parts])
    return [_part(outputs, begin, end) for begin, end in zip(bounds[:-1], bounds[1:], strict=True)]


@contextlib.contextmanager
def embedder(pool: DecodePool, model: LoadedModel, batch_size: int) -> Iterator[tuple[Embedder, queue.Queue]]:
    """An Embedder for one ingest, and the queue of what it reports; on leaving, the
    thread stops and the pool drops whatever this ingest still had in flight."""
    reports: queue.Queue = queue.Queue()
    worker = Embedder(pool, model, batch_size, reports.put)
    try:
        yield worker, reports
    finally:
        pool.begin()
        worker.stop()
