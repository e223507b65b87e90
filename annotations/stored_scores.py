"""Every window of a project scored once per classifier version, and kept.

Scoring a season (a million windows) means reading every embedding: minutes of work for
a worker, never for a request. Once a version is trained, a task scores the project's
windows deployment by deployment (``score_project``, with progress on the classifier)
and stores one 4-byte float per window and output (``WindowScore``). Review queues,
histograms and inference runs read those.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction

from annotations.embedding_store import iter_deployment_embeddings, raw_connection, read_alias
from annotations.models import Classifier, ClassifierLabel, TaskStatus, Window, WindowScore
from annotations.queueing import SCORE_PROJECT, enqueue_on_commit
from annotations.scoring import Scorer

SCORE_BINS = 100  # ClassifierLabel.score_histogram: bins of width 0.01
SCORING_LOCK_NAMESPACE = 0x5C0E  # pg_advisory_lock(namespace, classifier) around scoring

_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + np.zeros(2, ">i4").tobytes()  # signature, flags, extension length
_COPY_TRAILER = np.array([-1], ">i2").tobytes()
_SCORE_ROW = np.dtype(
    [
        ("fields", ">i2"),
        ("classifier_length", ">i4"),
        ("classifier_id", ">i8"),
        ("output_length", ">i4"),
        ("output_index", ">i2"),
        ("window_length", ">i4"),
        ("window_id", ">i8"),
        ("deployment_length", ">i4"),
        ("deployment_id", ">i8"),
        ("score_length", ">i4"),
        ("score", ">f4"),
    ]
)


def request_scoring(classifier: Classifier) -> None:
    """Queue the scoring of the project's windows by a trained classifier."""
    Classifier.objects.filter(pk=classifier.pk).update(scoring_status=TaskStatus.QUEUED)
    enqueue_on_commit(
        SCORE_PROJECT,
        classifier.pk,
        on_failure=lambda why: Classifier.objects.filter(pk=classifier.pk).update(scoring_status=TaskStatus.FAILED),
    )


def score_rows_binary(classifier_id: int, deployment_id: int, window_ids: np.ndarray, scores: np.ndarray) -> bytes:
    """The binary COPY stream of WindowScore rows for one deployment's window_ids int64 [N]
    and scores float [N, L] (output index = column), built by NumPy in one go."""
    n, outputs = scores.shape
    rows = np.empty(n * outputs, dtype=_SCORE_ROW)
    rows["fields"] = 5
    rows["classifier_length"], rows["output_length"], rows["window_length"] = 8, 2, 8
    rows["deployment_length"], rows["score_length"] = 8, 4
    rows["classifier_id"] = classifier_id
    rows["output_index"] = np.tile(np.arange(outputs, dtype=np.int16), n)
    rows["window_id"] = np.repeat(window_ids, outputs)
    rows["deployment_id"] = deployment_id
    rows["score"] = scores.reshape(-1)
    return _COPY_SIGNATURE + rows.tobytes() + _COPY_TRAILER


def store_scores(classifier_id: int, deployment_id: int, window_ids: np.ndarray, scores: np.ndarray) -> int:
    """COPY one deployment's scores into WindowScore, in the caller's transaction; returns
    rows written."""
    statement = (
        f"COPY {WindowScore._meta.db_table} (classifier_id, output_index, window_id, deployment_id, score) "
        "FROM STDIN WITH (FORMAT BINARY)"
    )
    with raw_connection().cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(score_rows_binary(classifier_id, deployment_id, window_ids, scores))
    return scores.size


def score_deployment(classifier: Classifier, scorer: Scorer, deployment_id: int, on_chunk=None) -> int:
    """Score and store the deployment's windows that ``classifier`` has not scored yet
    (all of them, or those ingested since). Returns how many windows were scored.

    Scoring by one classifier is serialized (an inference run may meet the scoring task
    on the same deployment), so no window is scored twice.
    """
    scored = 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [SCORING_LOCK_NAMESPACE, classifier.pk])
        try:
            # Fresh statistics: planned while the planner believes the table empty (after
            # the first deployment's COPY), "not scored yet" became a scan of every stored
            # score per window (measured: 47 s instead of 1.4 s for 50,000 windows).
            cursor.execute(f"ANALYZE {WindowScore._meta.db_table}")
            for window_ids, embeddings in iter_deployment_embeddings(
                deployment_id, classifier.embedding_model, unscored_by=classifier.pk
            ):
                with transaction.atomic():
                    store_scores(classifier.pk, deployment_id, window_ids, scorer.scores(embeddings))
                scored += len(window_ids)
                if on_chunk is not None:
                    on_chunk(len(window_ids))
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [SCORING_LOCK_NAMESPACE, classifier.pk])
    return scored


