"""Turning a project's labels into a trained, stored, immutable classifier version."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from django.db import transaction
from django.db.models import Max
from threadpoolctl import threadpool_limits

from annotations.embedding_store import copy_rows, raw_connection, window_matrix
from annotations.errors import InputError
from annotations.models import (
    Annotation,
    Classifier,
    ClassifierExample,
    ClassifierLabel,
    EmbeddingModel,
    EvaluationSource,
    Label,
    LabelValue,
    ProbeType,
    Project,
    Recording,
    TaskStatus,
    Window,
)
from annotations.probes import (
    LabelsNeeded,
    LinearHead,
    PrototypeHead,
    Split,
    choose_regularization,
    fit_linear_probe,
    fit_prototype_probe,
    held_out_quality,
    held_out_split,
    labels_needed,
    linear_scores,
    no_split,
    prototype_scores,
    time_block_splits,
    time_blocks,
)
from annotations.queueing import TRAIN_CLASSIFIER, enqueue_on_commit
from annotations.weak_negatives import latest_output, near_positives, scored_likely, stored_scores, weak_negative_count

# Folds of the cross-validated quality shown beside the single held-out split.
CV_FOLDS = 4


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """window_ids: int [N]; recording_ids: int [N]; start_s: float [N], each window's
    start in its recording; embeddings: float32 [N, D];
    targets: int8 [N, L], 1 positive, 0 negative, -1 not labeled for that label (and
    for a weak negative left out of that label's training as a likely positive);
    weak: bool [N], True for unlabeled windows drawn as weak negatives;
    evaluation_only: bool [N], True for labels in held-out deployments."""

    window_ids: np.ndarray
    recording_ids: np.ndarray
    start_s: np.ndarray
    embeddings: np.ndarray
    targets: np.ndarray
    weak: np.ndarray
    evaluation_only: np.ndarray


def request_training(
    project: Project,
    user,
    label_ids: Sequence[int],
    probe_type: str = ProbeType.LINEAR,
    regularization_c: float | None = None,
    prototypes_per_label: int = 4,
    weak_negatives: int | None = None,
) -> Classifier:
    """Create the next classifier version and queue its training. ``weak_negatives``:
    how many unlabeled windows to draw as weak negatives, None for as many as the labels
    call for (``weak_negative_count``), 0 for none."""
    labels = list(Label.objects.filter(project=project, pk__in=label_ids))
    if not labels or len(labels) != len(set(label_ids)):
        raise InputError("choose one or more labels of this project")
    model = EmbeddingModel.objects.filter(windows__annotations__label__in=labels).distinct().order_by("-pk").first()
    if model is None:
        raise InputError("no labeled windows yet for these labels")
    _refuse_untrainable(project, model, labels, weak_negatives)
    with transaction.atomic():
        latest = Classifier.objects.select_for_update().filter(project=project).aggregate(v=Max("version"))["v"]
        classifier = Classifier.objects.create(
            project=project,
            version=(latest or 0) + 1,
            probe_type=probe_type,
            embedding_model=model,
            created_by=user,
            regularization_c=regularization_c,
            prototypes_per_label=prototypes_per_label,
            weak_negatives=weak_negatives,
        )
        ClassifierLabel.objects.bulk_create(
            ClassifierLabel(classifier=classifier, label=label, index=i) for i, label in enumerate(labels)
        )
        enqueue_on_commit(TRAIN_CLASSIFIER, classifier.pk, on_failure=lambda why: _failed(classifier, why))
    return classifier


def _refuse_untrainable(
    project: Project, model: EmbeddingModel, labels: list[Label], weak_negatives: int | None
) -> None:
    """Refuse, before a version number is taken, what training would refuse for want of
    labels: a label without positives, or without negatives where weak ones are refused."""
    values = (
        Annotation.objects.filter(
            label__in=labels,
            window__model=model,
            window__recording__deployment__project=project,
            window__deployment__held_out=False,  # held-out deployments' labels never train
        )
        .values("label_id", "value")
        .distinct()
    )
    present = {(row["label_id"], row["value"]) for row in values}
    if project.exclusive_labels:  # another label's positives are this one's negatives
        positive = {label_id for label_id, value in present if value == LabelValue.POSITIVE}
        present |= {(label.pk, LabelValue.NEGATIVE) for label in labels if positive - {label.pk}}
    for label in labels:
        if (label.pk, LabelValue.POSITIVE) not in present:
            raise InputError(f"label {label.name!r} has no positive windows yet: label some first")
        if (label.pk, LabelValue.NEGATIVE) not in present and weak_negatives == 0:
            raise InputError(
                f"label {label.name!r} has no negative windows yet: label some, or let training draw weak negatives"
            )


def _failed(classifier: Classifier, reason: str) -> None:
    Classifier.objects.filter(pk=classifier.pk).update(status=TaskStatus.FAILED, error=reason)


def _consensus(annotations) -> dict[tuple[int, int], bool]:
    """{(window_id, label_id): is_positive} from (window_id, label_id, value) rows of every annotator.

    Unsure labels are left out, and so are windows on which annotators disagree
    (positive from one, negative from another): a probe should not learn a dispute.
    """
    votes: dict[tuple[int, int], set[str]] = {}
    for window_id, label_id, value in annotations:
        votes.setdefault((window_id, label_id), set()).add(value)
    return {
        key: values == {LabelValue.POSITIVE}
        for key, values in votes.items()
        if values in ({LabelValue.POSITIVE}, {LabelValue.NEGATIVE})
    }


def exclusive_targets(targets: dict[tuple[int, int], bool], label_ids: list[int]) -> dict[tuple[int, int], bool]:
    """``targets`` where a window positive for one label is also a negative for each other
    label it has no consensus for (labels that never share a window)."""
    implied = {
        (window_id, other): False
        for (window_id, label_id), positive in targets.items()
        if positive
        for other in label_ids
        if other != label_id
    }
    return {**implied, **targets}  # what people said wins over what is implied


def consensus_targets(classifier: Classifier) -> dict[tuple[int, int], bool]:
    """The consensus labels (``_consensus``) a classifier version trains on, widened by
    ``exclusive_targets`` when the project's labels are exclusive."""
    label_ids = list(classifier.outputs.values_list("label_id", flat=True))
    targets = _consensus(
        Annotation.objects.filter(
            label__in=label_ids,
            window__model=classifier.embedding_model,
            window__recording__deployment__project=classifier.project,
        ).values_list("window_id", "label_id", "value")
    )
    return exclusive_targets(targets, label_ids) if classifier.project.exclusive_labels else targets


def labels_needed_by_label(project: Project, eval_fraction: float = 0.25) -> dict[int, LabelsNeeded]:
    """{label_id: what more labels a usable held-out estimate needs}, from the project's
    consensus labels so far, before any training is asked for."""
    rows = list(
        Annotation.objects.filter(window__recording__deployment__project=project).values_list(
            "window_id", "label_id", "value", "window__recording_id", "window__start_s"
        )
    )
    place = {window_id: (recording_id, start_s) for window_id, _, _, recording_id, start_s in rows}
    by_label: dict[int, list[tuple[int, bool]]] = {}
    for (window_id, label_id), positive in _consensus(row[:3] for row in rows).items():
        by_label.setdefault(label_id, []).append((window_id, positive))
    needed = {}
    for label in project.labels.all():
        labeled = by_label.get(label.pk, [])
        recordings = np.asarray([place[w][0] for w, _ in labeled], dtype=np.int64)
        starts = np.asarray([place[w][1] for w, _ in labeled], dtype=np.float64)
        targets = np.asarray([positive for _, positive in labeled], dtype=bool)
        needed[label.pk] = labels_needed(time_blocks(recordings, starts), targets, eval_fraction)
    return needed


def _random_unlabeled_windows(classifier: Classifier, count: int, exclude: set[int]) -> list[int]:
    """Up to ``count`` of the project's windows drawn uniformly at random without
    replacement (seeded by the classifier's random_seed), none of ``exclude``.

    Positions are drawn among the recordings' window counts and each is read down
    one_window_per_start at its offset within its recording: a few index pages per draw,
    whereas ordering the project's windows by a hash read all of them (at 10 million
    windows, the whole table) for every training.
    """
    if count <= 0:
        return []
    recordings = np.array(
        Recording.objects.filter(
            deployment__project_id=classifier.project_id,
            deployment__held_out=False,
            embedding_model_id=classifier.embedding_model_id,
            windows_done__gt=0,
        )
        .order_by("pk")
        .values_list("pk", "windows_done"),
        dtype=np.int64,
    ).reshape(-1, 2)
    total = int(recordings[:, 1].sum())
    if total == 0:
        return []
    rng = np.random.default_rng(classifier.random_seed)
    positions = np.sort(rng.choice(total, size=min(total, count + len(exclude)), replace=False))
    ends = np.cumsum(recordings[:, 1])
    which = np.searchsorted(ends, positions, side="right")
    offsets = positions - (ends[which] - recordings[which, 1])
    with raw_connection().cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT w.id FROM annotations_window w WHERE w.recording_id = s.recording AND w.model_id = %s "
            "ORDER BY w.start_s OFFSET s.position LIMIT 1) FROM unnest(%s::bigint[], %s::bigint[]) "
            "WITH ORDINALITY s(recording, position, draw) ORDER BY s.draw",
            [classifier.embedding_model_id, recordings[which, 0].tolist(), offsets.tolist()],
        )
        drawn = [row[0] for row in cursor.fetchall()]
    # None: a recording re-embedded since its count was noted, with fewer windows now.
    kept = [window_id for window_id in drawn if window_id is not None and window_id not in exclude]
    return [kept[i] for i in rng.permutation(len(kept))[:count]]


