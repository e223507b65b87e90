"""Linear and prototype probes and their evaluation: pure functions over arrays, and
their quality on real birdsong (tests/probe_corpus.py)."""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings

from annotations.probes import (
    C_GRID,
    choose_regularization,
    fit_linear_probe,
    fit_prototype_probe,
    grouped_eval_mask,
    held_out_quality,
    linear_scores,
    nearest_examples,
    precision_recall,
    prototype_scores,
    spherical_kmeans,
    unit_rows,
)
from tests.probe_corpus import embed, load_sources, make_corpus


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


def clusters(rng, n=120, dim=32):
    """Positives around two directions (two call types), negatives around a third."""
    centres = unit_rows(rng.standard_normal((3, dim)))
    which = rng.integers(0, 3, n)
    x = (centres[which] * 5 + rng.standard_normal((n, dim))).astype(np.float32)
    return x, which < 2


def test_prototype_probe_finds_both_call_types():
    rng = np.random.default_rng(2)
    x, y = clusters(rng)
    head = fit_prototype_probe(x, y, k=2)
    assert head.prototypes.shape == head.negative_prototypes.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(head.prototypes, axis=1), 1, atol=1e-5)
    scores = prototype_scores(x, head)
    assert held_out_quality(y, scores).roc_auc > 0.99
    assert head.a > 0  # more similar means more likely


def near_misses(rng, n=200, dim=64):
    """Positives spread widely around a direction p; negatives tight beside it, shifted along d.

    The negatives lie closer to p than most positives do, so prototypes that only
    summarise the positives rank them first; along d the classes are apart.
    """
    p, d = np.eye(dim, dtype=np.float32)[:2]
    y = np.arange(n) < n // 2
    x = 3 * p + np.where(y[:, None], 0.3, 0.05) * rng.standard_normal((n, dim)).astype(np.float32)
    x[~y] += 1.5 * d
    return x, y


def test_prototype_probe_learns_from_the_negatives():
    rng = np.random.default_rng(3)
    x, y = near_misses(rng)
    test_x, test_y = near_misses(rng)
    positives_only = spherical_kmeans(unit_rows(x[y]), np.ones(int(y.sum())), 4, rng)
    assert held_out_quality(test_y, (unit_rows(test_x) @ positives_only.T).max(axis=1)).roc_auc < 0.1
    head = fit_prototype_probe(x, y)
    assert held_out_quality(test_y, prototype_scores(test_x, head)).roc_auc > 0.99


def test_prototype_probe_weights_its_examples():
    rng = np.random.default_rng(6)
    x, y = clusters(rng)
    light = prototype_scores(x, fit_prototype_probe(x, y, sample_weight=np.where(y, 1.0, 0.01)))
    full = prototype_scores(x, fit_prototype_probe(x, y))
    assert light[~y].mean() > full[~y].mean()


def test_prototype_examples_are_the_nearest_windows():
    prototypes = unit_rows(np.eye(2, 3, dtype=np.float32))
    x = np.array([[1, 0.1, 0], [0.1, 1, 0], [1, 0, 0.2]], np.float32)
    assert [list(map(int, i)) for i in nearest_examples(x, prototypes, 2)] == [[0, 2], [1, 0]]


def test_regularization_is_chosen_by_grouped_cross_validation():
    rng = np.random.default_rng(4)
    x, y = separable(rng, n=300)
    groups = np.repeat(np.arange(30), 10)
    assert choose_regularization(x, y, groups) in C_GRID
    assert choose_regularization(x[:20], y[:20], np.zeros(20)) == 1.0  # one recording: nothing to split


def test_weak_negatives_count_less():
    rng = np.random.default_rng(5)
    x, y = separable(rng)
    weights = np.where(y, 1.0, 0.01)
    light = fit_linear_probe(x, y, 1.0, weights)
    full = fit_linear_probe(x, y, 1.0)
    light_scores = linear_scores(x, light.weights[:, None], np.array([light.bias]))[:, 0]
    full_scores = linear_scores(x, full.weights[:, None], np.array([full.bias]))[:, 0]
    assert light_scores[~y].mean() > full_scores[~y].mean()


def test_threshold_for_a_precision_on_the_pr_curve():
    targets = np.array([0, 0, 1, 0, 1, 1, 1], bool)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9], np.float32)
    curve = precision_recall(targets, scores)
    threshold = curve.threshold_for_precision(1.0)
    assert threshold == pytest.approx(0.6)
    assert curve.at(threshold) == (1.0, 0.75)
    assert curve.threshold_for_precision(0.5) == pytest.approx(0.1)  # the lowest threshold reaching it
    assert precision_recall(np.zeros(3, bool), scores[:3]) is None


@pytest.fixture(scope="module")
def great_tits():
    """The small real-sound corpus and its BirdNET embeddings (about 10 s to embed here)."""
    corpus = make_corpus(load_sources(settings.VAR_DIR / "cache"))
    return corpus, embed(corpus)


def test_prototype_probe_ranks_a_bird_it_never_heard_nearly_as_well_as_the_linear_probe(great_tits):
    corpus, x = great_tits
    train, test, y = ~corpus.held_out, corpus.held_out, corpus.song
    c = choose_regularization(x[train], y[train], corpus.recording[train])
    linear = fit_linear_probe(x[train], y[train], c)
    linear_auc = held_out_quality(y[test], linear_scores(x[test], linear.weights[:, None], linear.bias[None]).ravel())
    prototype = fit_prototype_probe(x[train], y[train])
    prototype_auc = held_out_quality(y[test], prototype_scores(x[test], prototype))
    # Query by one example, each training song in turn; the best of them.
    one_example = max(
        held_out_quality(y[test], unit_rows(x[test]) @ unit_rows(x[i])).roc_auc for i in np.nonzero(train & y)[0]
    )
    assert 0.9 < linear_auc.roc_auc < 1.0  # learnable, and not so easy that every probe is perfect
    assert prototype_auc.roc_auc >= 0.95 * linear_auc.roc_auc
    assert prototype_auc.roc_auc >= one_example
    assert prototype_auc.average_precision >= 0.9 * linear_auc.average_precision
