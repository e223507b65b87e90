"""Active learning: which unlabeled windows an annotator should look at next.

All queues score the project's windows that are not yet labeled for the label, streamed
deployment by deployment, and pick:

- ``top``: the highest scores (is the classifier precise where it is surest?);
- ``margin``: the scores nearest the chosen threshold (where a label teaches the most);
- ``bins``: an equal number at random from each tenth of the score range (unbiased
  estimates of precision across scores);
- ``diverse``: high scores, skipping windows nearly identical (cosine > 0.9) to ones
  already picked.
"""

from __future__ import annotations

import numpy as np

from annotations.embedding_store import iter_deployment_embeddings, window_matrix
from annotations.errors import InputError
from annotations.models import Annotation, Classifier
from annotations.probes import unit_rows
from annotations.scoring import Scorer

KINDS = ("top", "margin", "bins", "diverse")


def unlabeled_scores(classifier: Classifier, label_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(window_ids int64 [N], scores float32 [N]) of the project's windows without a label for ``label_id``."""
    scorer = Scorer(classifier)
    column = list(scorer.label_ids).index(label_id)
    labeled = set(Annotation.objects.filter(label_id=label_id).values_list("window_id", flat=True))
    ids, scores = [], []
    for deployment in classifier.project.deployments.all():
        for window_ids, embeddings in iter_deployment_embeddings(deployment.pk, classifier.embedding_model):
            keep = np.fromiter((w not in labeled for w in window_ids), dtype=bool, count=len(window_ids))
            ids.append(window_ids[keep])
            scores.append(scorer.scores(embeddings[keep])[:, column])
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(ids), np.concatenate(scores).astype(np.float32)


def pick(kind: str, scores: np.ndarray, size: int, threshold: float, seed: int = 0) -> np.ndarray:
    """Indices into ``scores`` [N] for a queue of ``kind`` (``diverse`` needs pick_diverse)."""
    rng = np.random.default_rng(seed)
    if kind == "top":
        return np.argsort(-scores, kind="stable")[:size]
    if kind == "margin":
        return np.argsort(np.abs(scores - threshold), kind="stable")[:size]
    if kind == "bins":
        bins = np.minimum((scores * 10).astype(int), 9)
        per_bin = max(1, size // 10)
        chosen = [rng.permutation(np.nonzero(bins == b)[0])[:per_bin] for b in range(10)]
        return np.concatenate(chosen)[:size]
    raise InputError(f"queue kind must be one of {', '.join(KINDS)}")


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


def review_queue(classifier: Classifier, label_id: int, kind: str, size: int = 50) -> list[tuple[int, float]]:
    """[(window_id, score)] for the annotator to label next."""
    output = classifier.outputs.filter(label_id=label_id).first()
    if output is None:
        raise InputError(f"label {label_id} is not an output of classifier v{classifier.version}")
    window_ids, scores = unlabeled_scores(classifier, label_id)
    if kind == "diverse":
        picked = np.argsort(-scores, kind="stable")[: size * 5]
        if len(picked):
            _, matrix = window_matrix(window_ids[picked].tolist(), classifier.embedding_model.embedding_dim)
            picked = picked[pick_diverse(scores[picked], matrix, size)]
    else:
        picked = pick(kind, scores, size, output.threshold, classifier.random_seed)
    return [(int(window_ids[i]), float(scores[i])) for i in picked]