def training_set(classifier: Classifier) -> TrainingSet:
    label_ids = list(classifier.outputs.order_by("index").values_list("label_id", flat=True))
    targets_by_key = consensus_targets(classifier)
    labeled = sorted({window_id for window_id, _ in targets_by_key})
    wanted = classifier.weak_negatives
    weak = _random_unlabeled_windows(
        classifier, weak_negative_count(len(labeled)) if wanted is None else wanted, set(labeled)
    )
    window_ids = labeled + weak
    row = {window_id: i for i, window_id in enumerate(window_ids)}
    targets = np.full((len(window_ids), len(label_ids)), -1, dtype=np.int8)
    targets[len(labeled) :] = 0
    for (window_id, label_id), positive in targets_by_key.items():
        targets[row[window_id], label_ids.index(label_id)] = int(positive)
    recording_ids, embeddings = window_matrix(window_ids, classifier.embedding_model.embedding_dim)
    places = {
        pk: (start_s, held_out)
        for pk, start_s, held_out in Window.objects.filter(pk__in=window_ids).values_list(
            "pk", "start_s", "deployment__held_out"
        )
    }
    data = TrainingSet(
        window_ids=np.asarray(window_ids, dtype=np.int64),
        recording_ids=recording_ids,
        start_s=np.asarray([places[w][0] for w in window_ids], dtype=np.float64),
        embeddings=embeddings,
        targets=targets,
        weak=np.arange(len(window_ids)) >= len(labeled),
        evaluation_only=np.asarray([places[w][1] for w in window_ids], dtype=bool),
    )
    for index, label_id in enumerate(label_ids):
        _leave_out_likely_positives(classifier, data, index, label_id)
    return data


