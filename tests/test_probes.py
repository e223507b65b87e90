"""Linear probes and their evaluation: pure functions over arrays."""

from __future__ import annotations

import numpy as np
import pytest

from annotations.probes import fit_linear_probe, grouped_eval_mask, held_out_quality, linear_scores


def separable(rng, n=200, dim=16):
    x = rng.standard_normal((n, dim)).astype(np.float32) * 3 + 5
    y = x[:, 0] + 0.5 * x[:, 1] > 7.5
    return x, y


def test_linear_probe_learns_and_its_folded_weights_score_raw_embeddings():
    rng = np.random.default_rng(0)
    x, y = separable(rng)
    head = fit_linear_probe(x, y)
    scores = linear_scores(x, head.weights[:, None], np.array([head.bias]))[:, 0]
    assert ((scores >= 0.5) == y).mean() > 0.95
    assert head.weights.dtype == np.float32


def test_linear_probe_needs_both_classes():
    with pytest.raises(ValueError, match="positive and one negative"):
        fit_linear_probe(np.ones((4, 3), np.float32), np.ones(4, bool))


def test_grouped_split_never_puts_one_recording_on_both_sides():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 30, size=600)
    positives = rng.random(600) < 0.2
    for seed in range(5):
        held_out = grouped_eval_mask(groups, positives, 0.25, seed)
        assert held_out.any() and (~held_out).any()
        assert not set(groups[held_out]) & set(groups[~held_out])


def test_grouped_split_holds_nothing_out_with_too_few_recordings():
    held_out = grouped_eval_mask(np.array([1, 1, 2, 2]), np.array([True, False, True, False]), 0.25, 0)
    assert not held_out.any()


def test_quality_is_none_without_both_classes_held_out():
    assert held_out_quality(np.array([True, True]), np.array([0.9, 0.8])).roc_auc is None
    quality = held_out_quality(np.array([True, False, False]), np.array([0.9, 0.2, 0.4]))
    assert quality.roc_auc == 1.0 and quality.average_precision == 1.0
