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


def configured_spec() -> ModelSpec | None:
    """The spec of the model the settings name (PERCH_AGILE_MODEL); None for a model this
    catalogue does not know."""
    from django.conf import settings

    return SPECS.get(settings.PERCH_AGILE_MODEL)


# Overlap: at most this many windows cover each instant (a hop of at least a quarter window).
MAX_WINDOWS_PER_INSTANT = 4


def hop_choices(window_s: float) -> list[float]:
    """The hops a page offers for ``window_s`` windows: no overlap, half and two thirds."""
    return [window_s, window_s / 2, window_s / 3]


def hop_problem(hop_s: float, window_s: float, sample_rate: int) -> str:
    """Why ``hop_s`` cannot cut ``window_s`` windows, or ""."""
    if not window_s / MAX_WINDOWS_PER_INSTANT <= hop_s <= window_s:
        return (
            f"hop {hop_s:g} s is out of range: from {window_s / MAX_WINDOWS_PER_INSTANT:g} s (windows overlapping "
            f"{MAX_WINDOWS_PER_INSTANT} deep) to the window length, {window_s:g} s (no overlap)"
        )
    if abs(hop_s * sample_rate - round(hop_s * sample_rate)) > 1e-6 * sample_rate:
        return f"hop {hop_s:g} s is not a whole number of samples at {sample_rate} Hz"
    return ""
