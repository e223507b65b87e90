"""Weak negatives: unlabeled windows a probe learns as "not this label", chosen so that
they stay negatives.

A season's windows hold few calls of a rare species, so random unlabeled windows are
nearly all negatives, as perch-hoplite's agile notebooks assume. A common species sings in
10-20% of the windows: as many of the random ones are songs, and a probe taught that they
are not learns against its own label (measured on tests/loop_corpus.py: more positives
made the probe worse). So a window drawn at random is left out when either says it is
likely a call of the label:

- **the labeled positives' neighbourhood**: it is closer to a labeled positive than a
  tenth of the positives are to their nearest other positive;
- **the latest trained version**: its stored score for the label reaches the lower of
  that version's threshold and the score of the weakest tenth of the labeled positives.

How many are drawn follows the labels (``weak_negative_count``); each counts for little
beside a labeled window (``Classifier.weak_negative_weight``), so that as labeled
negatives come, they decide.
"""

from __future__ import annotations

import numpy as np
from django.db import connection

from annotations.models import ClassifierLabel, TaskStatus, WindowScore
from annotations.probes import unit_rows

# Per labeled window; within these bounds (a hundred as hoplite's notebooks draw, and no
# more than a training of a few seconds can use).
WEAK_PER_LABEL = 5
WEAK_MIN, WEAK_MAX = 100, 1000
# Which of the positives' own nearest-positive cosines a candidate must not reach.
NEIGHBOURHOOD_QUANTILE = 0.1


def weak_negative_count(labeled_windows: int) -> int:
    """How many weak negatives a training draws when the user leaves it to the labels."""
    return int(np.clip(WEAK_PER_LABEL * labeled_windows, WEAK_MIN, WEAK_MAX))


def near_positives(candidates: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """bool [M]: candidates [M, D] closer (cosine) to some positive [P, D] than the
    NEIGHBOURHOOD_QUANTILE of the positives are to their nearest other positive. With a
    single positive there is no spread to measure: nothing is near."""
    if len(positives) < 2 or len(candidates) == 0:
        return np.zeros(len(candidates), dtype=bool)
    unit = unit_rows(positives)
    among = unit @ unit.T
    np.fill_diagonal(among, -np.inf)
    limit = np.quantile(among.max(axis=1), NEIGHBOURHOOD_QUANTILE)
    return (unit_rows(candidates) @ unit.T).max(axis=1) >= limit


def scored_likely(candidate_scores: np.ndarray, positive_scores: np.ndarray, threshold: float) -> np.ndarray:
    """bool [M]: candidates whose score [M] (NaN where unscored) reaches the lower of the
    threshold and the weakest tenth of the labeled positives' scores [P]."""
    limit = threshold
    if len(positive_scores) and not np.isnan(positive_scores).all():
        limit = min(threshold, float(np.nanquantile(positive_scores, NEIGHBOURHOOD_QUANTILE)))
    return np.nan_to_num(candidate_scores, nan=-np.inf) >= limit


def latest_output(project_id: int, model_id: int, label_id: int) -> ClassifierLabel | None:
    """The label's output in the project's latest version whose scores are all stored."""
    return (
        ClassifierLabel.objects.filter(
            classifier__project_id=project_id,
            classifier__embedding_model_id=model_id,
            classifier__scoring_status=TaskStatus.DONE,
            label_id=label_id,
        )
        .order_by("-classifier__version")
        .first()
    )


def stored_scores(output: ClassifierLabel, window_ids: np.ndarray) -> np.ndarray:
    """float [N]: the output's stored score of each window (NaN where it has none)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT q.n, s.score FROM unnest(%s::bigint[]) WITH ORDINALITY q(id, n) "
            f"JOIN {WindowScore._meta.db_table} s ON s.classifier_id = %s AND s.output_index = %s "
            "AND s.window_id = q.id",
            [[int(w) for w in window_ids], output.classifier_id, output.index],
        )
        rows = cursor.fetchall()
    scores = np.full(len(window_ids), np.nan)
    for n, score in rows:
        scores[n - 1] = score
    return scores