def _leave_out_likely_positives(classifier: Classifier, data: TrainingSet, index: int, label_id: int) -> None:
    """Unmark, for one label, the weak negatives that look like its calls
    (``annotations.weak_negatives``): near its labeled positives, or scored likely by
    its latest version."""
    weak_rows = np.nonzero(data.weak)[0]
    positive_rows = np.nonzero((data.targets[:, index] == 1) & ~data.evaluation_only)[0]
    if len(weak_rows) == 0 or len(positive_rows) == 0:
        return
    likely = near_positives(data.embeddings[weak_rows], data.embeddings[positive_rows])
    previous = latest_output(classifier.project_id, classifier.embedding_model_id, label_id)
    if previous is not None:
        scores = stored_scores(previous, data.window_ids[np.concatenate([weak_rows, positive_rows])])
        likely |= scored_likely(scores[: len(weak_rows)], scores[len(weak_rows) :], previous.threshold)
    data.targets[weak_rows[likely], index] = -1


def train(classifier: Classifier) -> None:
    """Fit one probe per label on the training recordings, measure it on the held-out
    recordings, and store it with its labels snapshot. Raises InputError with a reason a
    person can act on when the labels cannot support a probe."""
    # These problems are small: one BLAS/OpenMP thread fits them several times faster
    # than two threads that wait on each other (bench/training.py), and leaves the other
    # core to whatever else the worker's machine is doing.
    with threadpool_limits(limits=1):
        _train(classifier)


