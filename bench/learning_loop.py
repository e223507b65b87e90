"""Benchmark: what a scripted annotator gains from the labeling loop, label by label.

    .venv/bin/python -m bench.learning_loop [--recordings 16] [--windows-per-recording 75] [--page 20] [--pages 6]

Two deployments of real sound (tests/loop_corpus.py): great tit song in 15% of the windows
(common), Bengalese finch song in 1% (rare), among other species and rain and wind. A holds
one bird, B (held out for evaluation, every window labeled) another. Through the REST API,
with a real Celery worker, BirdNET V2.4 and PostgreSQL (tests/scripted_annotator.py): for
each species and probe type, the first page of a search by an example clip in A, then
page after page of the suggested queue, a version trained after each page and measured by
the app on B. Printed: the learning curve (labels, positives among them, the queue, the
held-out ROC-AUC, weak negatives used and left out), beside the references: the probe
trained on every window of A, and the model's own output for the species (no labels).

Goals (issue 24): at 5% of A labeled, each probe reaches >= 0.95x the ROC-AUC of all
labels and beats the model's own output; no version after 25 labels is worse than the
one before by more than 0.02.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from bench.database import bench_database

PROBES = ("linear", "prototype")
# BirdNET V2.4's class of each species (the name before its underscore).
MODEL_CLASS = {"great tit": "Parus major", "Bengalese finch": "Lonchura striata"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=16, help="per deployment")
    parser.add_argument("--windows-per-recording", type=int, default=75)
    parser.add_argument("--page", type=int, default=20, help="windows labeled between versions")
    parser.add_argument("--pages", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, bench_database():
        run(args, Path(scratch))


def run(args, scratch: Path) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test.utils import setup_test_environment
    from rest_framework.test import APIClient

    from annotations.deployments import grant_folder
    from annotations.models import Project
    from perch_agile.celery import app as celery_app
    from tests.conftest import start_worker, stop_worker
    from tests.loop_corpus import COMMON, RARE, example_clip, load_loop_sources, make_deployment, write_recordings
    from tests.scripted_annotator import create_loop_project, run_loop

    setup_test_environment()  # the API client's host, as the suite's
    settings.MEDIA_ROOT = scratch / "media"
    settings.PERCH_AGILE_AUDIO_ROOTS = [scratch / "audio"]
    queue = celery_app.conf.task_default_queue = f"perch_agile_bench_{uuid.uuid4().hex[:8]}"
    sources = load_loop_sources(settings.VAR_DIR / "cache")
    recordings = {
        side: make_deployment(sources, i, args.recordings, args.windows_per_recording) for i, side in enumerate("AB")
    }
    folders = {side: scratch / "audio" / side for side in recordings}
    for side, folder in folders.items():
        write_recordings(recordings[side], folder)
    own_output = model_own_auc(recordings["B"])

    client = APIClient()
    client.force_authenticate(get_user_model().objects.create_user("annotator"))
    labels = [(f"{species} · {probe}", species) for species in (COMMON, RARE) for probe in (*PROBES, "all labels")]
    worker = start_worker(queue, scratch / "worker.log")
    try:
        started = time.perf_counter()
        loop = create_loop_project(
            client,
            "Learning loop",
            labels,
            folders,
            lambda project_id, folder: grant_folder(Project.objects.get(pk=project_id), str(folder)),
            recordings,
        )
        print(
            f"{len(loop.windows_a):,} windows in A, {len(loop.windows_b):,} in B, ingested and B labeled in "
            f"{time.perf_counter() - started:.0f} s; A holds "
            + ", ".join(f"{sum(loop.truth[w] == s for w in loop.windows_a)} {s}" for s in (COMMON, RARE))
        )
        budget = round(0.05 * len(loop.windows_a))
        for species in (COMMON, RARE):
            everything = loop.label_id(f"{species} · all labels")
            loop.label(everything, species, loop.windows_a)
            reference = {probe: loop.train(everything, probe)["outputs"][0]["roc_auc"] for probe in PROBES}
            print(
                f"\n{species}: the model's own output on B {own_output[species]:.3f}; all of A labeled: "
                + ", ".join(f"{probe} {auc:.3f}" for probe, auc in reference.items())
            )
            clip = example_clip(sources, species, scratch / f"{species}.wav")
            for probe in PROBES:
                steps = run_loop(loop, f"{species} · {probe}", species, probe, clip, args.page, args.pages)
                report(species, probe, steps, reference[probe], own_output[species], budget)
    finally:
        stop_worker(worker)


def report(species: str, probe: str, steps, all_labels: float, own_output: float, budget: int) -> None:
    print(f"  {probe}:")
    print(f"  {'labels':>7s} {'positive':>8s} {'queue':>12s} {'ROC-AUC':>8s} {'weak':>5s} {'left out':>8s}")
    for step in steps:
        auc = f"{step.roc_auc:.3f}" if step.roc_auc is not None else "n/a"
        print(
            f"  {step.labels:7d} {step.positives:8d} {step.queue:>12s} {auc:>8s} "
            f"{step.weak_negatives:5d} {step.weak_left_out:8d}"
        )
    at_budget = next((s for s in steps if s.labels >= budget), steps[-1])
    drops = [b.roc_auc - a.roc_auc for b, a in zip(steps, steps[1:], strict=False) if a.labels > 25]
    print(
        f"  at {at_budget.labels} labels (5% of A: {budget}): {at_budget.roc_auc:.3f} = "
        f"{at_budget.roc_auc / all_labels:.3f}x all labels (goal >= 0.95), "
        f"{'beats' if at_budget.roc_auc > own_output else 'does not beat'} the model's own output; "
        f"largest fall after 25 labels {max([0.0, *drops]):.3f} (goal <= 0.02)"
    )


def model_own_auc(recordings) -> dict[str, float]:
    """ROC-AUC on the deployment's windows of BirdNET's own logit for each species."""
    from sklearn.metrics import roc_auc_score

    from tests.loop_corpus import WINDOW
    from workers.embedding_models import load_model

    model = load_model("birdnet_v2_4")
    windows = np.concatenate([r.audio.reshape(-1, WINDOW) for r in recordings])
    truth = np.array([t for r in recordings for t in r.truth])
    logits = np.concatenate([model.class_logits(windows[i : i + 64]) for i in range(0, len(windows), 64)])
    own = {}
    for species, name in MODEL_CLASS.items():
        column = next(i for i, c in enumerate(model.class_names) if c.split("_")[0] == name)
        own[species] = float(roc_auc_score(truth == species, logits[:, column]))
    return own


if __name__ == "__main__":
    main()
