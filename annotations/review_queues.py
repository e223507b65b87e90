"""Active learning: which unlabeled windows an annotator should look at next.

Queues read the classifier's stored scores (``annotations.stored_scores``) through their
indexes, never the embeddings, so a page answers in milliseconds at a million windows.
Of the project's windows not yet labeled for the label, they pick:

- ``top``: the highest scores (is the classifier precise where it is surest?);
- ``margin``: the scores nearest the chosen threshold (where a label teaches the most);
- ``bins``: an equal number at random from each tenth of the score range (unbiased
  estimates of precision across scores);
- ``diverse``: high scores, skipping windows nearly identical (cosine > 0.9) to ones
  already picked (reads the embeddings of those few candidates only).
"""

from __future__ import annotations

import numpy as np

from annotations.embedding_store import window_matrix
from annotations.errors import InputError
from annotations.models import Classifier, ClassifierLabel, TaskStatus
from annotations.probes import unit_rows
from annotations.stored_scores import unlabeled_scores

KINDS = ("top", "margin", "bins", "diverse")
BINS = 10
# Rows of the fixed pseudo-random order read for the bins queue (each a heap fetch); bins
# still short after them hold under ~1/SAMPLE_ROWS of the windows each, and are read from
# the score index directly.
SAMPLE_ROWS = 2_000


def closest_to_threshold(
    above: list[tuple[int, float]], below: list[tuple[int, float]], threshold: float, size: int
) -> list[tuple[int, float]]:
    """The ``size`` of (window_id, score) nearest ``threshold``, from those just above and just below it."""
    return sorted(above + below, key=lambda item: abs(item[1] - threshold))[:size]


def one_bin(score: float) -> int:
    return min(int(score * BINS), BINS - 1)


def fill_bins(sample: list[tuple[int, float]], per_bin: int) -> dict[int, list[tuple[int, float]]]:
    """The first ``per_bin`` of a random-ordered sample of (window_id, score) in each tenth of [0, 1]."""
    bins: dict[int, list[tuple[int, float]]] = {b: [] for b in range(BINS)}
    for item in sample:
        chosen = bins[one_bin(item[1])]
        if len(chosen) < per_bin:
            chosen.append(item)
    return bins


def pick_diverse(scores: np.ndarray, embeddings: np.ndarray, size: int, max_cosine: float = 0.9) -> np.ndarray:
    """High scores first, skipping near-duplicates of windows already picked. embeddings: [N, D]."""
    unit = unit_rows(embeddings)
    chosen: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        if all(float(unit[index] @ unit[j]) <= max_cosine for j in chosen):
            chosen.append(int(index))
        if len(chosen) == size:
            break
    return np.asarray(chosen, dtype=np.int64)


def _bins_queue(output: ClassifierLabel, size: int) -> list[tuple[int, float]]:
    per_bin = max(1, size // BINS)
    sample = unlabeled_scores(output, "", [], "hashint8(s.window_id)", SAMPLE_ROWS)
    bins = fill_bins(sample, per_bin)
    for b, chosen in bins.items():
        if len(chosen) < per_bin:
            upper = "<=" if b == BINS - 1 else "<"
            taken = {window_id for window_id, _ in chosen}
            rare = unlabeled_scores(
                output,
                f"AND s.score >= %s::real AND s.score {upper} %s::real",
                [b / BINS, (b + 1) / BINS],
                "s.score",
                per_bin + len(taken),
            )
            chosen.extend([item for item in rare if item[0] not in taken][: per_bin - len(chosen)])
    return [item for b in range(BINS) for item in bins[b]][:size]


def review_queue(classifier: Classifier, label_id: int, kind: str, size: int = 50) -> list[tuple[int, float]]:
    """[(window_id, score)] for the annotator to label next."""
    if kind not in KINDS:
        raise InputError(f"queue kind must be one of {', '.join(KINDS)}")
    output = classifier.outputs.filter(label_id=label_id).first()
    if output is None:
        raise InputError(f"label {label_id} is not an output of classifier v{classifier.version}")
    if classifier.scoring_status != TaskStatus.DONE:
        raise InputError(
            f"classifier v{classifier.version} is still scoring the project's windows "
            f"({classifier.windows_scored:,} of {classifier.windows_to_score:,}); its queues open when it is done"
        )
    if kind == "top":
        return unlabeled_scores(output, "", [], "s.score DESC", size)
    if kind == "margin":
        # ::real, as the column is: compared as double precision, the index could not be used.
        above = unlabeled_scores(output, "AND s.score >= %s::real", [output.threshold], "s.score", size)
        below = unlabeled_scores(output, "AND s.score < %s::real", [output.threshold], "s.score DESC", size)
        return closest_to_threshold(above, below, output.threshold, size)
    if kind == "bins":
        return _bins_queue(output, size)
    candidates = unlabeled_scores(output, "", [], "s.score DESC", size * 5)
    if not candidates:
        return []
    ids = [window_id for window_id, _ in candidates]
    scores = np.asarray([score for _, score in candidates], dtype=np.float32)
    _, matrix = window_matrix(ids, classifier.embedding_model.embedding_dim)
    return [candidates[i] for i in pick_diverse(scores, matrix, size)]
