"""Active learning: which unlabeled windows an annotator should look at next.

Queues read the classifier's stored scores (``annotations.stored_scores``) through their
indexes, never the embeddings, so a page answers in milliseconds at a million windows.
Of the project's windows not yet labeled for the label (in the deployment, site, dates
and hours asked for, never in a deployment held out for evaluation), they pick:

- ``top``: the highest scores (is the classifier precise where it is surest?);
- ``margin``: the scores nearest the chosen threshold (where a label teaches the most);
- ``bins``: an equal number at random from each tenth of the score range (unbiased
  estimates of precision across scores), the page filled at random where bins are empty;
- ``diverse``: high scores, skipping windows nearly identical (cosine > 0.9) to ones
  already picked (reads the embeddings of those few candidates only).

``suggested`` picks one of them for what the labels so far lack (``suggest_kind``): a
probe taught by a page of hits and weak negatives puts true calls at its top and its
margin alike, so those queues would bring more of what it knows and no negative.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from django.db.models import Count

from annotations.embedding_store import window_matrix
from annotations.errors import InputError
from annotations.models import Annotation, Classifier, ClassifierLabel, LabelValue, Project, TaskStatus
from annotations.probes import unit_rows
from annotations.search.calls import one_per_call, windows_per_instant
from annotations.search.filters import SearchFilters, window_conditions
from annotations.stored_scores import ScoreScope, unlabeled_scores
from annotations.sun import ensure_sun_days

SUGGESTED = "suggested"
KINDS = (SUGGESTED, "top", "margin", "bins", "diverse")
# Fewer labeled positives than this and the suggested queue looks for more of them.
FEW_POSITIVES = 10
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


@dataclasses.dataclass(frozen=True)
class Suggestion:
    """The queue the labels so far call for, and why, in words for the page."""

    kind: str
    reason: str
    positives: int
    negatives: int


def suggest_kind(positives: int, negatives: int, threshold: float) -> Suggestion:
    """Which queue teaches a probe most after ``positives`` and ``negatives`` labeled windows."""
    counts = f"{positives:,} positive{'s' * (positives != 1)}, {negatives:,} negative{'s' * (negatives != 1)}"
    if positives < FEW_POSITIVES:
        reason = f"{counts}: the highest scores, where more calls are likely"
        return Suggestion("top", reason, positives, negatives)
    if negatives < positives / 2:
        reason = (
            f"{counts}: windows across the score range, where the negatives it lacks and the calls it misses are "
            "(the top and the margin would bring more calls like those it knows)"
        )
        return Suggestion("bins", reason, positives, negatives)
    reason = f"{counts}: the scores nearest the threshold {threshold:.2f}, where a label teaches the most"
    return Suggestion("margin", reason, positives, negatives)


def labeled_counts(classifier: Classifier, label_id: int) -> tuple[int, int]:
    """(positives, negatives): the windows labeled for ``label_id`` outside held-out
    deployments, with, where the project's labels never share a window, other labels'
    positives as its negatives."""
    labeled = Annotation.objects.filter(
        window__project_id=classifier.project_id,
        window__model_id=classifier.embedding_model_id,
        window__deployment__held_out=False,
    )
    counts = {
        row["value"]: row["windows"]
        for row in labeled.filter(label_id=label_id).values("value").annotate(windows=Count("window", distinct=True))
    }
    negatives = counts.get(LabelValue.NEGATIVE, 0)
    if classifier.project.exclusive_labels:
        negatives += (
            labeled.filter(value=LabelValue.POSITIVE).exclude(label_id=label_id).values("window").distinct().count()
        )
    return counts.get(LabelValue.POSITIVE, 0), negatives


def suggestion(classifier: Classifier, label_id: int) -> Suggestion:
    """The queue to review next for the label, from its labels so far."""
    return suggestion_for(_output(classifier, label_id))


def suggestion_for(output: ClassifierLabel) -> Suggestion:
    """The queue to review next for an output's label, around its threshold."""
    return suggest_kind(*labeled_counts(output.classifier, output.label_id), output.threshold)


def next_reviews(project: Project) -> list[tuple[ClassifierLabel, Suggestion]]:
    """For each label, its output in the latest version whose scores are stored (queues
    read them), and the queue its labels call for."""
    latest: dict[int, ClassifierLabel] = {}
    outputs = ClassifierLabel.objects.filter(
        classifier__project=project, classifier__status=TaskStatus.DONE, classifier__scoring_status=TaskStatus.DONE
    ).select_related("classifier__project", "label")
    for output in outputs.order_by("-classifier__version"):
        latest.setdefault(output.label_id, output)
    return [(output, suggestion_for(output)) for output in sorted(latest.values(), key=lambda o: o.label.name)]


def _output(classifier: Classifier, label_id: int) -> ClassifierLabel:
    output = classifier.outputs.filter(label_id=label_id).first()
    if output is None:
        raise InputError(f"label {label_id} is not an output of classifier v{classifier.version}")
    return output


