"""Probes on frozen embeddings: pure functions over NumPy arrays, no database.

Two probe types, both applied with numpy alone:

- **Linear**: ``probability = sigmoid(embedding @ weights + bias)``. Logistic regression
  with balanced class weights, fitted on standardised embeddings (so that one
  regularisation grid suits every model) with the standardisation folded back into the
  weights: a plain linear head, which perch-hoplite can load too. The regularisation
  strength is chosen by cross-validation grouped by time block (``time_blocks``).
- **Prototype**: K unit vectors for the label and K for what it is not (background,
  other calls), the logit the difference of their smoothed best cosine matches:
  ``logit = a * (smax_t(cos(embedding, prototypes)) - smax_t(cos(embedding, negative_prototypes))) + b``,
  ``smax_t(s) = t * log(sum_k exp(s_k / t))`` (the max itself where t = 0). Initialised by
  spherical k-means on each class, then trained as a whole, both classes counting, as
  Perch 2.0's prototype head and AudioProtoPNet are.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logsumexp, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

C_GRID = (0.01, 0.1, 1.0)
# Smoothed max over prototypes, in cosine units: every prototype learns, the best one
# counts most. At 0.3 the prototypes collapsed (4 into 2 pairs at cosine 0.9999, every
# negative prototype into one, on tests/loop_corpus.py): a real embedding's cosines to
# them differ by a few hundredths, so each took an equal share of every gradient. At 0.1
# they stay apart; held-out ROC-AUC moved by -0.006 to -0.010 on tests/probe_corpus.py
# (bench.probes) and by +0.000 to +0.037 on the loop corpus.
PROTOTYPE_TEMPERATURE = 0.1
# A penalty on the logit scale a: without it a separable training set drives a to infinity.
PROTOTYPE_SCALE_PENALTY = 1e-4
# Cross-validating on at most this many examples keeps training near a second for 10,000 labels.
CV_SAMPLE = 2000
# Fewer held-out examples of either class than this and the measures mean little.
MIN_HELD_OUT = 10
# Validation groups: blocks of a few minutes inside recordings (recorders write 1-24 h
# files), with the windows starting within a minute of a held-out block left out of
# training, since a bout of song runs on across windows.
BLOCK_S = 300.0
GAP_S = 60.0


@dataclasses.dataclass(frozen=True)
class LinearHead:
    """weights: float32 [D]; bias: float32 scalar. logit = x @ weights + bias."""

    weights: np.ndarray
    bias: np.float32
    regularization_c: float


@dataclasses.dataclass(frozen=True)
class PrototypeHead:
    """prototypes: float32 [K, D], negative_prototypes: float32 [J, D] (J may be 0), unit
    rows; temperature t >= 0 of the smoothed max; a, b: float32.
    probability = sigmoid(a * (smax_t(cos, prototypes) - smax_t(cos, negative_prototypes)) + b)."""

    prototypes: np.ndarray
    negative_prototypes: np.ndarray
    temperature: float
    a: np.float32
    b: np.float32


@dataclasses.dataclass(frozen=True)
class HeldOutQuality:
    positives: int
    negatives: int
    roc_auc: float | None  # None when the held-out set lacks a class
    average_precision: float | None


@dataclasses.dataclass(frozen=True)
class PrecisionRecall:
    """At each threshold t (ascending): precision and recall of ``score >= t``. All [M]."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    def threshold_for_precision(self, min_precision: float) -> float | None:
        """The lowest threshold whose precision reaches ``min_precision`` (most recall)."""
        reaching = np.nonzero(self.precision >= min_precision)[0]
        return float(self.thresholds[reaching[0]]) if len(reaching) else None

    def at(self, threshold: float) -> tuple[float, float]:
        """(precision, recall) of ``score >= threshold``."""
        index = int(np.searchsorted(self.thresholds, threshold, side="left"))
        if index >= len(self.thresholds):
            return 1.0, 0.0
        return float(self.precision[index]), float(self.recall[index])


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return expit(logits)  # 1 / (1 + exp(-logits)), without overflow warnings


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norms == 0, 1, norms)).astype(np.float32)


