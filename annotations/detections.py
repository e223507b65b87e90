"""Running a classifier over a deployment: the request that a worker fulfils."""

from __future__ import annotations

from django.db import connection, transaction

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
    """Detection counts per (label, site, day): local days in each deployment's time zone,
    from the recordings' start times (None where a recording's start is unknown)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT l.name, d.site, "
            "((r.started_at + make_interval(secs => w.start_s)) AT TIME ZONE d.timezone)::date AS day, count(*) "
            "FROM annotations_detection x JOIN annotations_window w ON w.id = x.window_id "
            "JOIN annotations_recording r ON r.id = w.recording_id "
            "JOIN annotations_deployment d ON d.id = r.deployment_id "
            "JOIN annotations_label l ON l.id = x.label_id "
            "WHERE x.run_id = %s GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 NULLS LAST",
            [run.pk],
        )
        return [{"label": label, "site": site, "day": day, "detections": count} for label, site, day, count in cursor]
