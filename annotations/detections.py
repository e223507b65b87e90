"""Running a classifier over a deployment: the request that a worker fulfils."""

from __future__ import annotations

from django.db import transaction
from django.db.models import F, Sum

from annotations.errors import InputError
from annotations.models import Classifier, Deployment, InferenceRun, TaskStatus
from annotations.queueing import RUN_INFERENCE, enqueue_on_commit


def request_inference(classifier: Classifier, deployment_id: int, threshold: float | None, user) -> InferenceRun:
    """Queue a run; ``threshold`` None runs each label at the threshold chosen for it."""
    if classifier.status != TaskStatus.DONE:
        raise InputError(f"classifier v{classifier.version} is not trained ({classifier.status})")
    deployment = Deployment.objects.filter(pk=deployment_id, project=classifier.project_id).first()
    if deployment is None:
        raise InputError(f"deployment {deployment_id} is not part of this project")
    with transaction.atomic():
        chosen = list(classifier.outputs.order_by("index").values_list("threshold", flat=True))
        run = InferenceRun.objects.create(
            classifier=classifier,
            deployment=deployment,
            threshold=threshold,
            label_thresholds=chosen if threshold is None else [threshold] * len(chosen),
            created_by=user,
        )
        enqueue_on_commit(
            RUN_INFERENCE,
            run.pk,
            on_failure=lambda why: InferenceRun.objects.filter(pk=run.pk).update(status=TaskStatus.FAILED, error=why),
        )
    return run


def detections_per_site_and_day(run: InferenceRun) -> list[dict]:
    """Detection counts per (label, site, day): local days in the deployment's time zone,
    from the recordings' start times (None where a recording's start is unknown), as the
    worker counted them (``detection_rates.store_detection_counts``)."""
    rows = (
        run.detection_counts.values_list("label__name", "day")
        .annotate(detections=Sum("detections"))
        .order_by("label__name", F("day").asc(nulls_last=True))
    )
    site = run.deployment.site
    return [{"label": label, "site": site, "day": day, "detections": count} for label, day, count in rows]
