"""An inference run: a classifier's detections over one deployment, from its stored scores."""

from __future__ import annotations

from django.db import connection, transaction

from annotations.call_density import store_density_strata
from annotations.detection_events import store_detection_events
from annotations.detection_rates import store_detection_counts, store_sun_counts
from annotations.models import Detection, InferenceRun, TaskStatus, Window, WindowScore
from annotations.scoring import Scorer
from annotations.stored_scores import score_deployment


def run_inference(run: InferenceRun) -> int:
    """Store the deployment's detections: windows whose stored score reaches the run's
    threshold. Windows not scored yet (ingested after the classifier's scoring) are
    scored first. Re-running a run replaces its detections. Returns the detection count."""
    classifier = run.classifier
    total = Window.objects.filter(recording__deployment_id=run.deployment_id, model=classifier.embedding_model).count()
    InferenceRun.objects.filter(pk=run.pk).update(status=TaskStatus.RUNNING, windows_total=total, windows_scored=0)
    already = WindowScore.objects.filter(
        classifier=classifier, output_index=0, window__recording__deployment_id=run.deployment_id
    ).count()
    progress = {"done": already}

    def advance(count: int) -> None:
        progress["done"] += count
        InferenceRun.objects.filter(pk=run.pk).update(windows_scored=progress["done"])

    score_deployment(classifier, Scorer(classifier), run.deployment_id, advance)
    with transaction.atomic(), connection.cursor() as cursor:
        Detection.objects.filter(run=run).delete()
        cursor.execute(
            f"INSERT INTO {Detection._meta.db_table} (run_id, window_id, label_id, score) "
            "SELECT %(run)s, s.window_id, o.label_id, s.score "
            f"FROM {WindowScore._meta.db_table} s "
            "JOIN annotations_classifierlabel o ON o.classifier_id = s.classifier_id AND o.index = s.output_index "
            "JOIN annotations_window w ON w.id = s.window_id "
            "WHERE s.classifier_id = %(classifier)s AND w.deployment_id = %(deployment)s "
            "AND s.score >= (%(thresholds)s::real[])[s.output_index + 1]",
            {
                "run": run.pk,
                "classifier": classifier.pk,
                "deployment": run.deployment_id,
                "thresholds": run.label_thresholds,
            },
        )
        detections = cursor.rowcount
        store_detection_events(run)
        store_density_strata(run)
        store_detection_counts(run)
        store_sun_counts(run)
    InferenceRun.objects.filter(pk=run.pk).update(status=TaskStatus.DONE, error="", windows_scored=total)
    return detections
