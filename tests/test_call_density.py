"""Call density: intervals that cover the truth, from validated random samples per score bin."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.call_density import BinValidation, density_estimate, random_prefix, validations_needed

# A classifier's usual picture: most windows score low and hold almost no calls.
SHARES = np.array([0.6, 0.15, 0.08, 0.05, 0.04, 0.03, 0.02, 0.015, 0.01, 0.005])
PRECISION = np.array([0.002, 0.01, 0.03, 0.08, 0.15, 0.3, 0.5, 0.7, 0.85, 0.95])


def simulate(rng, windows: int, per_bin: int) -> tuple[float, np.ndarray, BinValidation]:
    """A deployment with known calls; ``per_bin`` windows of each bin validated at random."""
    counts = np.round(SHARES * windows).astype(int)
    calls = rng.binomial(counts, PRECISION)
    sample = np.minimum(per_bin, counts)
    positives = rng.hypergeometric(calls, counts - calls, sample)
    return calls.sum() / counts.sum(), counts, BinValidation(positives, sample - positives)


@pytest.mark.parametrize(("per_bin", "widest"), [(10, 0.3), (30, 0.1)])
def test_90_percent_intervals_cover_the_true_density_at_least_90_percent_of_the_time(per_bin, widest):
    rng = np.random.default_rng(7)
    trials, covered, widths = 400, 0, []
    for trial in range(trials):
        truth, counts, validation = simulate(rng, windows=50_000, per_bin=per_bin)
        estimate = density_estimate(counts, validation, level=0.9, seed=trial)
        covered += estimate.low <= truth <= estimate.high
        widths.append(estimate.high - estimate.low)
    assert covered / trials >= 0.9, covered / trials
    assert np.mean(widths) < widest  # and says something: the density is about 0.06


def test_more_validation_narrows_the_interval():
    rng = np.random.default_rng(1)
    _, counts, few = simulate(rng, 50_000, per_bin=5)
    _, _, many = simulate(rng, 50_000, per_bin=100)
    narrow, wide = density_estimate(counts, many), density_estimate(counts, few)
    assert narrow.high - narrow.low < (wide.high - wide.low) / 2


def test_the_random_sample_ends_at_the_first_window_not_plainly_labeled():
    assert random_prefix(["positive", "negative", "negative", None, "positive"]) == (1, 2)
    assert random_prefix(["negative", "unsure", "positive"]) == (0, 1)
    assert random_prefix([]) == (0, 0)


def test_a_group_without_windows_has_no_density():
    empty = density_estimate(np.zeros(10), BinValidation(np.zeros(10), np.zeros(10)))
    assert (empty.density, empty.windows) == (0.0, 0)


def test_a_density_from_too_few_validated_windows_is_not_stated():
    counts = np.array([900, 50, 0, 0, 0, 0, 0, 0, 5, 45])  # bin 8 holds 0.5% of the windows
    four = BinValidation(np.array([0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), np.array([2, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    # 5 each in bins 0, 1 and 9 (the ones holding 1% or more): 3 + 4 + 4 more.
    assert validations_needed(counts, four) == 11
    enough = BinValidation(np.array([0, 2, 0, 0, 0, 0, 0, 0, 0, 5]), np.array([5, 3, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert validations_needed(counts, enough) == 0
    assert validations_needed(np.zeros(10), four) == 0
