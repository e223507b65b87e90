"""The search index's reduced vectors: a window's unit embedding on a few hundred axes,
the remainder's length as one more number.

For a query q (any composition: one window, a mean of examples, examples less negatives,
a clip), windows rank by cosine as by <q, u_x>, u_x = unit(x). On R orthonormal axes B
[R, D], <q, u_x> ~ <B q, B u_x>: an inner product of R numbers instead of D, whatever the
query's length. The axes are the direction of the windows' mean unit embedding (real
embeddings' common mean carries half their norm) and the leading principal axes of the
rest, fitted on a sample of the project's windows. The stored vector is [B u_x, |u_x -
B'B u_x|]: unit length, so the HNSW graph is built under cosine, a true metric; the query
[B q, 0] then ranks stored vectors by <B q, B u_x>. The project's HNSW index ranks a pool
by it (``annotations.search_index``); the pool is compared exactly with the full
embeddings.

Measured on embeddings shaped like real BirdNET output (200,000 x 1024, 70-100 queries as
the page composes them, tie-tolerant recall of the exact best 100):
- brute force, the best 200 by the reduced inner product: 0.998 at R = 256 (the worst
  query 0.98), 0.966 at R = 128 (0.81), 0.875 at R = 64 (0.54);
- through an HNSW graph (usearch, m 16, ef_construction 64, a pool of 300) at R = 256:
  0.998, the worst query 0.81, with these unit vectors under cosine; 0.953, the worst
  0.03, with the centred residuals under inner product (a graph under a non-metric
  distance strands some queries).
An index of 257 float16 numbers is a sixth of a 1536-d one's bytes and distance cost.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from annotations.probes import unit_rows

REDUCED_DIM = 256


@dataclasses.dataclass(frozen=True)
class Reduction:
    """basis: float32 [R, D], orthonormal rows (R <= D): the direction of the sample's mean
    unit embedding, then the leading principal axes of the rest."""

    basis: np.ndarray

    @property
    def dim(self) -> int:
        """Of the stored vectors: R axes and the remainder's length."""
        return self.basis.shape[0] + 1

    def to_bytes(self) -> bytes:
        """For SearchIndex.reduction: the basis, float32 little-endian."""
        return self.basis.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, embedding_dim: int) -> Reduction:
        return cls(basis=np.frombuffer(data, dtype="<f4").reshape(-1, embedding_dim).copy())


def fit_reduction(sample: np.ndarray, reduced_dim: int = REDUCED_DIM) -> Reduction:
    """Axes for ``sample`` float32 [N, D] (a random sample of the windows to index, as
    stored): at most ``reduced_dim`` of them, fewer when N or D is smaller."""
    units = unit_rows(np.asarray(sample, np.float16).astype(np.float32))
    center = units.mean(axis=0, dtype=np.float64).astype(np.float32)
    _, _, axes = np.linalg.svd(units - center, full_matrices=False)
    count = min(reduced_dim, len(axes))  # the centre, then N - 1 axes at most
    # QR makes the principal axes orthogonal to the mean's direction, keeping their order.
    leading = np.concatenate([center[:, None] / max(np.linalg.norm(center), 1e-12), axes[: count - 1].T], axis=1)
    orthonormal, _ = np.linalg.qr(leading)
    return Reduction(basis=np.ascontiguousarray(orthonormal.T, np.float32))


def reduce_windows(embeddings: np.ndarray, reduction: Reduction) -> np.ndarray:
    """float32 [N, R + 1], unit rows: each embedding [N, D] scaled to unit length, on the
    axes, and the length of what the axes leave out."""
    projected = unit_rows(embeddings) @ reduction.basis.T
    remainder = np.sqrt(np.clip(1.0 - np.einsum("ij,ij->i", projected, projected), 0.0, None))
    return np.concatenate([projected, remainder[:, None]], axis=1).astype(np.float32)


def reduce_query(query: np.ndarray, reduction: Reduction) -> np.ndarray:
    """float32 [R + 1]: the query [D] on the axes, and 0 for the remainder, so that unit
    stored vectors rank by <B q, B u_x> under cosine and inner product alike. Its length
    does not change the ranking."""
    return np.append(np.asarray(query, np.float32) @ reduction.basis.T, np.float32(0.0))
