"""Call density: the share of windows that hold the call, with a credible interval.

A classifier's scores split the windows into score bins. In each bin a random sample is
validated by people and the bin's precision gets a Beta posterior; the density of a
group of windows (a site, a day, a deployment) is the sum over bins of the group's share
of windows in the bin times that bin's precision, as in perch-hoplite's call-density
notebook. The interval comes from draws of the posteriors (see ``density_estimate``).

The random sample of a bin is the longest prefix, in a fixed pseudo-random order of the
windows (``hashint8(window_id)``), that is fully labeled: labels given for other reasons
(a search, the top of a queue) never bias it, and labeling the ``bins`` review queue
extends it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from django.db import connection

from annotations.models import ClassifierLabel, DensityStratum, InferenceRun, LabelValue, WindowScore

BINS = 10  # equal tenths of [0, 1], as the bins review queue
JEFFREYS = 0.5
# Validated windows looked at per bin; more narrows the interval little.
MAX_VALIDATED_PER_BIN = 200
# Below this many validated windows in a bin holding at least MIN_BIN_SHARE of a group's
# windows, the group's density is not stated: 4 validated windows gave "0.500
# (0.000-1.000)", a number people would copy into a report.
MIN_VALIDATED_PER_BIN = 5
MIN_BIN_SHARE = 0.01


@dataclasses.dataclass(frozen=True)
class BinValidation:
    """positives, negatives: int [BINS], the fully labeled random prefix of each score bin."""

    positives: np.ndarray
    negatives: np.ndarray

    @property
    def validated(self) -> int:
        return int(self.positives.sum() + self.negatives.sum())


@dataclasses.dataclass(frozen=True)
class DensityEstimate:
    density: float  # posterior mean
    low: float
    high: float
    windows: int


def _beta_draws(rng: np.random.Generator, alpha: np.ndarray, beta: np.ndarray, draws: int) -> np.ndarray:
    """[draws, BINS] from Beta(alpha, beta) per bin, where a zero parameter is a point mass."""
    samples = rng.beta(np.maximum(alpha, 1e-12), np.maximum(beta, 1e-12), size=(draws, len(alpha)))
    samples[:, alpha == 0] = 0.0
    samples[:, beta == 0] = 1.0
    return samples


def density_estimate(
    window_counts: np.ndarray, validation: BinValidation, level: float = 0.9, draws: int = 4000, seed: int = 0
) -> DensityEstimate:
    """Density of a group whose windows fall ``window_counts`` (int [BINS]) in the bins.

    The estimate is the Jeffreys posterior mean. The bounds are quantiles of the sum over
    bins drawn with the prior least favourable to each side (Beta(x, n - x + 1) for the
    lower, Beta(x + 1, n - x) for the upper): the Monte Carlo counterpart of
    Clopper-Pearson, so that few validated windows in a bin that holds most windows widen
    the interval instead of pulling it off the truth (tests/test_call_density.py).
    """
    counts = np.asarray(window_counts, dtype=np.float64)
    total = counts.sum()
    if total == 0:
        return DensityEstimate(0.0, 0.0, 0.0, 0)
    shares = counts / total
    positives = validation.positives.astype(np.float64)
    negatives = validation.negatives.astype(np.float64)
    rng = np.random.default_rng(seed)
    tail = (1 - level) / 2
    low = np.quantile(_beta_draws(rng, positives, negatives + 1, draws) @ shares, tail)
    high = np.quantile(_beta_draws(rng, positives + 1, negatives, draws) @ shares, 1 - tail)
    mean = shares @ ((positives + JEFFREYS) / (positives + negatives + 2 * JEFFREYS))
    return DensityEstimate(float(mean), float(low), float(high), int(total))


def validations_needed(window_counts: np.ndarray, validation: BinValidation) -> int:
    """How many more windows of the bins' random samples must be validated before the
    density of a group whose windows fall ``window_counts`` (int [BINS]) in the bins is
    stated: MIN_VALIDATED_PER_BIN in every bin that holds MIN_BIN_SHARE of them."""
    counts = np.asarray(window_counts, dtype=np.float64)
    if counts.sum() == 0:
        return 0
    validated = validation.positives + validation.negatives
    short = np.maximum(0, MIN_VALIDATED_PER_BIN - validated)
    return int(short[counts / counts.sum() >= MIN_BIN_SHARE].sum())


def random_prefix(values: list[str | None]) -> tuple[int, int]:
    """(positives, negatives) of ``values`` (pseudo-random order) up to the first window
    that is unlabeled, unsure or disputed (None or another value)."""
    positives = negatives = 0
    for value in values:
        if value == LabelValue.POSITIVE:
            positives += 1
        elif value == LabelValue.NEGATIVE:
            negatives += 1
        else:
            break
    return positives, negatives


def bin_validation(output: ClassifierLabel) -> BinValidation:
    """Each score bin's validated random prefix, from people's labels for the output's label."""
    positives, negatives = np.zeros(BINS, np.int64), np.zeros(BINS, np.int64)
    with connection.cursor() as cursor:
        for b in range(BINS):
            upper = "<=" if b == BINS - 1 else "<"
            # One consensus per window: a value only when every annotator gave the same one.
            cursor.execute(
                "SELECT (SELECT CASE WHEN count(DISTINCT a.value) = 1 THEN min(a.value) END "
                "        FROM annotations_annotation a WHERE a.window_id = s.window_id AND a.label_id = %s) "
                f"FROM {WindowScore._meta.db_table} s "
                "WHERE s.classifier_id = %s AND s.output_index = %s "
                f"AND s.score >= %s::real AND s.score {upper} %s::real "
                "ORDER BY hashint8(s.window_id) LIMIT %s",
                [output.label_id, output.classifier_id, output.index, b / BINS, (b + 1) / BINS, MAX_VALIDATED_PER_BIN],
            )
            positives[b], negatives[b] = random_prefix([value for (value,) in cursor.fetchall()])
    return BinValidation(positives, negatives)


