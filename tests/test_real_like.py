"""The benchmarks' data looks like real BirdNET output: bench.real_like against the
measurements of real embeddings kept in bench/data (bench.real_embeddings)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.embedding_shape import shape_stats
from bench.real_like import SHAPE_FILE, compare, real_like_embeddings


@pytest.mark.parametrize("dim", [1024, 1536])
def test_generated_embeddings_measure_like_the_real_ones(dim):
    real = json.loads(SHAPE_FILE.read_text())
    made = real_like_embeddings(20_000, dim, 60)
    assert made.embeddings.shape == (20_000, dim) and made.embeddings.dtype == np.float32
    assert (made.embeddings >= 0).all()  # BirdNET's pooled embedding is a ReLU output
    stats = shape_stats(made.embeddings, made.recording, made.call_type, np.arange(20_000), pca_rows=real["n"])
    assert compare(stats, real["stats"]) == []
    # The properties the search's bugs hid behind: a common mean carrying about half the
    # squared norm, and background far more common than calls.
    assert 0.4 < stats["mean_share"] < 0.6
    assert 0.55 < (made.call_type < 0).mean() < 0.8
    # Recordings are contiguous runs of the same length, in order.
    assert (np.diff(made.recording) >= 0).all() and np.bincount(made.recording)[0] == 60