def _train(classifier: Classifier) -> None:
    data = training_set(classifier)
    outputs = list(classifier.outputs.order_by("index").select_related("label"))
    blocks = time_blocks(data.recording_ids, data.start_s)
    split, evaluated_on = _held_out_split(classifier, data)
    dim = classifier.embedding_model.embedding_dim
    weights = np.zeros((dim, len(outputs)), dtype=np.float32)
    bias = np.zeros(len(outputs), dtype=np.float32)
    for output in outputs:
        column = data.targets[:, output.index]
        train_rows = (column >= 0) & split.train
        train_targets = column[train_rows] == 1
        if train_targets.all() or not train_targets.any():
            raise InputError(
                f"label {output.label.name!r} needs at least one positive and one negative window "
                f"(labeled, or weak negatives) to train on (has {int(train_targets.sum())} positive, "
                f"{int((~train_targets).sum())} negative)"
            )
        head = _fit(classifier, data, blocks, train_rows, column, classifier.regularization_c)
        if isinstance(head, PrototypeHead):
            output.prototypes = head.prototypes.tobytes()
            output.negative_prototypes = head.negative_prototypes.tobytes()
            output.prototype_temperature = head.temperature
            output.calibration_a, output.calibration_b = float(head.a), float(head.b)
        else:
            weights[:, output.index] = head.weights
            bias[output.index] = head.bias
            output.regularization_c = head.regularization_c
        eval_rows = _eval_rows(data, split, column)
        eval_scores = _scores(head, data.embeddings[eval_rows])
        eval_targets = column[eval_rows] == 1
        quality = held_out_quality(eval_targets, eval_scores)
        weak_used = int((train_rows & data.weak).sum())
        output.train_positives = int(train_targets.sum())
        output.train_negatives = int((~train_targets).sum()) - weak_used
        output.weak_negatives_used = weak_used
        output.weak_negatives_left_out = int((data.weak & (column < 0)).sum())
        output.evaluated_on = evaluated_on if quality.roc_auc is not None else EvaluationSource.NOTHING
        output.eval_positives = quality.positives
        output.eval_negatives = quality.negatives
        output.roc_auc = quality.roc_auc
        output.average_precision = quality.average_precision
        output.eval_scores = eval_scores.astype(np.float32).tobytes()
        output.eval_targets = eval_targets.astype(np.uint8).tobytes()
        output.cross_validation = _cross_validation(classifier, data, blocks, column, output.regularization_c)
    with transaction.atomic():
        ClassifierLabel.objects.bulk_update(
            outputs,
            [
                "train_positives",
                "train_negatives",
                "weak_negatives_used",
                "weak_negatives_left_out",
                "evaluated_on",
                "eval_positives",
                "eval_negatives",
                "roc_auc",
                "average_precision",
                "eval_scores",
                "eval_targets",
                "regularization_c",
                "prototypes",
                "negative_prototypes",
                "prototype_temperature",
                "calibration_a",
                "calibration_b",
                "cross_validation",
            ],
        )
        _store_snapshot(classifier, data, outputs, split)
        if classifier.probe_type == ProbeType.LINEAR:
            classifier.weights = weights.tobytes()
            classifier.bias = bias.tobytes()
        classifier.status = TaskStatus.DONE
        # Scoring follows at once (stored_scores.request_scoring): marked in the same write,
        # so a page never sees a trained classifier that is neither scoring nor scored, and
        # keeps refreshing until the scores are there.
        classifier.scoring_status = TaskStatus.QUEUED
        classifier.error = ""
        classifier.save(update_fields=["weights", "bias", "status", "scoring_status", "error"])


def _eval_rows(data: TrainingSet, split: Split, column: np.ndarray) -> np.ndarray:
    """Held-out rows that measure a label: labeled for it. Weak negatives are guesses, never measured on."""
    return (column >= 0) & split.held_out & ~data.weak


def _trains_and_measures(data: TrainingSet, split: Split, column: np.ndarray) -> tuple[bool, bool]:
    """Whether a split leaves both classes of a label to train on, and both to measure on."""
    train = column[(column >= 0) & split.train]
    held_out = column[_eval_rows(data, split, column)]
    return len(np.unique(train)) == 2, len(np.unique(held_out)) == 2


def _held_out_split(classifier: Classifier, data: TrainingSet) -> tuple[Split, str]:
    """(split, EvaluationSource). The held-out deployments' labels where they measure
    some label; else the time-block split of the other labels, unless it would leave a
    label untrainable or measure nothing (only positives labeled so far, as after a
    first page of hits): then everything trains. Held-out deployments never train."""
    by_deployment = Split(data.evaluation_only, np.zeros(len(data.window_ids), dtype=bool))
    if data.evaluation_only.any():
        verdicts = [_trains_and_measures(data, by_deployment, column) for column in data.targets.T]
        if all(trains for trains, _ in verdicts) and any(measures for _, measures in verdicts):
            return by_deployment, EvaluationSource.HELD_OUT_DEPLOYMENTS
    split = _apart_from_held_out_deployments(
        held_out_split(
            data.recording_ids,
            data.start_s,
            (data.targets == 1).any(axis=1),
            ~data.weak & ~data.evaluation_only,
            classifier.eval_fraction,
            classifier.random_seed,
        ),
        data,
    )
    verdicts = [_trains_and_measures(data, split, column) for column in data.targets.T]
    if all(trains for trains, _ in verdicts) and any(measures for _, measures in verdicts):
        return split, EvaluationSource.TIME_BLOCKS
    return _apart_from_held_out_deployments(no_split(len(data.window_ids)), data), EvaluationSource.NOTHING


