"""Turning a project's labels into a trained, stored classifier version."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from django.db import transaction
from django.db.models import Max

from annotations.embedding_store import window_embeddings
from annotations.errors import InputError
from annotations.models import (
    Annotation,
    Classifier,
    ClassifierLabel,
    EmbeddingModel,
    Label,
    LabelValue,
    Project,
    TaskStatus,
)
from annotations.probes import fit_linear_probe, grouped_eval_mask, held_out_quality, linear_scores
from annotations.queueing import enqueue_on_commit


@dataclasses.dataclass(frozen=True)
class TrainingSet:
    """window_ids: int [N]; recording_ids: int [N]; embeddings: float32 [N, D];
    targets: int8 [N, L], 1 positive, 0 negative, -1 not labeled for that label."""

    window_ids: np.ndarray
    recording_ids: np.ndarray
    embeddings: np.ndarray
    targets: np.ndarray


def request_training(project: Project, user, label_ids: Sequence[int], regularization_c: float = 1.0) -> Classifier:
    """Create the next classifier version and queue its training."""
    from workers.tasks import train_classifier

    labels = list(Label.objects.filter(project=project, pk__in=label_ids))
    if not labels or len(labels) != len(set(label_ids)):
        raise InputError("choose one or more labels of this project")
    model = EmbeddingModel.objects.filter(windows__annotations__label__in=labels).distinct().order_by("-pk").first()
    if model is None:
        raise InputError("no labeled windows yet for these labels")
    with transaction.atomic():
        version = (
            Classifier.objects.select_for_update().filter(project=project).aggregate(v=Max("version"))["v"] or 0
        ) + 1
        classifier = Classifier.objects.create(
            project=project, version=version, embedding_model=model, created_by=user, regularization_c=regularization_c
        )
        ClassifierLabel.objects.bulk_create(
            ClassifierLabel(classifier=classifier, label=label, index=i) for i, label in enumerate(labels)
        )
        enqueue_on_commit(train_classifier, classifier.pk, on_failure=lambda why: _failed(classifier, why))
    return classifier


def _failed(classifier: Classifier, reason: str) -> None:
    Classifier.objects.filter(pk=classifier.pk).update(status=TaskStatus.FAILED, error=reason)


def consensus_targets(classifier: Classifier) -> dict[tuple[int, int], bool]:
    """{(window_id, label_id): is_positive} from every annotator's labels.

    Unsure labels are left out, and so are windows on which annotators disagree
    (positive from one, negative from another): a probe should not learn a dispute.
    """
    votes: dict[tuple[int, int], set[str]] = {}
    annotations = Annotation.objects.filter(
        label__in=classifier.outputs.values("label"),
        window__model=classifier.embedding_model,
        window__recording__deployment__project=classifier.project,
    ).values_list("window_id", "label_id", "value")
    for window_id, label_id, value in annotations:
        votes.setdefault((window_id, label_id), set()).add(value)
    return {
        key: values == {LabelValue.POSITIVE}
        for key, values in votes.items()
        if values in ({LabelValue.POSITIVE}, {LabelValue.NEGATIVE})
    }


def training_set(classifier: Classifier) -> TrainingSet:
    label_ids = list(classifier.outputs.order_by("index").values_list("label_id", flat=True))
    targets_by_key = consensus_targets(classifier)
    window_ids = sorted({window_id for window_id, _ in targets_by_key})
    row = {window_id: i for i, window_id in enumerate(window_ids)}
    targets = np.full((len(window_ids), len(label_ids)), -1, dtype=np.int8)
    for (window_id, label_id), positive in targets_by_key.items():
        targets[row[window_id], label_ids.index(label_id)] = int(positive)
    embeddings = window_embeddings(window_ids)
    recordings = dict(classifier.embedding_model.windows.filter(pk__in=window_ids).values_list("pk", "recording_id"))
    return TrainingSet(
        window_ids=np.asarray(window_ids, dtype=np.int64),
        recording_ids=np.asarray([recordings[w] for w in window_ids], dtype=np.int64),
        embeddings=np.stack([embeddings[w] for w in window_ids])
        if window_ids
        else np.zeros((0, classifier.embedding_model.embedding_dim), np.float32),
        targets=targets,
    )


def train(classifier: Classifier) -> None:
    """Fit one linear probe per label on the training recordings, measure it on the
    held-out recordings, and store weights and quality. Raises ValueError with a reason
    a person can act on when the labels cannot support a probe."""
    data = training_set(classifier)
    outputs = list(classifier.outputs.order_by("index").select_related("label"))
    held_out = grouped_eval_mask(
        data.recording_ids, (data.targets == 1).any(axis=1), classifier.eval_fraction, classifier.random_seed
    )
    dim = classifier.embedding_model.embedding_dim
    weights = np.zeros((dim, len(outputs)), dtype=np.float32)
    bias = np.zeros(len(outputs), dtype=np.float32)
    for output in outputs:
        labeled = data.targets[:, output.index] >= 0
        train_rows = labeled & ~held_out
        eval_rows = labeled & held_out
        train_targets = data.targets[train_rows, output.index] == 1
        if train_targets.all() or not train_targets.any():
            raise InputError(
                f"label {output.label.name!r} needs at least one positive and one negative window "
                f"in the training recordings (has {int(train_targets.sum())} positive, "
                f"{int((~train_targets).sum())} negative)"
            )
        head = fit_linear_probe(data.embeddings[train_rows], train_targets, classifier.regularization_c)
        weights[:, output.index] = head.weights
        bias[output.index] = head.bias
        eval_targets = data.targets[eval_rows, output.index] == 1
        eval_scores = linear_scores(data.embeddings[eval_rows], head.weights[:, None], np.array([head.bias]))[:, 0]
        quality = held_out_quality(eval_targets, eval_scores)
        output.train_positives = int(train_targets.sum())
        output.train_negatives = int((~train_targets).sum())
        output.eval_positives = quality.positives
        output.eval_negatives = quality.negatives
        output.roc_auc = quality.roc_auc
        output.average_precision = quality.average_precision
    with transaction.atomic():
        ClassifierLabel.objects.bulk_update(
            outputs,
            ["train_positives", "train_negatives", "eval_positives", "eval_negatives", "roc_auc", "average_precision"],
        )
        classifier.weights = weights.tobytes()
        classifier.bias = bias.tobytes()
        classifier.status = TaskStatus.DONE
        classifier.error = ""
        classifier.save(update_fields=["weights", "bias", "status", "error"])


def classifier_arrays(classifier: Classifier) -> tuple[np.ndarray, np.ndarray]:
    """(weights float32 [D, L], bias float32 [L]) of a trained classifier."""
    if classifier.weights is None:
        raise InputError(f"classifier v{classifier.version} is not trained")
    n_labels = classifier.outputs.count()
    weights = np.frombuffer(bytes(classifier.weights), dtype=np.float32).reshape(-1, n_labels)
    return weights, np.frombuffer(bytes(classifier.bias), dtype=np.float32)
