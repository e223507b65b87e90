"""Benchmark: ingesting a multi-file deployment against the bare model on the same batches.

    .venv/bin/python -m bench.ingest [--files 6] [--seconds 300] [--batch 64]

Builds a deployment of real birdsong over noise at mixed sample rates (44.1 and 48 kHz)
in a throwaway database, with the configured model (PERCH_AGILE_MODEL). Prints:

- the bare model's windows/s: ``embed_windows`` on the very batches ingest will cut,
  decoded beforehand (the reference);
- end-to-end windows/s of ``workers.ingest.ingest_recording`` (decode, resample, window,
  embed, COPY into pgvector) over the same files, and its ratio to the reference;
- binary COPY rows/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr

from bench.database import bench_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=300.0)  # recorders write files of minutes to an hour
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    with bench_database(), tempfile.TemporaryDirectory() as folder:
        run(args, Path(folder))


def make_files(folder: Path, count: int, seconds: float) -> list[Path]:
    from annotations.demo import birdsong_wav

    song, rate = soundfile.read(str(birdsong_wav()), dtype="float32")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        audio = 0.01 * rng.standard_normal(int(seconds * rate)).astype(np.float32)
        for start in range(0, len(audio) - len(song), len(song) * 2):
            audio[start : start + len(song)] += song
        file_rate = (44_100, 48_000)[i % 2]
        path = folder / f"bench_{i}.wav"
        soundfile.write(str(path), soxr.resample(audio, rate, file_rate), file_rate)
        paths.append(path)
    return paths


def run(args, folder: Path) -> None:
    from django.contrib.auth import get_user_model

    from annotations.audio import Framing, iter_resampled_blocks, iter_windows
    from annotations.deployments import create_deployment, create_project
    from annotations.embedding_store import replace_windows
    from annotations.models import Recording, Window
    from workers.embedding_models import configured_model
    from workers.ingest import _batches, _concatenate, ingest_recording, model_row

    model = configured_model()
    spec = model.spec
    paths = make_files(folder, args.files, args.seconds)
    framing = Framing.from_seconds(spec.sample_rate, spec.window_s, spec.hop_s)
    batches = [
        batch
        for path in paths
        for _, batch in _batches(iter_windows(iter_resampled_blocks(path, spec.sample_rate), framing), args.batch)
    ]
    model.embed_windows(batches[0])  # warm-up, outside both timings
    started = time.perf_counter()
    outputs = [model.embed_windows(batch) for batch in batches]
    bare_s = time.perf_counter() - started
    windows = sum(len(batch) for batch in batches)

    project = create_project(get_user_model().objects.create_user("bench"), "bench")
    deployment = create_deployment(project, "bench")
    recordings = [Recording.objects.create(deployment=deployment, path=str(path), filename=path.name) for path in paths]
    started = time.perf_counter()
    for recording in recordings:
        assert ingest_recording(recording.pk, model, args.batch) == "done"
    ingest_s = time.perf_counter() - started
    assert Window.objects.filter(recording__deployment=deployment).count() == windows

    every = _concatenate(outputs, spec.embedding_dim)
    starts = np.arange(windows, dtype=np.float64) * spec.hop_s
    copy_recording = Recording.objects.create(deployment=deployment, path="/bench/copy.wav", filename="copy.wav")
    started = time.perf_counter()
    replace_windows(
        copy_recording.pk,
        model_row(model),
        starts,
        starts + spec.window_s,
        every.embeddings,
        every.top_classes,
        every.top_logits,
    )
    copy_s = time.perf_counter() - started

    audio_s = args.files * args.seconds
    print(
        f"model: {spec.name} {spec.version}; {args.files} files x {args.seconds:g} s (44.1/48 kHz), {windows} windows"
    )
    print(f"bare model:  {windows / bare_s:10.1f} windows/s ({audio_s / bare_s:6.1f}x real time)")
    print(f"end to end:  {windows / ingest_s:10.1f} windows/s ({audio_s / ingest_s:6.1f}x real time)")
    print(f"ratio:       {bare_s / ingest_s:10.3f} (goal >= 0.9)")
    print(f"COPY write:  {windows / copy_s:10.0f} rows/s (into the table with its HNSW index, built after ingest)")


if __name__ == "__main__":
    main()
