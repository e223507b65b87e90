"""The embedding models this app knows: what identifies each one's output, and its licence.

Pure data, so that the web shows them without importing the worker's loading code
(``workers.embedding_models``, which loads them through perch-hoplite).
"""

from __future__ import annotations

import dataclasses

BIRDNET_LICENCE = (
    "BirdNET V2.4 weights: CC BY-NC-SA 4.0 (Cornell Lab of Ornithology, Chemnitz University of Technology)"
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What identifies an embedding model's output; stored with every embedding."""

    name: str
    version: str
    embedding_dim: int
    window_s: float
    hop_s: float
    sample_rate: int
    licence: str = ""


SPECS = {
    "birdnet_v2_4": ModelSpec("birdnet_v2_4", "2.4-fp32", 1024, 3.0, 3.0, 48_000, BIRDNET_LICENCE),
    "perch_v2": ModelSpec("perch_v2", "2", 1536, 5.0, 5.0, 32_000, "Perch 2.0: Apache 2.0"),
}