def _apart_from_held_out_deployments(split: Split, data: TrainingSet) -> Split:
    """``split`` with the held-out deployments' labels neither trained on nor measured."""
    return Split(split.held_out & ~data.evaluation_only, split.excluded | data.evaluation_only)


def _fit(
    classifier: Classifier,
    data: TrainingSet,
    blocks: np.ndarray,
    rows: np.ndarray,
    column: np.ndarray,
    regularization_c: float | None,
) -> LinearHead | PrototypeHead:
    """One label's probe on the given rows; weak negatives at their small weight."""
    x, targets = data.embeddings[rows], column[rows] == 1
    sample_weight = np.where(data.weak[rows], classifier.weak_negative_weight, 1.0)
    if classifier.probe_type == ProbeType.PROTOTYPE:
        return fit_prototype_probe(x, targets, classifier.prototypes_per_label, classifier.random_seed, sample_weight)
    c = regularization_c or choose_regularization(x, targets, blocks[rows], classifier.random_seed)
    return fit_linear_probe(x, targets, c, sample_weight)


def _scores(head: LinearHead | PrototypeHead, embeddings: np.ndarray) -> np.ndarray:
    if isinstance(head, PrototypeHead):
        return prototype_scores(embeddings, head)
    return linear_scores(embeddings, head.weights[:, None], np.array([head.bias]))[:, 0]


def _cross_validation(
    classifier: Classifier, data: TrainingSet, blocks: np.ndarray, column: np.ndarray, regularization_c: float | None
) -> list[dict]:
    """One label's quality on each time-block fold that can train and measure it:
    [{"positives", "negatives", "roc_auc", "average_precision"}]. The linear probe keeps
    the C of the full fit, so folds measure the probe, not a second search for C."""
    folds = []
    for fold in time_block_splits(
        data.recording_ids,
        data.start_s,
        (data.targets == 1).any(axis=1),
        ~data.weak & ~data.evaluation_only,
        CV_FOLDS,
        classifier.random_seed,
    ):
        split = _apart_from_held_out_deployments(fold, data)
        if not all(_trains_and_measures(data, split, column)):
            continue
        head = _fit(classifier, data, blocks, (column >= 0) & split.train, column, regularization_c)
        eval_rows = _eval_rows(data, split, column)
        quality = held_out_quality(column[eval_rows] == 1, _scores(head, data.embeddings[eval_rows]))
        folds.append(dataclasses.asdict(quality))
    return folds


def _store_snapshot(classifier: Classifier, data: TrainingSet, outputs, split: Split) -> None:
    """Write the labels snapshot with COPY (the ORM's bulk_create took seconds for 10,000 rows)."""
    ClassifierExample.objects.filter(classifier=classifier).delete()
    copy_rows(
        ClassifierExample._meta.db_table,
        ["classifier_id", "window_id", "label_id", "is_positive", "held_out", "weak"],
        ["bigint", "bigint", "bigint", "boolean", "boolean", "boolean"],
        (
            (
                classifier.pk,
                int(data.window_ids[row]),
                output.label_id,
                bool(data.targets[row, output.index] == 1),
                bool(split.held_out[row]),
                bool(data.weak[row]),
            )
            for output in outputs
            # Windows in the gap around a held-out block were neither trained on nor measured.
            for row in np.nonzero((data.targets[:, output.index] >= 0) & ~split.excluded)[0]
        ),
    )


def classifier_arrays(classifier: Classifier) -> tuple[np.ndarray, np.ndarray]:
    """(weights float32 [D, L], bias float32 [L]) of a trained linear classifier."""
    if classifier.weights is None:
        raise InputError(f"classifier v{classifier.version} has no linear weights ({classifier.status})")
    n_labels = classifier.outputs.count()
    weights = np.frombuffer(bytes(classifier.weights), dtype=np.float32).reshape(-1, n_labels)
    return weights, np.frombuffer(bytes(classifier.bias), dtype=np.float32)
