"""The index path's second check, for queries with no windows around them: a fixed random
sample of the project's windows, kept with its index, scored against the query here.

An HNSW search can settle in the wrong part of its graph. A query made of windows is
checked against the windows around them (``safety_net``); an uploaded clip has none
(bench/scale.py at 1M: one clip in thirty found none of its 100 nearest, in the big
project and in the small one alike). The index's build keeps PROBE_WINDOWS of the windows
it sampled to fit its reduction, as unit embeddings (``IndexProbe``); a search scores them
exactly in NumPy (about 0.5 ms at 1024-d). An answer that holds its true best k holds
every probe window among them, whatever the project's size; one that settled elsewhere
misses those that beat its k-th, a few for every thousand windows that rank above it.
Then the index is asked again with the widest search pgvector allows (``EF_SEARCH_MAX``),
which finds such queries' neighbourhoods (the same two clips: 0.00 and 0.01 of their 100
nearest at ef_search 100, 0.88 and 1.00 at 1,000).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

import numpy as np

from annotations.probes import unit_rows

# A sample of this many windows: 4 MB at 1024-d as stored, 8 MB in a process's memory
# (float32: converting float16 in every search took 9 ms, the product 0.3).
PROBE_WINDOWS = 2_048
# Probe windows that must beat the answer's k-th and be missing from it: one can be a near
# miss of an index that found 0.99 of the best; two are a neighbourhood it never reached.
PROBE_MISSES = 2
# Scores are float16 distances: a probe must beat the k-th by more than their rounding.
SCORE_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class IndexProbe:
    """window_ids: int64 [P]; units: float32 [P, D], their embeddings at unit length (as
    float16 rounds them: they are stored so)."""

    window_ids: np.ndarray
    units: np.ndarray

    def to_bytes(self) -> bytes:
        """For SearchIndex.probe: the count, the ids, then the units, little-endian."""
        count = np.array([len(self.window_ids)], "<i8").tobytes()
        return count + self.window_ids.astype("<i8").tobytes() + self.units.astype("<f2").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, embedding_dim: int) -> IndexProbe:
        count = int(np.frombuffer(data, "<i8", 1)[0])
        ids = np.frombuffer(data, "<i8", count, offset=8).copy()
        units = np.frombuffer(data, "<f2", count * embedding_dim, offset=8 + 8 * count).reshape(count, embedding_dim)
        return cls(ids, units.astype(np.float32))

    def subset(self, keep: np.ndarray) -> IndexProbe:
        """The probe windows where ``keep`` (bool [P]) is true."""
        return IndexProbe(self.window_ids[keep], self.units[keep])

    @classmethod
    def of(cls, window_ids: np.ndarray, embeddings: np.ndarray) -> IndexProbe:
        """The first PROBE_WINDOWS of a random sample: ids int [N], embeddings float [N, D]."""
        chosen = slice(0, PROBE_WINDOWS)
        units = unit_rows(np.asarray(embeddings[chosen], np.float32)).astype(np.float16).astype(np.float32)
        return cls(np.asarray(window_ids[chosen], np.int64), units)


def probe_misses(
    probe: IndexProbe, query: np.ndarray, rows: list[tuple[int, float, int]], k: int, exclude: Collection[int]
) -> bool:
    """Whether at least PROBE_MISSES probe windows (not among ``exclude``, the query's own
    examples) beat the k-th of the index's answer ``rows`` (id, cosine, recording_id; best
    first) and are missing from it."""
    if len(rows) < k:
        return False  # the index held fewer than k: nothing to compare with
    kth = rows[-1][1]
    direction = unit_rows(np.asarray(query, np.float32)[None])[0]
    scores = probe.units @ direction
    beating = probe.window_ids[scores > kth + SCORE_TOLERANCE]
    found = {row[0] for row in rows}
    return sum(int(w) not in found and int(w) not in exclude for w in beating) >= PROBE_MISSES