def store_density_strata(run: InferenceRun) -> None:
    """Count the run's windows per label, local day and score bin (a worker's part: it
    reads every score of the deployment once)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT o.label_id, (w.started_at AT TIME ZONE %s)::date, "
            f"least(width_bucket(s.score, 0, 1, {BINS}), {BINS}), count(*) "
            f"FROM {WindowScore._meta.db_table} s "
            "JOIN annotations_classifierlabel o ON o.classifier_id = s.classifier_id AND o.index = s.output_index "
            "JOIN annotations_window w ON w.id = s.window_id "
            "WHERE s.classifier_id = %s AND w.deployment_id = %s GROUP BY 1, 2, 3",
            [run.deployment.timezone, run.classifier_id, run.deployment_id],
        )
        counts: dict[tuple[int, object], list[int]] = {}
        for label_id, day, bin_number, windows in cursor.fetchall():
            counts.setdefault((label_id, day), [0] * BINS)[max(bin_number, 1) - 1] += windows
    DensityStratum.objects.filter(run=run).delete()
    DensityStratum.objects.bulk_create(
        DensityStratum(run=run, label_id=label_id, day=day, window_counts=window_counts)
        for (label_id, day), window_counts in counts.items()
    )


@dataclasses.dataclass(frozen=True)
class DensityRow:
    label: str
    day: object  # datetime.date, or None for windows of unknown start (and the total row)
    estimate: DensityEstimate
    validated: int
    validations_needed: int  # 0: the estimate may be stated (``validations_needed``)
    total: bool = False


def run_densities(run: InferenceRun, level: float = 0.9) -> list[DensityRow]:
    """Call density per label and local day of a run, and over the whole deployment."""
    rows = []
    outputs = run.classifier.outputs.select_related("label").order_by("index")
    strata = list(run.density_strata.all())
    for output in outputs:
        mine = [stratum for stratum in strata if stratum.label_id == output.label_id]
        if not mine:
            continue
        validation = bin_validation(output)
        groups = [(stratum.day, np.asarray(stratum.window_counts), False) for stratum in mine]
        groups.append((None, np.sum([stratum.window_counts for stratum in mine], axis=0), True))
        for day, counts, total in groups:
            estimate = density_estimate(counts, validation, level)
            needed = validations_needed(counts, validation)
            rows.append(DensityRow(output.label.name, day, estimate, validation.validated, needed, total))
    return rows
