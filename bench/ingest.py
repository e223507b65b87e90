"""Benchmark: ingesting a multi-file deployment against the bare model on the same batches.

    .venv/bin/python -u -m bench.ingest [--model efficientnet-b3-standin] [--files 6]
        [--seconds 300] [--batch N] [--decoders N] [--linked] [--hop SECONDS]

    # overlapping windows (BirdNET's 3 s every 1.5 s): the same ratio to the bare model
    .venv/bin/python -u -m bench.ingest --hop 1.5

    # memory over a long deployment: 100 files of an hour (two written, the rest linked)
    .venv/bin/python -u -m bench.ingest --files 100 --seconds 3600 --linked

Builds a deployment of real birdsong over noise at mixed sample rates (44.1 and 48 kHz)
in a throwaway database, with the configured model (PERCH_AGILE_MODEL) or the stand-in.
Prints, from one run:

- decode windows/s per core: decoding, resampling and windowing the files in this
  process alone, and how many decoder cores the model needs at the bare model's speed;
- the bare model's windows/s: ``embed_windows`` on the very batches ingest will cut,
  decoded beforehand (the reference);
- end-to-end windows/s of ``workers.ingest.ingest_recording`` (the decode pool, the
  model's batches across files, COPY into pgvector) over the same files, and its ratio
  to the reference;
- binary COPY rows/s into the window table without and with the project's HNSW index;
- windows and bytes (the window table with its indexes and TOAST, per window as stored)
  per hour of audio at the run's hop;
- host memory (this process and its decoders) and, on a GPU, the device's memory in use,
  at their highest in the first and in the last quarter of ingest: flat, or growing.

The reference runs on the first ``--reference-windows`` windows (all of a short run's);
the rest of a long run is never held in memory at once.

``--model efficientnet-b3-standin`` stands in for Perch 2.0, whose weights cannot be
fetched here: a Keras EfficientNet-B3 with random weights (``weights=None``) behind a
log-mel frontend of Perch's shape (5 s at 32 kHz in, 1536-d out). It measures speed
only; it is no embedding model, and no worker can load it.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import soundfile
import soxr

from bench.database import bench_database

STANDIN = "efficientnet-b3-standin"
STANDIN_LABEL = f"[{STANDIN}: random weights, speed only, not an embedding model] "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["configured", STANDIN], default="configured")
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=300.0)  # recorders write files of minutes to an hour
    parser.add_argument("--batch", type=int, default=0, help="default: PERCH_AGILE_EMBED_BATCH")
    parser.add_argument("--decoders", type=int, default=0, help="default: PERCH_AGILE_DECODERS or spare cores")
    parser.add_argument("--linked", action="store_true", help="write two files, hard-link the rest (long runs)")
    parser.add_argument("--reference-windows", type=int, default=4_000, help="windows the bare model is timed on")
    parser.add_argument("--hop", type=float, default=0.0, help="seconds between windows (default: the window)")
    args = parser.parse_args()
    with bench_database(), tempfile.TemporaryDirectory() as folder:
        run(args, Path(folder))


def make_files(folder: Path, count: int, seconds: float, linked: bool = False) -> list[Path]:
    """``count`` files of real birdsong over noise, alternately at 44.1 and 48 kHz; with
    ``linked``, the first two written and the others hard links to them (distinct files to
    ingest, the disk of two)."""
    from annotations.demo import birdsong_wav

    song, rate = soundfile.read(str(birdsong_wav()), dtype="float32")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"bench_{i}.wav"
        if linked and i >= 2:
            path.hardlink_to(paths[i % 2])
        else:
            audio = 0.01 * rng.standard_normal(int(seconds * rate)).astype(np.float32)
            for start in range(0, len(audio) - len(song), len(song) * 2):
                audio[start : start + len(song)] += song
            file_rate = (44_100, 48_000)[i % 2]
            soundfile.write(str(path), soxr.resample(audio, rate, file_rate), file_rate)
        paths.append(path)
    return paths


class MemorySampler:
    """Samples, every ``every_s`` seconds in a thread, this process's and its children's
    resident memory and (on a GPU) TensorFlow's device memory in use."""

    def __init__(self, every_s: float = 0.5):
        import threading

        self.samples: list[tuple[float, int, int]] = []  # (seconds since start, host bytes, device bytes)
        self._every_s, self._stop = every_s, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemorySampler:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil
        import tensorflow as tf

        me = psutil.Process()
        gpu = bool(tf.config.list_logical_devices("GPU"))
        while not self._stop.wait(self._every_s):
            host = 0
            for process in [me, *me.children(recursive=True)]:
                try:
                    host += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue  # a decoder that ended between the listing and the reading
            device = tf.config.experimental.get_memory_info("GPU:0")["current"] if gpu else 0
            self.samples.append((time.perf_counter() - self._started, host, device))

    def quarter_peaks(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((host, device) highest in the first quarter of the run, (host, device) in the last)."""
        if not self.samples:
            return (0, 0), (0, 0)
        end = self.samples[-1][0]
        first = [s for s in self.samples if s[0] <= end / 4] or self.samples[:1]
        last = [s for s in self.samples if s[0] >= 3 * end / 4] or self.samples[-1:]
        return tuple(tuple(max(s[i] for s in part) for i in (1, 2)) for part in (first, last))


def standin_model():
    """EfficientNet-B3, random weights, behind a log-mel frontend: float32 [B, 160000] -> [B, 1536]."""
    import tensorflow as tf

    from workers.embedding_models import LoadedModel, ModelSpec, configure_devices

    configure_devices()
    spec = ModelSpec(STANDIN, "random-weights", 1536, 5.0, 5.0, 32_000)
    frame, step, bins = 640, 320, 128  # 20 ms frames, 10 ms hop, 128 mel bins: 499 x 128 per window
    mel = tf.signal.linear_to_mel_weight_matrix(bins, 1024 // 2 + 1, spec.sample_rate, 60.0, 16_000.0)
    frames = 1 + (round(spec.window_s * spec.sample_rate) - frame) // step
    backbone = tf.keras.applications.EfficientNetB3(
        include_top=False, weights=None, input_shape=(frames, bins, 1), pooling="avg"
    )

    @tf.function(reduce_retracing=True)
    def embed(audio):
        power = tf.abs(tf.signal.stft(audio, frame, step, fft_length=1024))
        return backbone(tf.math.log(tf.tensordot(power, mel, 1) + 1e-3)[..., None], training=False)

    def batch_embed(windows: np.ndarray):
        return types.SimpleNamespace(embeddings=embed(tf.constant(windows)).numpy(), logits={})

    return LoadedModel(spec, types.SimpleNamespace(batch_embed=batch_embed))


class TimedModel:
    """The model, timing its calls: how much of ingest the model was busy."""

    def __init__(self, model):
        self.spec, self.class_names, self._model, self.busy_s = model.spec, model.class_names, model, 0.0

    def embed_windows(self, windows: np.ndarray):
        started = time.perf_counter()
        outputs = self._model.embed_windows(windows)
        self.busy_s += time.perf_counter() - started
        return outputs


def run(args, folder: Path) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotations.audio import Framing, iter_resampled_blocks, iter_windows
    from annotations.deployments import create_deployment, create_project
    from annotations.embedding_store import replace_windows
    from annotations.models import Deployment, Recording, RecordingStatus, Window
    from annotations.search_index import build_search_index
    from workers.decode_pool import DecodePool, batched_windows, concatenate, default_decoders
    from workers.embedding_models import configured_model
    from workers.ingest import ingest_recording, model_row

    label = STANDIN_LABEL if args.model == STANDIN else ""

    def say(text: str) -> None:
        print(f"{label}{text}")

    model = standin_model() if args.model == STANDIN else configured_model()
    spec = model.spec
    batch_size = args.batch or settings.PERCH_AGILE_EMBED_BATCH
    pool = DecodePool(args.decoders or default_decoders())  # spawned now: ready when ingest starts
    paths = make_files(folder, args.files, args.seconds, args.linked)
    hop_s = args.hop or spec.hop_s
    framing = Framing.from_seconds(spec.sample_rate, spec.window_s, hop_s)

    def windows_of(path: Path):
        return iter_windows(iter_resampled_blocks(path, spec.sample_rate), framing)

    # The reference's batches: the first files' windows, up to --reference-windows.
    started = time.perf_counter()
    batches = []
    for path in paths:
        batches += [batch for _, batch in batched_windows(windows_of(path), batch_size)]
        if sum(len(batch) for batch in batches) >= args.reference_windows:
            break
    decode_s = time.perf_counter() - started
    reference_windows = sum(len(batch) for batch in batches)

    for batch in (batches[0], batches[-1]):  # warm-up (and the stand-in's trace per batch shape), untimed
        model.embed_windows(batch)
    started = time.perf_counter()
    outputs = [model.embed_windows(batch) for batch in batches]
    bare_s = time.perf_counter() - started

    project = create_project(get_user_model().objects.create_user("bench"), "bench")
    deployment = create_deployment(project, "bench")
    Deployment.objects.filter(pk=deployment.pk).update(hop_s=hop_s)  # as the admin's choice, for any model
    recordings = [Recording.objects.create(deployment=deployment, path=str(path), filename=path.name) for path in paths]
    timed = TimedModel(model)
    started = time.perf_counter()
    with MemorySampler() as memory:
        ingest_recording(recordings[0].pk, timed, batch_size, pool)  # claims the others, as a worker's task does
    ingest_s = time.perf_counter() - started
    windows = Window.objects.filter(recording__deployment=deployment).count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('annotations_window')")
        bytes_per_window = cursor.fetchone()[0] / Window.objects.count()
    # The reference again: other load on the machine shows as a difference between the two.
    started = time.perf_counter()
    for batch in batches:
        model.embed_windows(batch)
    bare_after_s = time.perf_counter() - started
    del batches
    assert set(deployment.recordings.values_list("status", flat=True)) == {RecordingStatus.DONE}
    assert windows >= reference_windows
    pool.close()

    every = concatenate(outputs, spec.embedding_dim)
    embedding_model = model_row(model)

    def copy_rows_per_s(name: str) -> float:
        recording = Recording.objects.create(deployment=deployment, path=f"/bench/{name}.wav", filename=name)
        starts = np.arange(reference_windows, dtype=np.float64) * hop_s
        begun = time.perf_counter()
        replace_windows(
            recording.pk,
            embedding_model,
            starts,
            starts + spec.window_s,
            every.embeddings,
            every.top_classes,
            every.top_logits,
        )
        return reference_windows / (time.perf_counter() - begun)

    unindexed = copy_rows_per_s("unindexed")
    build_search_index(project, embedding_model)
    indexed = copy_rows_per_s("indexed")

    audio_s = args.files * args.seconds
    bare = 2 * reference_windows / (bare_s + bare_after_s)
    end_to_end, per_core = windows / ingest_s, reference_windows / decode_s
    say(
        f"model: {spec.name} {spec.version}; batch {batch_size}; {pool.decoders} decoder process(es); "
        f"{args.files} files x {args.seconds:g} s (44.1/48 kHz), {windows} windows of {spec.window_s:g} s "
        f"every {hop_s:g} s"
    )
    say(f"decode:      {per_core:10.1f} windows/s per core (decode, resample, window; one process)")
    say(
        f"bare model:  {bare:10.1f} windows/s ({bare * audio_s / windows:6.1f}x real time; "
        f"{reference_windows / bare_s:.1f} before, {reference_windows / bare_after_s:.1f} after end to end; "
        f"on the first {reference_windows} windows)"
    )
    say(f"end to end:  {end_to_end:10.1f} windows/s ({audio_s / ingest_s:6.1f}x real time)")
    say(f"ratio:       {end_to_end / bare:10.3f} (goal >= 0.9)")
    say(f"model busy:  {timed.busy_s / ingest_s:10.3f} of end to end ({windows / timed.busy_s:.1f} windows/s inside)")
    say(f"decoders:    {math.ceil(bare / per_core):10d} core(s) of decoding keep up with the bare model")
    (host_first, device_first), (host_last, device_last) = memory.quarter_peaks()
    say(
        f"host memory: {host_first / 2**20:10,.0f} MiB at most in the first quarter of ingest, "
        f"{host_last / 2**20:,.0f} MiB in the last ({(host_last - host_first) / 2**20:+,.0f} MiB)"
    )
    if device_first or device_last:
        say(
            f"GPU memory:  {device_first / 2**20:10,.0f} MiB at most in the first quarter, "
            f"{device_last / 2**20:,.0f} MiB in the last ({(device_last - device_first) / 2**20:+,.0f} MiB)"
        )
    per_hour = 3600 / hop_s
    say(
        f"per hour:    {per_hour:10,.0f} windows, {per_hour * bytes_per_window / 2**20:,.1f} MiB in the window table "
        f"({bytes_per_window:,.0f} bytes a window with its indexes)"
    )
    say(
        f"COPY:        {unindexed:10.0f} rows/s without an HNSW index, {indexed:.0f} rows/s with the project's "
        "(a partial index up to its build's last window id: new rows are not inserted into it)"
    )


if __name__ == "__main__":
    main()
