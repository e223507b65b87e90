"""Applying a stored classifier version to embeddings, whatever its probe type."""

from __future__ import annotations

import numpy as np

from annotations.embedding_store import window_matrix
from annotations.errors import InputError
from annotations.models import Classifier, ClassifierLabel, ProbeType, TaskStatus
from annotations.probes import (
    FoldSpread,
    HeldOutQuality,
    PrecisionRecall,
    PrototypeHead,
    QualityInterval,
    coinciding_prototypes,
    fold_spread,
    linear_scores,
    nearest_examples,
    precision_recall,
    prototype_scores,
    quality_interval,
)
from annotations.training import classifier_arrays


def prototype_head(output: ClassifierLabel, embedding_dim: int) -> PrototypeHead:
    def rows(field: bytes | None) -> np.ndarray:
        return np.frombuffer(bytes(field or b""), dtype=np.float32).reshape(-1, embedding_dim)

    return PrototypeHead(
        prototypes=rows(output.prototypes),
        negative_prototypes=rows(output.negative_prototypes),
        temperature=output.prototype_temperature,
        a=np.float32(output.calibration_a),
        b=np.float32(output.calibration_b),
    )


class Scorer:
    """Probabilities of a trained classifier: ``scores(embeddings [N, D]) -> [N, L]``,
    columns in the classifier's label order."""

    def __init__(self, classifier: Classifier):
        if classifier.status != TaskStatus.DONE:
            raise InputError(f"classifier v{classifier.version} is not trained ({classifier.status})")
        self.classifier = classifier
        self.outputs = list(classifier.outputs.order_by("index").select_related("label"))
        self.label_ids = np.asarray([o.label_id for o in self.outputs], dtype=np.int64)
        if classifier.probe_type == ProbeType.PROTOTYPE:
            dim = classifier.embedding_model.embedding_dim
            self._heads = [prototype_head(o, dim) for o in self.outputs]
        else:
            self._weights, self._bias = classifier_arrays(classifier)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        if self.classifier.probe_type == ProbeType.PROTOTYPE:
            return np.stack([prototype_scores(embeddings, head) for head in self._heads], axis=1)
        return linear_scores(embeddings, self._weights, self._bias)


def held_out_arrays(output: ClassifierLabel) -> tuple[np.ndarray, np.ndarray]:
    """(targets bool [n], scores float32 [n]) of an output's held-out examples."""
    if output.eval_scores is None:
        return np.zeros(0, bool), np.zeros(0, np.float32)
    scores = np.frombuffer(bytes(output.eval_scores), dtype=np.float32)
    targets = np.frombuffer(bytes(output.eval_targets), dtype=np.uint8).astype(bool)
    return targets, scores


def held_out_curve(output: ClassifierLabel) -> PrecisionRecall | None:
    targets, scores = held_out_arrays(output)
    return precision_recall(targets, scores) if len(targets) else None


def held_out_interval(output: ClassifierLabel) -> QualityInterval | None:
    """95% intervals of an output's held-out ROC-AUC and average precision."""
    targets, scores = held_out_arrays(output)
    return quality_interval(targets, scores)


def cross_validated(output: ClassifierLabel) -> FoldSpread | None:
    """Mean and spread of an output's quality over its cross-validation folds."""
    return fold_spread([HeldOutQuality(**fold) for fold in output.cross_validation])


def choose_threshold(output: ClassifierLabel, threshold: float | None, min_precision: float | None) -> float:
    """Set an output's threshold directly, or as the lowest reaching ``min_precision``
    on the held-out PR curve."""
    if min_precision is not None:
        curve = held_out_curve(output)
        chosen = curve.threshold_for_precision(min_precision) if curve else None
        if chosen is None:
            raise InputError(f"no threshold reaches precision {min_precision:g} on the held-out labels")
        threshold = chosen
    if threshold is None or not 0.0 <= threshold <= 1.0:
        raise InputError("give a threshold between 0 and 1, or a min_precision")
    output.threshold = float(threshold)
    output.save(update_fields=["threshold"])
    return output.threshold


def prototype_examples(output: ClassifierLabel, per_prototype: int = 4) -> tuple[list[list[int]], list[list[int]]]:
    """For each prototype of a prototype-probe output, the ids of the labeled training
    windows closest to it: what the classifier looks for, and (negative prototypes, among
    the negatives, weak ones included) what it takes for something else, to listen to."""
    classifier = output.classifier
    head = prototype_head(output, classifier.embedding_model.embedding_dim)
    examples = classifier.examples.filter(label_id=output.label_id, held_out=False)
    return (
        _nearest_windows(examples.filter(is_positive=True, weak=False), head.prototypes, per_prototype),
        _nearest_windows(examples.filter(is_positive=False), head.negative_prototypes, per_prototype),
    )


def coinciding_prototypes_of(output: ClassifierLabel) -> list[tuple[int, int, float]]:
    """Pairs of the output's prototypes (1-based, as the page numbers them) that stand for
    the same thing, with their cosine: where fewer prototypes would do."""
    head = prototype_head(output, output.classifier.embedding_model.embedding_dim)
    return [(i + 1, j + 1, cosine) for i, j, cosine in coinciding_prototypes(head.prototypes)]


def _nearest_windows(examples, prototypes: np.ndarray, per_prototype: int) -> list[list[int]]:
    window_ids = list(examples.order_by("window_id").values_list("window_id", flat=True))
    if not window_ids:
        return [[] for _ in prototypes]
    _, matrix = window_matrix(window_ids, prototypes.shape[1])
    return [[window_ids[i] for i in indices] for indices in nearest_examples(matrix, prototypes, per_prototype)]
