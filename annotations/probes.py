"""Probes on frozen embeddings: pure functions over NumPy arrays, no database.

A linear probe scores a window as ``sigmoid(embedding @ weights + bias)``. It is fitted
on standardised embeddings (so that one regularisation strength suits every model) and
the standardisation is folded back into the weights, leaving a plain linear head that
perch-hoplite and numpy alone can apply.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold


@dataclasses.dataclass(frozen=True)
class LinearHead:
    """weights: float32 [D]; bias: float32 scalar. logit = x @ weights + bias."""

    weights: np.ndarray
    bias: np.float32


@dataclasses.dataclass(frozen=True)
class HeldOutQuality:
    positives: int
    negatives: int
    roc_auc: float | None  # None when the held-out set lacks a class
    average_precision: float | None


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def linear_scores(embeddings: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities for embeddings [N, D] under weights [D, L] and bias [L]: [N, L]."""
    return sigmoid(embeddings.astype(np.float32) @ weights.astype(np.float32) + bias.astype(np.float32))


def fit_linear_probe(embeddings: np.ndarray, targets: np.ndarray, regularization_c: float = 1.0) -> LinearHead:
    """Logistic regression with balanced class weights.

    embeddings: float32 [N, D]; targets: bool [N]. Needs both classes.
    """
    if targets.all() or not targets.any():
        raise ValueError("training needs at least one positive and one negative example")
    x = embeddings.astype(np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    regression = LogisticRegression(C=regularization_c, class_weight="balanced", max_iter=5000)
    regression.fit((x - mean) / scale, targets)
    weights = regression.coef_[0] / scale
    bias = regression.intercept_[0] - float(np.dot(weights, mean))
    return LinearHead(weights.astype(np.float32), np.float32(bias))


def grouped_eval_mask(groups: np.ndarray, stratify: np.ndarray, eval_fraction: float, seed: int) -> np.ndarray:
    """Choose held-out examples by group (recording), so that neighbouring windows of one
    recording never sit on both sides of the split.

    groups: int [N] (recording ids); stratify: bool [N] (e.g. positive for any label).
    Returns bool [N], True for held out; all False when there are too few groups.
    """
    n_splits = max(2, round(1 / eval_fraction)) if eval_fraction > 0 else 0
    if n_splits == 0 or len(np.unique(groups)) < n_splits:
        return np.zeros(len(groups), dtype=bool)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, eval_index = next(splitter.split(np.zeros(len(groups)), stratify, groups))
    mask = np.zeros(len(groups), dtype=bool)
    mask[eval_index] = True
    return mask


def held_out_quality(targets: np.ndarray, scores: np.ndarray) -> HeldOutQuality:
    """ROC-AUC and average precision, or None where one class is missing."""
    positives = int(targets.sum())
    negatives = int(len(targets) - positives)
    if positives == 0 or negatives == 0:
        return HeldOutQuality(positives, negatives, None, None)
    return HeldOutQuality(
        positives,
        negatives,
        float(roc_auc_score(targets, scores)),
        float(average_precision_score(targets, scores)),
    )
