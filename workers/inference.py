"""Scoring every window of a deployment with a trained classifier."""

from __future__ import annotations

import numpy as np
from django.db import transaction

from annotations.embedding_store import copy_rows, iter_deployment_embeddings
from annotations.models import Detection, InferenceRun, TaskStatus, Window
from annotations.scoring import Scorer


def run_inference(run: InferenceRun, chunk_size: int = 4096) -> int:
    """Score the deployment's windows in chunks; store detections at or above the
    threshold. Re-running a run replaces its detections. Returns the detection count."""
    classifier = run.classifier
    scorer = Scorer(classifier)
    label_ids = scorer.label_ids
    model = classifier.embedding_model
    total = Window.objects.filter(recording__deployment=run.deployment, model=model).count()
    InferenceRun.objects.filter(pk=run.pk).update(status=TaskStatus.RUNNING, windows_total=total, windows_scored=0)
    Detection.objects.filter(run=run).delete()
    scored = 0
    detections = 0
    for window_ids, embeddings in iter_deployment_embeddings(run.deployment_id, model, chunk_size):
        scores = scorer.scores(embeddings)  # [n, L]
        rows, columns = np.nonzero(scores >= run.threshold)
        with transaction.atomic():
            detections += copy_rows(
                Detection._meta.db_table,
                ["run_id", "window_id", "label_id", "score"],
                ["bigint", "bigint", "bigint", "double precision"],
                (
                    (run.pk, int(window_ids[r]), int(label_ids[c]), float(scores[r, c]))
                    for r, c in zip(rows, columns, strict=True)
                ),
            )
        scored += len(window_ids)
        InferenceRun.objects.filter(pk=run.pk).update(windows_scored=scored)
    InferenceRun.objects.filter(pk=run.pk).update(status=TaskStatus.DONE, error="")
    return detections