def linear_scores(embeddings: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Probabilities for embeddings [N, D] under weights [D, L] and bias [L]: [N, L]."""
    return sigmoid(embeddings.astype(np.float32) @ weights.astype(np.float32) + bias.astype(np.float32))


def smooth_max(similarity: np.ndarray, temperature: float) -> np.ndarray:
    """``t * log(sum_k exp(s_k / t))`` along the last axis of similarity [N, K]: [N]; the max where t = 0."""
    if temperature == 0:
        return similarity.max(axis=-1)
    return temperature * logsumexp(similarity / temperature, axis=-1)


def prototype_evidence(embeddings: np.ndarray, head: PrototypeHead) -> np.ndarray:
    """How much better embeddings [N, D] match the label's prototypes than its negative ones: [N]."""
    unit = unit_rows(embeddings)
    evidence = smooth_max(unit @ head.prototypes.astype(np.float32).T, head.temperature)
    if len(head.negative_prototypes):
        evidence = evidence - smooth_max(unit @ head.negative_prototypes.astype(np.float32).T, head.temperature)
    return evidence


def prototype_scores(embeddings: np.ndarray, head: PrototypeHead) -> np.ndarray:
    """Probabilities [N] of one label's prototype head."""
    return sigmoid(head.a * prototype_evidence(embeddings, head) + head.b)


def _require_both_classes(targets: np.ndarray) -> None:
    if targets.all() or not targets.any():
        raise ValueError("training needs at least one positive and one negative example")


def _fit_standardised(x: np.ndarray, y: np.ndarray, c: float, sample_weight: np.ndarray | None):
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    regression = LogisticRegression(C=c, class_weight="balanced", max_iter=1000, tol=1e-3)
    regression.fit((x - mean) / scale, y, sample_weight=sample_weight)
    weights = regression.coef_[0] / scale
    bias = regression.intercept_[0] - float(np.dot(weights, mean))
    return weights, bias


def choose_regularization(embeddings: np.ndarray, targets: np.ndarray, groups: np.ndarray, seed: int = 0) -> float:
    """The C of C_GRID with the best grouped cross-validated average precision.

    Falls back to 1.0 when there are too few groups or examples of a class to split.
    """
    rng = np.random.default_rng(seed)
    if len(targets) > CV_SAMPLE:
        keep = rng.choice(len(targets), CV_SAMPLE, replace=False)
        embeddings, targets, groups = embeddings[keep], targets[keep], groups[keep]
    n_splits = min(3, len(np.unique(groups)))
    if n_splits < 2 or min(targets.sum(), (~targets).sum()) < n_splits:
        return 1.0
    x = embeddings.astype(np.float32)
    scores = {c: [] for c in C_GRID}
    truths = []
    for train, test in GroupKFold(n_splits=n_splits).split(x, targets, groups):
        if targets[train].all() or not targets[train].any():
            continue
        mean, scale = x[train].mean(axis=0), x[train].std(axis=0)
        scale[scale == 0] = 1.0
        # One estimator along the C path, warm-started from the previous, stronger penalty.
        regression = LogisticRegression(class_weight="balanced", max_iter=1000, tol=1e-3, warm_start=True)
        for c in sorted(C_GRID):
            regression.set_params(C=c).fit((x[train] - mean) / scale, targets[train])
            scores[c].append(regression.decision_function((x[test] - mean) / scale))
        truths.append(targets[test])
    if not truths or not np.concatenate(truths).any():
        return 1.0
    truth = np.concatenate(truths)
    precision_by_c = {c: average_precision_score(truth, np.concatenate(scores[c])) for c in C_GRID}
    return max(C_GRID, key=lambda c: (precision_by_c[c], -c))


def fit_linear_probe(
    embeddings: np.ndarray,
    targets: np.ndarray,
    regularization_c: float = 1.0,
    sample_weight: np.ndarray | None = None,
) -> LinearHead:
    """Logistic regression with balanced class weights.

    embeddings: float32 [N, D]; targets: bool [N] (needs both classes);
    sample_weight: [N] or None (e.g. low weights for weak negatives).
    """
    _require_both_classes(targets)
    weights, bias = _fit_standardised(embeddings.astype(np.float32), targets, regularization_c, sample_weight)
    return LinearHead(weights.astype(np.float32), np.float32(bias), regularization_c)


def spherical_kmeans(unit: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k unit centroids [k, D] of unit rows [N, D] weighted by weights [N] (k capped at N)."""
    k = max(1, min(k, len(unit)))
    centroids = unit[rng.choice(len(unit), k, replace=False)]
    for _ in range(50):
        assignment = np.argmax(unit @ centroids.T, axis=1)
        updated = unit_rows(
            np.stack(
                [
                    (weights[assignment == j, None] * unit[assignment == j]).sum(axis=0)
                    if np.any(assignment == j)
                    else centroids[j]
                    for j in range(k)
                ]
            )
        )
        if np.allclose(updated, centroids, atol=1e-6):
            break
        centroids = updated
    return centroids


def _smooth_max_and_weights(similarity: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """smax_t of similarity [N, K] ([N]) and its gradient, the softmax weights [N, K]."""
    weights = softmax(similarity / temperature, axis=1)
    return smooth_max(similarity, temperature), weights


def _prototype_loss(
    theta: np.ndarray, unit: np.ndarray, targets: np.ndarray, weights: np.ndarray, k: int, temperature: float
) -> tuple[float, np.ndarray]:
    """Weighted cross-entropy of the prototype head and its gradient.

    theta: float64 [(k + J) * D + 2], the positive then negative prototypes (unnormalised
    rows), log a, b; unit: [N, D] unit embeddings; targets: float [N]; weights: [N].
    """
    dim = unit.shape[1]
    rows = theta[:-2].reshape(-1, dim).astype(unit.dtype)  # float32 products: twice as fast, as exact as needed
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    prototypes = rows / norms
    a, b = float(np.exp(theta[-2])), float(theta[-1])  # Python floats keep the arrays float32
    similarity = unit @ prototypes.T  # [N, k + J]
    positive, soft_positive = _smooth_max_and_weights(similarity[:, :k], temperature)
    evidence, soft = positive, soft_positive
    if len(prototypes) > k:
        negative, soft_negative = _smooth_max_and_weights(similarity[:, k:], temperature)
        evidence = positive - negative
        soft = np.concatenate([soft_positive, -soft_negative], axis=1)
    logit = a * evidence + b
    loss = np.sum(weights * (np.logaddexp(0, logit) - targets * logit)) + PROTOTYPE_SCALE_PENALTY * a * a
    d_logit = weights * (sigmoid(logit) - targets)  # [N]
    d_prototypes = (a * d_logit[:, None] * soft).T @ unit  # [k + J, D], on the unit rows
    # Through the normalisation: only the part orthogonal to each row moves it.
    d_rows = (d_prototypes - np.sum(d_prototypes * prototypes, axis=1, keepdims=True) * prototypes) / norms
    d_log_a = a * np.dot(d_logit, evidence) + 2 * PROTOTYPE_SCALE_PENALTY * a * a
    return float(loss), np.concatenate([d_rows.ravel(), [d_log_a, d_logit.sum()]]).astype(np.float64)


def fit_prototype_probe(
    embeddings: np.ndarray,
    targets: np.ndarray,
    k: int = 4,
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> PrototypeHead:
    """K prototypes for the positives and K for the negatives, trained together by L-BFGS.

    Initialised by spherical k-means on each class; the loss is the cross-entropy of
    the probability above, classes balanced and each example weighted (weak negatives
    little), plus a small penalty on a.
    embeddings: float32 [N, D]; targets: bool [N] (needs both classes); sample_weight: [N] or None.
    """
    _require_both_classes(targets)
    # Balanced by counts, then each example's weight, as the linear probe's LogisticRegression does.
    weights = np.where(targets, 0.5 / targets.sum(), 0.5 / (~targets).sum())
    if sample_weight is not None:
        weights = weights * np.asarray(sample_weight, np.float64)
    unit = unit_rows(embeddings)
    rng = np.random.default_rng(seed)

    def initial(side: np.ndarray) -> np.ndarray:
        rows = np.nonzero(side)[0]
        if len(rows) > CV_SAMPLE:  # a starting point: a sample places it as well, in a fraction of the time
            rows = rng.choice(rows, CV_SAMPLE, replace=False)
        return spherical_kmeans(unit[rows], weights[rows], k, rng)

    positives, negatives = initial(targets), initial(~targets)
    theta = np.concatenate([positives.ravel(), negatives.ravel(), [np.log(10.0), 0.0]])
    result = minimize(
        _prototype_loss,
        theta,
        args=(unit, targets.astype(np.float32), weights.astype(np.float32), len(positives), PROTOTYPE_TEMPERATURE),
        jac=True,
        method="L-BFGS-B",
        # Held-out ranking stopped changing by 50 iterations on tests/probe_corpus.py and on 10,000 labels.
        options={"maxiter": 100},
    )
    rows = unit_rows(result.x[:-2].reshape(-1, unit.shape[1]))
    return PrototypeHead(
        prototypes=rows[: len(positives)],
        negative_prototypes=rows[len(positives) :],
        temperature=PROTOTYPE_TEMPERATURE,
        a=np.float32(np.exp(result.x[-2])),
        b=np.float32(result.x[-1]),
    )


def nearest_examples(embeddings: np.ndarray, prototypes: np.ndarray, per_prototype: int = 5) -> list[np.ndarray]:
    """For each prototype [K, D], the indices of the ``per_prototype`` embeddings [N, D]
    closest to it among those it matches best of all prototypes: its own windows, what it
    stands for. (The windows closest to each prototype in turn are the same few for every
    one: all real embeddings share a mean that carries half their length.) A prototype
    that no embedding matches best gets none."""
    similarity = unit_rows(embeddings) @ prototypes.T  # [N, K]
    owner = np.argmax(similarity, axis=1)
    examples = []
    for j in range(prototypes.shape[0]):
        own = np.nonzero(owner == j)[0]
        examples.append(own[np.argsort(-similarity[own, j], kind="stable")][:per_prototype])
    return examples


# Prototypes closer than this (cosine) stand for the same thing: fewer would do.
COINCIDING_COSINE = 0.98


def coinciding_prototypes(prototypes: np.ndarray) -> list[tuple[int, int, float]]:
    """(i, j, cosine) of each pair of unit prototypes [K, D] at COINCIDING_COSINE or closer, i < j."""
    similarity = prototypes @ prototypes.T
    return [
        (i, j, float(similarity[i, j]))
        for i in range(len(prototypes))
        for j in range(i + 1, len(prototypes))
        if similarity[i, j] >= COINCIDING_COSINE
    ]


@dataclasses.dataclass(frozen=True)
class Split:
    """held_out: bool [N], the windows of the held-out time blocks; excluded: bool [N],
    windows outside them but within the gap of one: neither trained on nor measured."""

    held_out: np.ndarray
    excluded: np.ndarray

    @property
    def train(self) -> np.ndarray:
        return ~self.held_out & ~self.excluded


def time_blocks(recording_ids: np.ndarray, start_s: np.ndarray, block_s: float = BLOCK_S) -> np.ndarray:
    """Group ids [N]: contiguous blocks of ``block_s`` seconds inside each recording (a
    whole short recording is one block). recording_ids: int [N]; start_s: float [N]."""
    keys = np.stack([recording_ids, np.floor(np.asarray(start_s) / block_s)], axis=1)
    return np.unique(keys, axis=0, return_inverse=True)[1].ravel()


def within_gap(recording_ids: np.ndarray, start_s: np.ndarray, held_out: np.ndarray, gap_s: float) -> np.ndarray:
    """bool [N]: windows not held out that start within ``gap_s`` of a held-out window of
    their recording (calls and bouts run across window edges, so these would leak)."""
    near = np.zeros(len(held_out), dtype=bool)
    for recording in np.unique(recording_ids[held_out]):
        rows = np.nonzero((recording_ids == recording) & ~held_out)[0]
        held_starts = np.sort(start_s[held_out & (recording_ids == recording)])
        after = np.clip(np.searchsorted(held_starts, start_s[rows]), 1, len(held_starts) - 1)
        distance = np.abs(start_s[rows, None] - held_starts[np.stack([after - 1, after], axis=1)])
        near[rows] = distance.min(axis=1) <= gap_s
    return near


def time_block_splits(
    recording_ids: np.ndarray,
    start_s: np.ndarray,
    stratify: np.ndarray,
    labeled: np.ndarray,
    n_splits: int,
    seed: int,
    block_s: float = BLOCK_S,
    gap_s: float = GAP_S,
) -> list[Split]:
    """Cross-validation folds over time blocks (``time_blocks``), each with its gap excluded.

    The folds are drawn over the blocks of the ``labeled`` windows (bool [N]; weak
    negatives are not labels, and blocks holding only them would make empty folds),
    stratified by ``stratify`` (bool [N], e.g. positive for any label); every window of a
    held-out block is held out. Empty when the labels lie in fewer blocks than folds.
    """
    blocks = time_blocks(recording_ids, start_s, block_s)
    labeled_blocks = blocks[labeled]
    if n_splits < 2 or len(np.unique(labeled_blocks)) < n_splits:
        return []
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    splits = []
    for _, eval_index in splitter.split(np.zeros(len(labeled_blocks)), stratify[labeled], labeled_blocks):
        held_out = np.isin(blocks, labeled_blocks[eval_index])
        splits.append(Split(held_out, within_gap(recording_ids, start_s, held_out, gap_s)))
    return splits


def eval_splits(eval_fraction: float) -> int:
    """How many folds hold out ``eval_fraction`` each (0 for none)."""
    return max(2, round(1 / eval_fraction)) if eval_fraction > 0 else 0


def held_out_split(
    recording_ids: np.ndarray,
    start_s: np.ndarray,
    stratify: np.ndarray,
    labeled: np.ndarray,
    eval_fraction: float,
    seed: int,
) -> Split:
    """The single held-out split: the first fold of ``time_block_splits``; nothing held
    out when there are too few blocks."""
    splits = time_block_splits(recording_ids, start_s, stratify, labeled, eval_splits(eval_fraction), seed)
    return splits[0] if splits else no_split(len(recording_ids))


def no_split(n: int) -> Split:
    """Everything trains, nothing is held out."""
    return Split(np.zeros(n, dtype=bool), np.zeros(n, dtype=bool))


@dataclasses.dataclass(frozen=True)
class LabelsNeeded:
    """How many more labeled positives and negatives, and time blocks holding each, would
    let every held-out fold hold about MIN_HELD_OUT of each class. All 0: usable."""

    positives: int
    negatives: int
    blocks: int

    @property
    def usable(self) -> bool:
        return self.positives == self.negatives == self.blocks == 0


def labels_needed(blocks: np.ndarray, targets: np.ndarray, eval_fraction: float) -> LabelsNeeded:
    """What the held-out estimate still lacks, from the labels so far (weak negatives are
    not labels). blocks: int [N] time-block ids (``time_blocks``); targets: bool [N]."""
    n_splits = max(eval_splits(eval_fraction), 2)
    blocks_with = [len(np.unique(blocks[targets == side])) for side in (True, False)]
    counts = [int(targets.sum()), int((~targets).sum())]
    return LabelsNeeded(
        positives=max(0, MIN_HELD_OUT * n_splits - counts[0]),
        negatives=max(0, MIN_HELD_OUT * n_splits - counts[1]),
        blocks=max(0, n_splits - min(blocks_with)),
    )


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


@dataclasses.dataclass(frozen=True)
class FoldSpread:
    """Mean and standard deviation over cross-validation folds of ROC-AUC and average precision."""

    folds: int
    roc_auc: float
    roc_auc_std: float
    average_precision: float
    average_precision_std: float


def fold_spread(folds: list[HeldOutQuality]) -> FoldSpread | None:
    """Over the folds that measured both classes; None without any."""
    measured = [(q.roc_auc, q.average_precision) for q in folds if q.roc_auc is not None]
    if not measured:
        return None
    mean, std = np.mean(measured, axis=0), np.std(measured, axis=0)
    return FoldSpread(len(measured), float(mean[0]), float(std[0]), float(mean[1]), float(std[1]))


@dataclasses.dataclass(frozen=True)
class QualityInterval:
    """95% bootstrap intervals of held-out ROC-AUC and average precision: how far the
    figures may move on another draw of as many labeled windows."""

    roc_auc_low: float
    roc_auc_high: float
    average_precision_low: float
    average_precision_high: float
    resamples: int


def quality_interval(
    targets: np.ndarray, scores: np.ndarray, resamples: int = 400, seed: int = 0
) -> QualityInterval | None:
    """Stratified bootstrap of the held-out set (positives and negatives each drawn with
    replacement at their own count), computed for all resamples at once from resampling
    counts: milliseconds for thousands of windows, so a page can afford it.

    targets: bool [n]; scores: float [n]. None where a class is missing.
    """
    targets = np.asarray(targets, bool)
    scores = np.asarray(scores, np.float64)
    positives, negatives = scores[targets], scores[~targets]
    if not len(positives) or not len(negatives):
        return None
    # Bounded work and memory: [resamples, n] arrays of at most ~2M entries.
    resamples = min(resamples, max(100, 2_000_000 // len(scores)))
    rng = np.random.default_rng(seed)
    pos_counts = _draw_counts(rng, len(positives), resamples)
    neg_counts = _draw_counts(rng, len(negatives), resamples)
    roc_auc = _weighted_roc_auc(positives, negatives, pos_counts, neg_counts)
    average_precision = _weighted_average_precision(positives, negatives, pos_counts, neg_counts)
    low_auc, high_auc = np.percentile(roc_auc, [2.5, 97.5])
    low_ap, high_ap = np.percentile(average_precision, [2.5, 97.5])
    return QualityInterval(float(low_auc), float(high_auc), float(low_ap), float(high_ap), resamples)


def _draw_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """[resamples, n]: how often each of n items is drawn in each of n draws with replacement."""
    drawn = rng.integers(0, n, (resamples, n)) + np.arange(resamples)[:, None] * n
    return np.bincount(drawn.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def _weighted_roc_auc(positives, negatives, pos_counts, neg_counts) -> np.ndarray:
    """[resamples] P(positive scores above negative), ties counting half, under counts."""
    order = np.argsort(positives)
    sorted_positives = positives[order]
    cumulative = np.concatenate([np.zeros((len(pos_counts), 1)), np.cumsum(pos_counts[:, order], axis=1)], axis=1)
    below = cumulative[:, np.searchsorted(sorted_positives, negatives, side="left")]  # positives < each negative
    at_most = cumulative[:, np.searchsorted(sorted_positives, negatives, side="right")]
    above = cumulative[:, -1:] - at_most
    wins = (above + 0.5 * (at_most - below)) * neg_counts  # [resamples, negatives]
    return wins.sum(axis=1) / (len(positives) * len(negatives))


def _weighted_average_precision(positives, negatives, pos_counts, neg_counts) -> np.ndarray:
    """[resamples] average precision as scikit-learn defines it (precision at each distinct
    score, weighted by the recall it adds) under counts."""
    scores = np.concatenate([positives, negatives])
    order = np.argsort(-scores, kind="stable")
    is_positive = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])[order]
    counts = np.concatenate([pos_counts, neg_counts], axis=1)[:, order]
    true_positives = np.cumsum(counts * is_positive, axis=1)
    drawn = np.cumsum(counts, axis=1)
    # Only the last window of each run of equal scores is a threshold.
    ends = np.append(np.diff(scores[order]) != 0, True)
    true_positives, drawn = true_positives[:, ends], drawn[:, ends]
    precision = np.divide(true_positives, drawn, out=np.zeros_like(true_positives), where=drawn > 0)
    recall_added = np.diff(true_positives, axis=1, prepend=0) / len(positives)
    return (precision * recall_added).sum(axis=1)


def precision_recall(targets: np.ndarray, scores: np.ndarray) -> PrecisionRecall | None:
    """The held-out precision-recall curve, or None without positives."""
    if not targets.any():
        return None
    precision, recall, thresholds = precision_recall_curve(targets, scores)
    return PrecisionRecall(thresholds, precision[:-1], recall[:-1])
