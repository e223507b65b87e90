"""Linear and prototype probes and their evaluation: pure functions over arrays, and
their quality on real birdsong (tests/probe_corpus.py)."""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings
from sklearn.metrics import average_precision_score, roc_auc_score

from annotations.probes import (
    C_GRID,
    GAP_S,
    MIN_HELD_OUT,
    PrototypeHead,
    _weighted_average_precision,
    _weighted_roc_auc,
    choose_regularization,
    coinciding_prototypes,
    fit_linear_probe,
    fit_prototype_probe,
    held_out_quality,
    held_out_split,
    labels_needed,
    linear_scores,
    nearest_examples,
    precision_recall,
    prototype_scores,
    quality_interval,
    spherical_kmeans,
    time_block_splits,
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


def test_short_recordings_are_whole_groups_on_one_side():
    rng = np.random.default_rng(1)
    recordings = rng.integers(0, 30, size=600)
    starts = rng.integers(0, 20, size=600) * 3.0  # one minute each: one block
    positives = rng.random(600) < 0.2
    for seed in range(5):
        split = held_out_split(recordings, starts, positives, np.ones(600, bool), 0.25, seed)
        assert split.held_out.any() and split.train.any()
        assert not set(recordings[split.held_out]) & set(recordings[~split.held_out])
        assert not split.excluded.any()  # no held-out window shares a recording with another side


def test_split_holds_nothing_out_with_too_few_blocks():
    split = held_out_split(np.array([1, 1, 2, 2]), np.zeros(4), np.array([1, 0, 1, 0], bool), np.ones(4, bool), 0.25, 0)
    assert not split.held_out.any() and split.train.all()


def long_recordings(rng, recordings=4, hours=1.0, labels=28):
    """Windows of 3 s over a few long recordings, ``labels`` of them labeled in bouts
    (a run of neighbouring windows, as a page of search hits gives)."""
    per_recording = int(hours * 3600 / 3)
    recording_ids = np.repeat(np.arange(recordings), per_recording)
    start_s = np.tile(np.arange(per_recording) * 3.0, recordings)
    labeled = np.zeros(len(start_s), bool)
    for bout in range(labels // 4):
        first = rng.integers(0, per_recording - 4) + (bout % recordings) * per_recording
        labeled[first : first + 4] = True
    positive = labeled & (rng.random(len(labeled)) < 0.5)
    return recording_ids, start_s, labeled, positive


def test_time_blocks_hold_out_part_of_few_long_recordings_with_a_gap():
    rng = np.random.default_rng(7)
    recording_ids, start_s, labeled, positive = long_recordings(rng)
    assert len(np.unique(recording_ids[labeled])) == 4
    for seed in range(5):
        split = held_out_split(recording_ids, start_s, positive, labeled, 0.25, seed)
        assert (split.held_out & labeled).any() and (split.train & labeled).any()
        # No training window starts within the gap of a held-out one of its recording.
        for recording in range(4):
            held = start_s[split.held_out & (recording_ids == recording)]
            trained = start_s[split.train & (recording_ids == recording)]
            if len(held) and len(trained):
                assert np.abs(trained[:, None] - held[None, :]).min() > GAP_S
        # Windows next to a held-out block are excluded, not silently trained on.
        assert split.excluded.any() and not (split.excluded & split.held_out).any()


def test_cross_validation_folds_hold_out_every_labeled_block_once():
    rng = np.random.default_rng(8)
    recording_ids, start_s, labeled, positive = long_recordings(rng)
    folds = time_block_splits(recording_ids, start_s, positive, labeled, 4, 0)
    assert len(folds) == 4
    held = np.stack([fold.held_out & labeled for fold in folds])
    np.testing.assert_array_equal(held.sum(axis=0), labeled.astype(int))


def test_labels_needed_for_a_usable_held_out_estimate():
    blocks = np.array([0, 0, 1, 1, 2])
    targets = np.array([True, False, True, False, True])
    needed = labels_needed(blocks, targets, 0.25)  # 4 folds of about MIN_HELD_OUT each
    assert (needed.positives, needed.negatives, needed.blocks) == (4 * MIN_HELD_OUT - 3, 4 * MIN_HELD_OUT - 2, 2)
    assert not needed.usable
    many = np.arange(100) % 8
    assert labels_needed(many, np.arange(100) % 2 == 0, 0.25).usable


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


def test_bootstrap_intervals_are_scikit_learns_figures_on_every_resample_and_narrow_with_more_windows():
    rng = np.random.default_rng(3)
    targets = np.r_[np.ones(30, bool), np.zeros(90, bool)]
    scores = np.r_[rng.normal(1, 1, 30), rng.normal(0, 1, 90)].round(1)  # rounded: ties, as calibrated scores have
    positives, negatives = scores[targets], scores[~targets]
    pos_counts, neg_counts = rng.integers(0, 3, (5, 30)).astype(float), rng.integers(0, 3, (5, 90)).astype(float)
    for i in range(5):  # each resample is the same figure as scikit-learn's with those counts as weights
        weights = np.r_[pos_counts[i], neg_counts[i]]
        auc = _weighted_roc_auc(positives, negatives, pos_counts[i : i + 1], neg_counts[i : i + 1])[0]
        ap = _weighted_average_precision(positives, negatives, pos_counts[i : i + 1], neg_counts[i : i + 1])[0]
        total = pos_counts[i].sum() * neg_counts[i].sum() / (30 * 90)
        assert auc / total == pytest.approx(roc_auc_score(targets, scores, sample_weight=weights))
        assert ap == pytest.approx(
            average_precision_score(targets, scores, sample_weight=weights) * pos_counts[i].sum() / 30
        )
    small = quality_interval(targets, scores)
    quality = held_out_quality(targets, scores)
    assert small.roc_auc_low < quality.roc_auc < small.roc_auc_high
    assert small.average_precision_low < quality.average_precision < small.average_precision_high
    many = np.r_[np.ones(600, bool), np.zeros(1800, bool)]
    large = quality_interval(many, np.r_[rng.normal(1, 1, 600), rng.normal(0, 1, 1800)])
    assert large.roc_auc_high - large.roc_auc_low < (small.roc_auc_high - small.roc_auc_low) / 3
    assert quality_interval(np.ones(4, bool), np.arange(4.0)) is None


def test_prototype_probe_finds_both_call_types():
    rng = np.random.default_rng(2)
    x, y = clusters(rng)
    head = fit_prototype_probe(x, y, k=2)
    assert head.prototypes.shape == head.negative_prototypes.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(head.prototypes, axis=1), 1, atol=1e-5)
    scores = prototype_scores(x, head)
    assert held_out_quality(y, scores).roc_auc > 0.99
    assert head.a > 0  # more similar means more likely


def test_a_head_without_negative_prototypes_at_temperature_0_is_the_old_max_cosine_formula():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    prototypes = unit_rows(rng.standard_normal((3, 8)).astype(np.float32))
    head = PrototypeHead(prototypes, np.zeros((0, 8), np.float32), 0.0, np.float32(5.0), np.float32(-1.0))
    expected = 1 / (1 + np.exp(-(5.0 * (unit_rows(x) @ prototypes.T).max(axis=1) - 1.0)))
    np.testing.assert_allclose(prototype_scores(x, head), expected, rtol=1e-5)


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


def test_each_prototype_shows_its_own_windows():
    prototypes = unit_rows(np.eye(3, 3, dtype=np.float32))
    # Window 2 is close to both the first prototypes: it belongs to the one it matches best.
    x = np.array([[1, 0.1, 0], [0.1, 1, 0], [1, 0.8, 0.2], [0.9, 0, 0.1]], np.float32)
    assert [list(map(int, i)) for i in nearest_examples(x, prototypes, 2)] == [[0, 3], [1], []]
    # On real-shaped embeddings (a common mean carrying half the norm), the nearest windows
    # of every prototype in turn would be the same few; owned windows never repeat.
    rng = np.random.default_rng(0)
    common = np.abs(rng.standard_normal(64)) * 3
    clusters = np.abs(rng.standard_normal((4, 64)))
    x = common + clusters[np.arange(200) % 4] * 2 + np.abs(rng.standard_normal((200, 64)))
    groups = nearest_examples(x, unit_rows(clusters + common), 4)
    shown = np.concatenate(groups)
    assert len(shown) == len(set(shown.tolist())) == 16
    assert all(set(np.asarray(group) % 4) == {j} for j, group in enumerate(groups))


def test_coinciding_prototypes_are_reported():
    prototypes = unit_rows(np.array([[1, 0, 0], [0.99, 0.05, 0], [0, 1, 0]], np.float32))
    ((i, j, cosine),) = coinciding_prototypes(prototypes)
    assert (i, j) == (0, 1) and cosine > 0.98
    assert coinciding_prototypes(unit_rows(np.eye(3, dtype=np.float32))) == []


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


def test_both_probes_train_on_positives_and_weak_negatives_as_positives_grow(great_tits):
    """Only positives labeled, as after a first page of hits: random unlabeled windows
    (some of them songs) stand in as negatives at a small weight, and both probes learn."""
    corpus, x = great_tits
    train_side, test, y = ~corpus.held_out, corpus.held_out, corpus.song
    rng = np.random.default_rng(9)
    songs = rng.permutation(np.nonzero(train_side & y)[0])
    pool = np.nonzero(train_side)[0]
    for retraining in range(20):
        positives = songs[: 2 + retraining]
        weak = rng.choice(np.setdiff1d(pool, positives), 30, replace=False)
        rows = np.concatenate([positives, weak])
        targets = np.arange(len(rows)) < len(positives)
        weights = np.where(targets, 1.0, 0.05)
        linear = fit_linear_probe(x[rows], targets, 1.0, weights)
        prototype = fit_prototype_probe(x[rows], targets, sample_weight=weights)
        linear_scored = linear_scores(x[test], linear.weights[:, None], linear.bias[None])[:, 0]
        assert held_out_quality(y[test], linear_scored).roc_auc > 0.8
        assert held_out_quality(y[test], prototype_scores(x[test], prototype)).roc_auc > 0.8