def _scope(classifier: Classifier, filters: SearchFilters) -> ScoreScope:
    """The stored scores the queue's filters keep, held-out deployments always left out:
    a deployment or a site as deployments (each read in order from its own scores), the
    rest as conditions on windows."""
    project = classifier.project
    held_out = list(project.deployments.filter(held_out=True).values_list("pk", flat=True))
    if filters.deployment_id in held_out:
        raise InputError(
            f"deployment {filters.deployment_id} is held out for evaluation: its windows are never queued for review"
        )
    deployment_ids = None
    if filters.deployment_id is not None:
        if not project.deployments.filter(pk=filters.deployment_id).exists():
            raise InputError(f"deployment {filters.deployment_id} is not in this project")
        deployment_ids = [filters.deployment_id]
    elif filters.site:
        in_site = project.deployments.filter(site=filters.site, held_out=False).order_by("pk")
        deployment_ids = list(in_site.values_list("pk", flat=True))
    others = window_conditions(
        project, classifier.embedding_model, dataclasses.replace(filters, deployment_id=None, site="")
    )
    return ScoreScope(
        deployment_ids=deployment_ids,
        excluded_deployment_ids=held_out if deployment_ids is None else [],
        window_conditions=list(others.all),
        params=dict(others.params),
        primary=bool(filters.sun_event) and ensure_sun_days(project),
    )


def _bins_queue(output: ClassifierLabel, size: int, scope: ScoreScope) -> list[tuple[int, float]]:
    per_bin = max(1, size // BINS)
    sample = unlabeled_scores(output, "", {}, "hashint8(s.window_id)", SAMPLE_ROWS, scope)
    bins = fill_bins(sample, per_bin)
    for b, chosen in bins.items():
        if len(chosen) < per_bin:
            upper = "<=" if b == BINS - 1 else "<"
            taken = {window_id for window_id, _ in chosen}
            rare = unlabeled_scores(
                output,
                f"AND s.score >= %(bin_from)s::real AND s.score {upper} %(bin_to)s::real",
                {"bin_from": b / BINS, "bin_to": (b + 1) / BINS},
                "s.score",
                per_bin + len(taken),
                scope,
            )
            chosen.extend([item for item in rare if item[0] not in taken][: per_bin - len(chosen)])
    picked = [item for b in range(BINS) for item in bins[b]][:size]
    # A probe sure of most windows leaves the middle bins empty: the page is filled at
    # random, which brings what most windows are (for a new label: its negatives).
    taken = {window_id for window_id, _ in picked}
    return picked + [item for item in sample if item[0] not in taken][: size - len(picked)]


def review_queue(
    classifier: Classifier, label_id: int, kind: str, size: int = 50, filters: SearchFilters = SearchFilters()
) -> list[tuple[int, float]]:
    """[(window_id, score)] for the annotator to label next, among the windows ``filters`` keep."""
    if kind not in KINDS:
        raise InputError(f"queue kind must be one of {', '.join(KINDS)}")
    output = _output(classifier, label_id)
    if classifier.scoring_status != TaskStatus.DONE:
        raise InputError(
            f"classifier v{classifier.version} is still scoring the project's windows "
            f"({classifier.windows_scored:,} of {classifier.windows_to_score:,}); its queues open when it is done"
        )
    if kind == SUGGESTED:
        kind = suggestion(classifier, label_id).kind
    scope = _scope(classifier, filters)
    model = classifier.embedding_model
    # Overlapping windows of one call are one item (annotations.search.calls): enough more
    # are read that ``size`` calls remain. The bins queue samples at random, and seldom
    # draws two windows of one call.
    depth = 1 if filters.all_overlapping else windows_per_instant(classifier.project, model)

    def calls(rows: list[tuple[int, float]], wanted: int = size) -> list[tuple[int, float]]:
        return one_per_call(rows, model.window_s, wanted, depth)

    if kind == "top":
        return calls(unlabeled_scores(output, "", {}, "s.score DESC", size * depth, scope))
    if kind == "margin":
        # ::real, as the column is: compared as double precision, the index could not be used.
        at = {"threshold": output.threshold}
        above = unlabeled_scores(output, "AND s.score >= %(threshold)s::real", at, "s.score", size * depth, scope)
        below = unlabeled_scores(output, "AND s.score < %(threshold)s::real", at, "s.score DESC", size * depth, scope)
        return calls(closest_to_threshold(above, below, output.threshold, size * depth))
    if kind == "bins":
        return _bins_queue(output, size, scope)
    candidates = calls(unlabeled_scores(output, "", {}, "s.score DESC", size * 5 * depth, scope), size * 5)
    if not candidates:
        return []
    ids = [window_id for window_id, _ in candidates]
    scores = np.asarray([score for _, score in candidates], dtype=np.float32)
    _, matrix = window_matrix(ids, classifier.embedding_model.embedding_dim)
    return [candidates[i] for i in pick_diverse(scores, matrix, size)]
