"""Running a classifier over a deployment: the request that a worker fulfils."""

from __future__ import annotations

from django.db import transaction

from annotations.errors import InputError
from annotations.models import Classifier, Deployment, InferenceRun, TaskStatus
from annotations.queueing import enqueue_on_commit


def request_inference(classifier: Classifier, deployment_id: int, threshold: float, user) -> InferenceRun:
    from workers.tasks import run_inference

    if classifier.status != TaskStatus.DONE:
        raise InputError(f"classifier v{classifier.version} is not trained ({classifier.status})")
    deployment = Deployment.objects.filter(pk=deployment_id, project=classifier.project_id).first()
    if deployment is None:
        raise InputError(f"deployment {deployment_id} is not part of this project")
    with transaction.atomic():
        run = InferenceRun.objects.create(
            classifier=classifier, deployment=deployment, threshold=threshold, created_by=user
        )
        enqueue_on_commit(
            run_inference,
            run.pk,
            on_failure=lambda why: InferenceRun.objects.filter(pk=run.pk).update(status=TaskStatus.FAILED, error=why),
        )
    return run
