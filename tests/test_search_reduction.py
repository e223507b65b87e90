"""The search index's reduced vectors (annotations.search_reduction): pure functions, on
real BirdNET embeddings of real sound (bench/data/birdnet_windows.npz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotations.search_reduction import Reduction, fit_reduction, reduce_query, reduce_windows

REAL = Path(__file__).resolve().parent.parent / "bench" / "data" / "birdnet_windows.npz"


@pytest.fixture(scope="module")
def real_windows():
    data = np.load(REAL)
    return data["embeddings"].astype(np.float32), data["file_id"], data["call_type"]


def composed_queries(embeddings: np.ndarray, call_type: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Queries as the search page composes them: a stored window at its own scale, the mean
    of three unit-length examples of one call type, and that mean less half a negative."""
    units = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    songs = np.flatnonzero(call_type != "")
    beds = np.flatnonzero(call_type == "")
    queries = []
    for window in rng.choice(songs, 20, replace=False):
        same = np.flatnonzero(call_type == call_type[window])
        mean = units[rng.choice(same, min(3, len(same)), replace=False)].mean(axis=0)
        queries += [embeddings[window], mean, mean - 0.5 * units[rng.choice(beds)]]
    return queries


def exact_cosines(embeddings: np.ndarray, query: np.ndarray) -> np.ndarray:
    return embeddings @ query / np.linalg.norm(embeddings, axis=1) / np.linalg.norm(query)


def test_with_every_axis_the_reduced_vectors_rank_as_cosine_whatever_the_querys_length(real_windows):
    embeddings, _, call_type = real_windows
    assert fit_reduction(embeddings, reduced_dim=1024).dim == len(embeddings) + 1  # no more axes than windows
    many = np.concatenate([embeddings] * 3) + np.random.default_rng(0).random((3 * len(embeddings), 1024))
    reduction = fit_reduction(many, reduced_dim=1024)
    assert reduction.basis.shape == (1024, 1024)
    assert np.allclose(reduction.basis @ reduction.basis.T, np.eye(1024), atol=1e-4)  # orthonormal
    reduced = reduce_windows(embeddings, reduction)
    assert np.allclose(np.linalg.norm(reduced, axis=1), 1.0, atol=1e-4)
    assert np.abs(reduced[:, -1]).max() < 1e-2  # every axis kept: nothing is left out
    for query in composed_queries(embeddings, call_type, np.random.default_rng(2)):
        for scale in (1.0, 17.0):
            by_reduced = reduced @ reduce_query(scale * query, reduction)
            exact = exact_cosines(embeddings, query)
            # The same order: the reduced score is cosine times |q|.
            assert np.allclose(by_reduced / (scale * np.linalg.norm(query)), exact, atol=1e-4)


def test_the_leading_axes_of_other_recordings_keep_real_neighbours_in_the_pool(real_windows):
    """Axes fitted on half the files (by file), windows of the other half searched: the
    pool of the best 3 k by 128 reduced numbers (of 1024) holds the exact best k."""
    embeddings, file_id, call_type = real_windows
    fitted = file_id % 2 == 0
    reduction = fit_reduction(embeddings[fitted], reduced_dim=128)
    searched, types = embeddings[~fitted], call_type[~fitted]
    reduced = reduce_windows(searched, reduction)
    k, recalls = 10, []
    for query in composed_queries(searched, types, np.random.default_rng(3)):
        exact = exact_cosines(searched, query)
        best = set(np.argsort(-exact)[:k])
        pool = set(np.argsort(-(reduced @ reduce_query(query, reduction)))[: 3 * k])
        recalls.append(len(best & pool) / k)
    assert np.mean(recalls) >= 0.95 and min(recalls) >= 0.8, (np.mean(recalls), min(recalls))


def test_a_reduction_survives_its_bytes(real_windows):
    embeddings, _, _ = real_windows
    reduction = fit_reduction(embeddings[:300], reduced_dim=32)
    again = Reduction.from_bytes(reduction.to_bytes(), 1024)
    assert again.dim == 33 and np.array_equal(again.basis, reduction.basis)
