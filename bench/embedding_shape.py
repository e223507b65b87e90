"""What a set of embeddings looks like, in plain NumPy: sign, sparsity, norms, the common
mean, cosines between related and unrelated windows, neighbours, and the spectrum.

Used to describe real BirdNET embeddings (``bench.real_embeddings``) and to check that
generated ones (``bench.real_like``) look the same. Pair statistics use random pairs and
the neighbour statistics a random subsample of query windows, so 20,000 windows take
seconds; the spectrum is measured on at most ``pca_rows`` windows, because the number of
dimensions that hold 99% of the variance grows with the number of windows.
"""

from __future__ import annotations

import numpy as np

PAIRS = 20_000  # random pairs per pair statistic
NEIGHBOUR_QUERIES = 1_000  # windows whose nearest neighbour is looked up
NEAR_DUPLICATE = 0.99


def _is_background(call_type: np.ndarray) -> np.ndarray:
    """True where a window holds no call: "" or -1."""
    as_text = np.asarray(call_type).astype(str)
    return (as_text == "") | (as_text == "-1")


def _order_in_file(file_id: np.ndarray, start_s: np.ndarray) -> np.ndarray:
    """Each window's rank in time within its file, int [N]."""
    order = np.lexsort((start_s, file_id))
    rank = np.empty(len(order), np.int64)
    sorted_files = file_id[order]
    first = np.r_[0, np.flatnonzero(np.diff(sorted_files)) + 1]
    counts = np.diff(np.r_[first, len(order)])
    rank[order] = np.arange(len(order)) - np.repeat(first, counts)
    return rank


def _pair_cosines(unit: np.ndarray, candidates: np.ndarray, keep, rng: np.random.Generator) -> np.ndarray:
    """Cosines of random pairs of ``candidates`` (indices) for which ``keep(i, j)`` holds."""
    if len(candidates) < 2:
        return np.zeros(0)
    i = candidates[rng.integers(0, len(candidates), 4 * PAIRS)]
    j = candidates[rng.integers(0, len(candidates), 4 * PAIRS)]
    chosen = keep(i, j) & (i != j)
    i, j = i[chosen][:PAIRS], j[chosen][:PAIRS]
    return np.einsum("ij,ij->i", unit[i], unit[j])


def _quantile(values: np.ndarray, q: float) -> float:
    return float(np.quantile(values, q)) if len(values) else float("nan")


def shape_stats(
    embeddings: np.ndarray,
    file_id: np.ndarray,
    call_type: np.ndarray,
    hop_order: np.ndarray,
    pca_rows: int = 5_000,
    seed: int = 0,
) -> dict[str, float]:
    """Measurements of ``embeddings``, float32 [N, D].

    file_id: int [N], the recording of each window; call_type: str or int [N], "" or -1
    for background; hop_order: float [N], each window's start in its file (only the order
    within a file matters). "Adjacent" windows are neighbours in time in the same file:
    they overlap at hops under the window length, so the neighbour statistics skip them.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(embeddings, np.float32)
    file_id = np.asarray(file_id)
    types = np.asarray(call_type).astype(str)
    background = _is_background(types)
    rank = _order_in_file(file_id, np.asarray(hop_order, np.float64))
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.maximum(norms, 1e-12)[:, None]
    mean = x.mean(axis=0)
    stats: dict[str, float] = {
        "negative_fraction": float((x < 0).mean()),
        "zero_fraction": float((x == 0).mean()),
        "norm_mean": float(norms.mean()),
        "norm_sd": float(norms.std()),
        "norm_min": float(norms.min()),
        "norm_max": float(norms.max()),
        "mean_norm": float(np.linalg.norm(mean)),
        # N |mean|^2 / sum |x|^2: how much of the vectors' energy is the part they all share.
        "mean_share": float(len(x) * mean @ mean / (norms.astype(np.float64) ** 2).sum()),
        "background_fraction": float(background.mean()),
    }
    to_mean = unit @ (mean / np.linalg.norm(mean))
    stats |= {f"cos_to_mean_p{q}": _quantile(to_mean, q / 100) for q in (5, 50, 95)}

    back, calls = np.flatnonzero(background), np.flatnonzero(~background)
    unrelated = _pair_cosines(unit, back, lambda i, j: file_id[i] != file_id[j], rng)
    same_file = _pair_cosines(unit, back, lambda i, j: file_id[i] == file_id[j], rng)
    within = _pair_cosines(unit, calls, lambda i, j: (types[i] == types[j]) & (np.abs(rank[i] - rank[j]) > 1), rng)
    between = _pair_cosines(unit, calls, lambda i, j: types[i] != types[j], rng)
    stats |= {
        "unrelated_background_cos_p50": _quantile(unrelated, 0.5),
        "within_file_background_cos_mean": float(same_file.mean()) if len(same_file) else float("nan"),
        "within_file_background_cos_sd": float(same_file.std()) if len(same_file) else float("nan"),
        "within_type_cos_p50": _quantile(within, 0.5),
        "between_type_cos_p50": _quantile(between, 0.5),
    }
    order = np.lexsort((rank, file_id))
    follows = (file_id[order][1:] == file_id[order][:-1]) & background[order][1:] & background[order][:-1]
    consecutive = np.einsum("ij,ij->i", unit[order][1:][follows], unit[order][:-1][follows])
    stats["consecutive_background_cos_p50"] = _quantile(consecutive, 0.5)
    stats |= _neighbour_stats(unit, file_id, rank, background, rng)
    stats |= _spectrum_stats(x, pca_rows, rng)
    return stats


def _neighbour_stats(
    unit: np.ndarray, file_id: np.ndarray, rank: np.ndarray, background: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """Nearest neighbour of sampled windows among all, skipping the window and its adjacent ones."""
    queries = rng.choice(len(unit), min(NEIGHBOUR_QUERIES, len(unit)), replace=False)
    cosines = unit[queries] @ unit.T
    excluded = (file_id[None, :] == file_id[queries, None]) & (np.abs(rank[None, :] - rank[queries, None]) <= 1)
    cosines[excluded] = -np.inf
    nearest = cosines.argmax(axis=1)
    same_file = file_id[nearest] == file_id[queries]
    near_duplicate = cosines.max(axis=1) > NEAR_DUPLICATE
    queried_background = background[queries]
    return {
        "nn_same_file_fraction": float(same_file.mean()),
        "nn_same_file_background_fraction": float(same_file[queried_background].mean()),
        "near_duplicate_background_fraction": float(near_duplicate[queried_background].mean()),
    }


def _spectrum_stats(x: np.ndarray, pca_rows: int, rng: np.random.Generator) -> dict[str, float]:
    """Variance in the top principal components, and how many hold 90% and 99% of it."""
    rows = x if len(x) <= pca_rows else x[rng.choice(len(x), pca_rows, replace=False)]
    centred = rows - rows.mean(axis=0)
    eigenvalues = np.linalg.eigvalsh((centred.T @ centred).astype(np.float64))[::-1].clip(0)
    share = np.cumsum(eigenvalues) / eigenvalues.sum()
    return {
        "pca_rows": float(len(rows)),
        "top10_variance_share": float(share[9]),
        "top48_variance_share": float(share[47]),
        "dims_for_90pct": float(np.searchsorted(share, 0.90) + 1),
        "dims_for_99pct": float(np.searchsorted(share, 0.99) + 1),
    }
