"""Benchmark: scoring a deployment from PostgreSQL against a bare numpy product.

    .venv/bin/python -m bench.inference [--windows 100000] [--dim 1024]

Runs in a database of its own (``perch_agile_bench``, dropped afterwards) on the
configured or embedded PostgreSQL. The embeddings are synthetic (random vectors), which
is fine for throughput: scoring cost does not depend on what the vectors hold. Prints
windows/s of ``workers.inference.run_inference`` (stream from the database, score, store
detections) and of the reference, ``sigmoid(X @ W + b)`` on the same embeddings already
in memory, and their ratio; and binary COPY rows/s of writing them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.database import bench_database, synthetic_deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--recordings", type=int, default=100)
    args = parser.parse_args()

    with bench_database():
        run(args)


def run(args) -> None:
    from annotations.models import Classifier, ClassifierLabel, InferenceRun, TaskStatus
    from annotations.probes import linear_scores
    from workers.inference import run_inference

    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((args.windows, args.dim), dtype=np.float32)
    started = time.perf_counter()
    _, project, deployment, model = synthetic_deployment(embeddings, args.recordings, ["a", "b"])
    copy_s = time.perf_counter() - started

    weights = (rng.standard_normal((args.dim, 2)) * 0.05).astype(np.float32)
    bias = np.array([-3.0, -3.0], np.float32)
    classifier = Classifier.objects.create(
        project=project,
        version=1,
        embedding_model=model,
        status=TaskStatus.DONE,
        weights=weights.tobytes(),
        bias=bias.tobytes(),
    )
    for index, label in enumerate(project.labels.order_by("name")):
        ClassifierLabel.objects.create(classifier=classifier, label=label, index=index)

    started = time.perf_counter()
    reference = linear_scores(embeddings, weights, bias)
    numpy_s = time.perf_counter() - started
    run = InferenceRun.objects.create(classifier=classifier, deployment=deployment, threshold=0.5)
    started = time.perf_counter()
    detections = run_inference(run)
    app_s = time.perf_counter() - started
    assert detections == int((reference >= 0.5).sum()), "the app and numpy disagree on the detections"

    print(f"windows: {args.windows} x {args.dim}-d (synthetic), {args.recordings} recordings, 2 labels")
    print(f"COPY write:          {args.windows / copy_s:12,.0f} rows/s (recordings created too)")
    print(f"numpy reference:     {args.windows / numpy_s:12,.0f} windows/s (embeddings in memory)")
    print(f"run_inference:       {args.windows / app_s:12,.0f} windows/s (stream from PostgreSQL, score, store)")
    print(f"ratio app/reference: {numpy_s / app_s:12.4f}")
    print(f"detections stored:   {detections:12,d}")


if __name__ == "__main__":
    main()
