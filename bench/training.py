"""Benchmark: training a classifier version on 10,000 labels, as the Celery task does.

    .venv/bin/python -m bench.training [--labels 10000] [--dim 1024]

Synthetic embeddings with a planted signal (random vectors of low intrinsic dimension,
as real embeddings have), in a throwaway database. Prints the seconds of the whole
``train()`` (read labels and embeddings, split by recording, choose C by grouped
cross-validation, fit, measure, store the snapshot) for a linear and a prototype probe,
beside the reference: one bare scikit-learn fit on the same arrays in memory, with
BLAS's default threads and with one thread as train() uses; ratios are against the latter.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from bench.database import bench_database, synthetic_deployment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--recordings", type=int, default=200)
    args = parser.parse_args()
    with bench_database():
        run(args)


def run(args) -> None:
    from annotations.models import Annotation, Classifier, ClassifierLabel, ProbeType, Window
    from annotations.training import train

    rng = np.random.default_rng(0)
    latent = rng.standard_normal((args.labels, 16)).astype(np.float32)
    embeddings = latent @ rng.standard_normal((16, args.dim)).astype(np.float32)
    embeddings += 0.5 * rng.standard_normal(embeddings.shape, dtype=np.float32)
    targets = latent[:, 0] > 1.0  # about 16% positives
    user, project, _, model = synthetic_deployment(embeddings, args.recordings, ["call"])
    label = project.labels.get()
    window_ids = list(Window.objects.order_by("recording_id", "start_s").values_list("pk", flat=True))
    Annotation.objects.bulk_create(
        Annotation(window_id=w, label=label, annotator=user, value="positive" if t else "negative")
        for w, t in zip(window_ids, targets, strict=True)
    )

    print(
        f"{args.labels} labels x {args.dim}-d (synthetic), {args.recordings} recordings, {targets.mean():.0%} positive"
    )
    for threads in (None, 1):
        with threadpool_limits(limits=threads):
            started = time.perf_counter()
            LogisticRegression(class_weight="balanced", max_iter=1000, tol=1e-3).fit(embeddings, targets)
            reference_s = time.perf_counter() - started
        print(
            f"reference: one bare LogisticRegression fit in memory, {threads or 'default'} thread(s): "
            f"{reference_s:6.2f} s"
        )
    for version, probe_type in enumerate((ProbeType.LINEAR, ProbeType.PROTOTYPE), start=1):
        classifier = Classifier.objects.create(
            project=project, version=version, probe_type=probe_type, embedding_model=model
        )
        ClassifierLabel.objects.create(classifier=classifier, label=label, index=0)
        started = time.perf_counter()
        train(classifier)
        seconds = time.perf_counter() - started
        output = classifier.outputs.get()
        print(
            f"train() {probe_type:9s}: {seconds:6.2f} s ({seconds / reference_s:4.1f}x the bare fit); "
            f"held-out ROC-AUC {output.roc_auc:.3f}, AP {output.average_precision:.3f}"
        )


if __name__ == "__main__":
    main()