def score_project(classifier: Classifier) -> int:
    """Score every window of the classifier's project not yet scored, with progress on the
    classifier, then count each output's scores into its histogram. Returns windows scored."""
    scorer = Scorer(classifier)
    model = classifier.embedding_model
    total = Window.objects.filter(project_id=classifier.project_id, model=model).count()
    done = WindowScore.objects.filter(classifier=classifier, output_index=0).count()
    Classifier.objects.filter(pk=classifier.pk).update(
        scoring_status=TaskStatus.RUNNING, windows_to_score=total, windows_scored=done
    )
    progress = {"done": done}

    def advance(count: int) -> None:
        progress["done"] += count
        Classifier.objects.filter(pk=classifier.pk).update(windows_scored=progress["done"])

    scored = 0
    for deployment_id in classifier.project.deployments.values_list("pk", flat=True):
        scored += score_deployment(classifier, scorer, deployment_id, advance)
    update_histograms(classifier)
    Classifier.objects.filter(pk=classifier.pk).update(scoring_status=TaskStatus.DONE)
    return scored


def update_histograms(classifier: Classifier) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT output_index, least(width_bucket(score, 0, 1, {SCORE_BINS}), {SCORE_BINS}) AS bin, count(*) "
            f"FROM {WindowScore._meta.db_table} WHERE classifier_id = %s GROUP BY 1, 2",
            [classifier.pk],
        )
        counts: dict[int, list[int]] = {}
        for output_index, bin_number, count in cursor.fetchall():
            counts.setdefault(output_index, [0] * SCORE_BINS)[max(bin_number, 1) - 1] += count
    for output in classifier.outputs.all():
        ClassifierLabel.objects.filter(pk=output.pk).update(score_histogram=counts.get(output.index, [0] * SCORE_BINS))


def windows_above(output: ClassifierLabel, threshold: float) -> int | None:
    """How many of the project's scored windows reach ``threshold`` (to the histogram's
    0.01), or None before scoring."""
    if output.score_histogram is None:
        return None
    first_bin = min(int(np.floor(threshold * SCORE_BINS + 1e-9)), SCORE_BINS - 1)
    return int(sum(output.score_histogram[first_bin:]))


@dataclasses.dataclass(frozen=True)
class ScoreScope:
    """Which stored scores a queue reads: those of ``deployment_ids`` (None: every
    deployment but ``excluded_deployment_ids``) whose windows pass ``window_conditions``
    (SQL on the window ``w``, named parameters in ``params``); from the primary when
    ``primary`` (the conditions read rows just written there, which a standby may not hold yet)."""

    deployment_ids: list[int] | None = None
    excluded_deployment_ids: list[int] = dataclasses.field(default_factory=list)
    window_conditions: list[str] = dataclasses.field(default_factory=list)
    params: dict = dataclasses.field(default_factory=dict)
    primary: bool = False


def unlabeled_scores(
    output: ClassifierLabel, where: str, params: dict, order: str, limit: int, scope: ScoreScope = ScoreScope()
) -> list[tuple[int, float]]:
    """[(window_id, score)] of an output's stored scores in ``scope`` for windows not
    labeled for its label: ``where`` (SQL on ``s``, starting with AND, named parameters in
    ``params``) and ``order`` (on ``s``) pick which.

    Named deployments are read one by one in ``order`` from window_score_by_deployment,
    each to ``limit``, and merged: a deployment whose windows score low is not reached by
    walking the project's scores from the top (bench/scale.py: 419-865 ms for one
    deployment's queue that way, at 1M)."""
    joined = f"JOIN {Window._meta.db_table} w ON w.id = s.window_id " if scope.window_conditions else ""
    conditions = "".join(f"AND {condition} " for condition in scope.window_conditions)
    if scope.excluded_deployment_ids:
        conditions += "AND NOT (s.deployment_id = ANY(%(excluded_deployments)s)) "
    select = (
        f"SELECT s.window_id, s.score FROM {WindowScore._meta.db_table} s {joined}"
        "WHERE s.classifier_id = %(classifier)s AND s.output_index = %(output_index)s DEPLOYMENT AND NOT EXISTS "
        "(SELECT 1 FROM annotations_annotation a WHERE a.window_id = s.window_id AND a.label_id = %(label)s) "
        f"{conditions}{where} ORDER BY {order} LIMIT %(limit)s"
    )
    values = {
        **scope.params,
        **params,
        "classifier": output.classifier_id,
        "output_index": output.index,
        "label": output.label_id,
        "limit": limit,
        "excluded_deployments": scope.excluded_deployment_ids,
    }
    if scope.deployment_ids is None:
        sql = select.replace("DEPLOYMENT ", "")
    elif not scope.deployment_ids:
        return []
    else:
        parts = []
        for i, deployment_id in enumerate(scope.deployment_ids):
            values[f"deployment_{i}"] = deployment_id
            parts.append("(" + select.replace("DEPLOYMENT ", f"AND s.deployment_id = %(deployment_{i})s ") + ")")
        merged_order = order.replace("s.", "u.")
        sql = (
            f"SELECT u.window_id, u.score FROM ({' UNION ALL '.join(parts)}) u ORDER BY {merged_order} LIMIT %(limit)s"
        )
    with connections[DEFAULT_DB_ALIAS if scope.primary else read_alias()].cursor() as cursor:
        cursor.execute(sql, values)
        return [(int(window_id), float(score)) for window_id, score in cursor.fetchall()]
