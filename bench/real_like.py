"""Synthetic embeddings shaped like real BirdNET V2.4 output, anchored on real embeddings.

``real_like_embeddings(n, dim, windows_per_recording)`` makes ``n`` windows in
recordings of ``windows_per_recording`` contiguous windows, in time order. The anchor
is ``bench/data/birdnet_windows.npz`` (``bench.real_embeddings``): real windows of
bird-free beds, field recordings and songs of known species.

How a window is made. Each dimension d has a pre-activation z_d ~ N(a_d, s_d^2) whose
ReLU has the real mean and the real fraction of exact zeros of that dimension (BirdNET's
pooled embedding is a ReLU output: no negative values, 15-24% zeros). The standardised
pre-activations are correlated through an orthonormal basis whose leading vectors are
the principal axes of the real windows (their pre-activations, inverted through the
ReLU) and whose rest is a seeded random complement; the variance along basis vector k
falls as k^-ALPHA over all ``dim`` vectors, so the set is not low-rank at any n. The
top HEAD_DIMS vectors are mixed by a matrix product; the tail's variance is added as
independent noise in every dimension (the same total, at a fraction of the cost).

In those coordinates a window is a mix of:
- its recording's background: a centre (a real bed or field window plus fresh
  variation) and an AR(1) drift in time, whose strength varies between recordings; a
  few recordings are nearly steady, like a looped drone (the real near-duplicates);
- for about a third of the windows, in bouts, a call: its type's centre (a real song
  window plus variation) over the recording's background, plus noise. Type sizes
  follow a power law (Zipf): a few common types, many rare ones; their number grows as
  the square root of the number of calls (hundreds at 20,000 windows, ~1,700 at 1M).

Other dimensions than 1024 (Perch 2.0's 1536): the real windows are first lifted by a
fixed seeded non-negative map, dimension j of the lift being dimension ``perm[j % 1024]``
of the real window (``perm`` a seeded permutation) times a weight, 1 for the first 1024
and uniform in [0.7, 1.3] for the repeats, all scaled by sqrt(1024 / dim) so norms stay
the same; means, zero fractions and principal axes are then taken from the lifted
windows. Repeated dimensions are decorrelated by the complement's fresh variation.

Generated vs real (``python -m bench.real_like``; 20,000 windows, 60 per recording;
the spectrum on as many windows as the real set):

    measurement                          real (N=256)  1024    1536
    zero_fraction                        0.197         0.196   0.194   (no negative values in any)
    norm_mean / norm_sd                  16.7 / 3.09   17.0 / 3.19   17.1 / 3.27
    norm_min / norm_max                  9.3 / 22.8    9.7 / 42.0    10.2 / 42.2   (a longer tail)
    mean_norm / mean_share               11.7 / 0.474  11.7 / 0.458  11.8 / 0.460
    cos_to_mean p5 / p50 / p95           .62/.70/.78   .60/.69/.76   .61/.70/.76
    unrelated_background_cos_p50         0.495         0.487   0.492
    within_file_background_cos mean, sd  0.78, 0.135   0.76, 0.122   0.77, 0.112
    within_type_cos_p50                  0.599         0.674   0.677
    between_type_cos_p50                 0.462         0.476   0.473
    consecutive_background_cos_p50       0.841         0.854   0.852
    nn_same_file_background_fraction     0.698         0.927   0.901
    near_duplicate_background_fraction   0.094         0.034   0.036
    top10 / top48 variance share         0.51 / 0.81   0.55 / 0.79   0.55 / 0.79
    dims for 90% / 99% (on 256 windows)  84 / 190      99 / 216      104 / 222

Where they differ, on purpose or by the real set's make-up: the real within-type cosine
is pulled down by one-window types (kiwi syllables, a zebra finch call, zero-padded);
published and earlier measurements put it at 0.66-0.78. Real files hold 1-40 windows,
the generated recordings 60, so more of a generated window's neighbours share its file.
The real near-duplicates (9%) come from looped game sounds at a 3 s hop; 2-3% were
measured on a larger set. 1,000,000 x 1024 takes about 55-60 s on 2 shared cores, with
~0.2 GB beyond the 4.1 GB output.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench.embedding_shape import shape_stats

DATA = Path(__file__).resolve().parent / "data"
WINDOWS_FILE = DATA / "birdnet_windows.npz"
SHAPE_FILE = DATA / "birdnet_shape.json"
REAL_DIM = 1024
POWER = 1.75  # a dimension grows as its pre-activation to this power: heavier-tailed than a ReLU
ALPHA = 1.3  # eigenvalues fall as k^-ALPHA, as the real ones do
HEAD_DIMS = 384  # basis vectors mixed exactly; the rest as independent noise
CHUNK_ROWS = 8_192  # windows made at once: memory stays flat at any n
CALL_FRACTION = 1 / 3  # two thirds of windows are background
CALL_STAY = 0.6  # a call window is followed by another of the same bout with this chance
TYPES_PER_RECORDING = 3  # at most; a recording hears a few types
ZIPF = 1.1  # type sizes fall as rank^-ZIPF
SEED_SHARE = 0.5  # of a recording's or a type's centre, the part taken from a real window
STEADY_RECORDINGS = 0.05  # recordings whose background barely moves (looped drones)
TYPE_SHARE = 0.45  # of a call window: its type's centre
CALL_BACKGROUND_SHARE = 0.30  # of a call window: its recording's background at that time


@dataclasses.dataclass(frozen=True)
class RealLike:
    """embeddings: float32 [n, dim] (or the caller's array); recording: int64 [n], contiguous, in time order;
    call_type: int64 [n], -1 for background."""

    embeddings: np.ndarray
    recording: np.ndarray
    call_type: np.ndarray


@dataclasses.dataclass(frozen=True)
class Anchor:
    """What the generator takes from the real windows, at one dimension D.

    A dimension's value is ``scale * relu(threshold + u) ** POWER`` with u a standard
    normal, correlated between dimensions. threshold, scale: float32 [D]; basis: float32
    [D, H] (H = min(HEAD_DIMS, D)), the leading orthonormal vectors; head_sd: float32 [H], the sd
    along them; tail_sd: the sd of the tail's noise in each dimension; unit_sd: float32
    [D], the sd of a dimension before standardising; background_seeds, song_seeds:
    float32 [S, H], real windows in the basis's coordinates, scaled to a random
    window's length there.
    """

    threshold: np.ndarray
    scale: np.ndarray
    basis: np.ndarray
    head_sd: np.ndarray
    tail_sd: float
    unit_sd: np.ndarray
    background_seeds: np.ndarray
    song_seeds: np.ndarray


def lift(x: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Real windows, float32 [N, 1024], mapped to ``dim`` dimensions (see the module docstring)."""
    rng = np.random.default_rng([seed, dim])
    source = np.resize(rng.permutation(REAL_DIM), dim)
    weight = np.ones(dim, np.float32)
    weight[REAL_DIM:] = rng.uniform(0.7, 1.3, max(0, dim - REAL_DIM))
    return x[:, source] * (weight * np.float32(np.sqrt(REAL_DIM / dim)))


@functools.cache
def anchor(dim: int, seed: int = 0) -> Anchor:
    """The generator's parameters at ``dim``, from the real windows (cached per process)."""
    real = np.load(WINDOWS_FILE)
    x = real["embeddings"].astype(np.float32)
    x = x if dim == REAL_DIM else lift(x, dim, seed)
    is_song = real["kind"] == "song"
    n = len(x)
    normal = statistics.NormalDist()
    # Per dimension, the threshold that gives the real fraction of zeros, and the scale
    # that gives the real mean (the mean of relu(threshold + u) ** POWER over u's quantiles).
    zero = np.clip((x == 0).mean(axis=0), 0.5 / n, 1 - 0.5 / n)
    threshold = -np.vectorize(normal.inv_cdf)(zero)
    quantiles = np.array([normal.inv_cdf((i + 0.5) / 512) for i in range(512)])
    powered = (np.maximum(threshold[:, None] + quantiles, 0) ** POWER).mean(axis=1)
    scale = np.maximum(x.mean(axis=0), 1e-6) / powered
    # The real windows' u: a zero becomes the mean of u below -threshold.
    below = -np.exp(-0.5 * threshold**2) / np.sqrt(2 * np.pi) / np.maximum(np.vectorize(normal.cdf)(-threshold), 1e-12)
    u = np.where(x > 0, (x / scale) ** (1 / POWER) - threshold, below).astype(np.float32)
    u -= u.mean(axis=0)
    _, _, axes = np.linalg.svd(u, full_matrices=False)
    head_dims = min(HEAD_DIMS, dim)  # a narrow model's whole basis is its head
    head = axes[: min(head_dims, len(axes))].T  # [D, r]: the real principal axes
    if head.shape[1] < head_dims:  # fewer real windows than head_dims: a seeded complement
        rng = np.random.default_rng([seed, dim, 1])
        extra = rng.standard_normal((dim, head_dims - head.shape[1]))
        extra -= head @ (head.T @ extra)
        head = np.hstack([head, np.linalg.qr(extra)[0]])
    variance = np.arange(1, dim + 1, dtype=np.float64) ** -ALPHA
    head_sd = np.sqrt(variance[:head_dims])
    tail_sd = float(np.sqrt(variance[head_dims:].sum() / dim))
    unit_sd = np.sqrt((head**2) @ variance[:head_dims] + tail_sd**2)
    coordinates = (u * unit_sd) @ head  # [N, head_dims]
    coordinates *= np.sqrt(variance[:head_dims].sum()) / np.linalg.norm(coordinates, axis=1, keepdims=True)
    return Anchor(
        threshold.astype(np.float32),
        scale.astype(np.float32),
        head.astype(np.float32),
        head_sd.astype(np.float32),
        tail_sd,
        unit_sd.astype(np.float32),
        coordinates[~is_song].astype(np.float32),
        coordinates[is_song].astype(np.float32),
    )


def _type_sizes(count: int) -> np.ndarray:
    """Each type's chance, float [count], falling as rank^-ZIPF."""
    weights = np.arange(1, count + 1, dtype=np.float64) ** -ZIPF
    return weights / weights.sum()


def real_like_embeddings(
    n: int, dim: int, windows_per_recording: int, seed: int = 0, out: np.ndarray | None = None
) -> RealLike:
    """``n`` windows shaped like real BirdNET output at ``dim`` dimensions (see the module
    docstring), written chunk by chunk into ``out`` [n, dim] where given (a float16 file
    on disk holds ten million of them in 20 GB), else into a new float32 array."""
    params = anchor(dim)
    rng = np.random.default_rng(seed)
    types = max(8, round(3 * np.sqrt(n * CALL_FRACTION)))
    type_chance = _type_sizes(types)
    type_centres = _centres(params, params.song_seeds, types, rng)
    embeddings = np.empty((n, dim), np.float32) if out is None else out
    recording = np.repeat(np.arange(-(-n // windows_per_recording)), windows_per_recording)[:n]
    call_type = np.full(n, -1, np.int64)
    per_chunk = max(1, CHUNK_ROWS // windows_per_recording) * windows_per_recording
    for start in range(0, n, per_chunk):
        rows = slice(start, min(n, start + per_chunk))
        recordings = -(-(rows.stop - rows.start) // windows_per_recording)
        chunk = _recordings(params, recordings, windows_per_recording, type_centres, type_chance, rng)
        embeddings[rows], call_type[rows] = chunk[0][: rows.stop - rows.start], chunk[1][: rows.stop - rows.start]
    return RealLike(embeddings, recording, call_type)


def _centres(params: Anchor, seeds: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` centres, float32 [count, H]: a real window's coordinates plus variation."""
    chosen = seeds[rng.integers(0, len(seeds), count)]
    fresh = rng.standard_normal((count, len(params.head_sd)), dtype=np.float32) * params.head_sd
    return np.sqrt(SEED_SHARE) * chosen + np.sqrt(1 - SEED_SHARE) * fresh


def _recordings(
    params: Anchor,
    recordings: int,
    length: int,
    type_centres: np.ndarray,
    type_chance: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``recordings`` recordings of ``length`` windows: (float32 [R * length, D], call type int [R * length])."""
    head = len(params.head_sd)
    centre = _centres(params, params.background_seeds, recordings, rng)
    # How much of a recording's background is its constant centre, and how fast the rest drifts.
    steady = rng.random(recordings) < STEADY_RECORDINGS
    constant = np.where(steady, 0.995, rng.beta(6, 4, recordings)).astype(np.float32)
    rho = np.where(steady, 0.99, rng.uniform(0.2, 0.6, recordings)).astype(np.float32)
    drift = np.empty((recordings, length, head), np.float32)
    drift[:, 0] = rng.standard_normal((recordings, head), dtype=np.float32)
    for t in range(1, length):
        innovation = rng.standard_normal((recordings, head), dtype=np.float32)
        drift[:, t] = rho[:, None] * drift[:, t - 1] + np.sqrt(1 - rho**2)[:, None] * innovation
    background = np.sqrt(constant)[:, None, None] * centre[:, None] + np.sqrt(1 - constant)[:, None, None] * (
        drift * params.head_sd
    )
    # Calls in bouts: a two-state chain whose stationary share of calls is CALL_FRACTION.
    enter = CALL_FRACTION * (1 - CALL_STAY) / (1 - CALL_FRACTION)
    calling = np.empty((recordings, length), bool)
    calling[:, 0] = rng.random(recordings) < CALL_FRACTION
    draws = rng.random((recordings, length))
    for t in range(1, length):
        calling[:, t] = np.where(calling[:, t - 1], draws[:, t] < CALL_STAY, draws[:, t] < enter)
    heard = rng.choice(len(type_chance), (recordings, TYPES_PER_RECORDING), p=type_chance)
    call_type = np.where(
        calling, heard[np.arange(recordings)[:, None], rng.integers(0, TYPES_PER_RECORDING, (recordings, length))], -1
    )
    coordinates = background.reshape(recordings * length, head)
    call_type = call_type.reshape(-1)
    calls = np.flatnonzero(call_type >= 0)
    noise = rng.standard_normal((len(calls), head), dtype=np.float32) * params.head_sd
    coordinates[calls] = (
        np.sqrt(TYPE_SHARE) * type_centres[call_type[calls]]
        + np.sqrt(CALL_BACKGROUND_SHARE) * coordinates[calls]
        + np.sqrt(1 - TYPE_SHARE - CALL_BACKGROUND_SHARE) * noise
    )
    standard = coordinates @ params.basis.T
    # The tail's noise is fresh in every window; a steady recording's is quiet too, or its
    # windows could never be near-duplicates. Uniform, not normal: half the cost, and a
    # few percent of the variance spread over every dimension has no visible shape.
    tail_sd = np.repeat(np.where(steady, 0.05, 1).astype(np.float32), length)[:, None] * np.float32(params.tail_sd)
    tail = rng.random(standard.shape, dtype=np.float32)
    tail -= np.float32(0.5)
    tail *= np.float32(np.sqrt(12)) * tail_sd
    standard += tail
    del tail
    standard /= params.unit_sd
    standard += params.threshold
    np.maximum(standard, 0, out=standard)
    # ** POWER as x * x^(1/2) * x^(1/4): square roots are many times faster than a general power.
    root = np.sqrt(standard)
    standard *= root
    standard *= np.sqrt(root, out=root)
    standard *= params.scale
    return standard, call_type


THRESHOLDS = {  # how far a generated measurement may stray from the real one
    "negative_fraction": 0.0,
    "zero_fraction": 0.04,
    "norm_mean": 1.5,
    "norm_sd": 1.5,
    "mean_share": 0.05,
    "cos_to_mean_p5": 0.06,
    "cos_to_mean_p50": 0.05,
    "cos_to_mean_p95": 0.05,
    "unrelated_background_cos_p50": 0.06,
    "within_file_background_cos_mean": 0.06,
    "within_file_background_cos_sd": 0.05,
    "within_type_cos_p50": 0.1,
    "between_type_cos_p50": 0.06,
    "consecutive_background_cos_p50": 0.06,
    "nn_same_file_background_fraction": 0.25,
    "near_duplicate_background_fraction": 0.07,
    "top10_variance_share": 0.08,
    "top48_variance_share": 0.08,
    "dims_for_90pct": 60,
    "dims_for_99pct": 80,
}


def compare(generated_stats: dict[str, float], real_stats: dict[str, float]) -> list[str]:
    """The measurements of ``generated_stats`` further from ``real_stats`` than THRESHOLDS allows."""
    out = []
    for name, allowed in THRESHOLDS.items():
        generated, real = generated_stats[name], real_stats[name]
        if not abs(generated - real) <= allowed:
            out.append(f"{name}: generated {generated:.4g}, real {real:.4g} (+-{allowed:g})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--per-recording", type=int, default=60)
    parser.add_argument("--dims", type=int, nargs="+", default=[1024, 1536])
    parser.add_argument("--speed", type=int, default=0, help="also time this many windows at the first dim")
    args = parser.parse_args()
    real = json.loads(SHAPE_FILE.read_text())
    columns = {"real": real["stats"]}
    for dim in args.dims:
        made = real_like_embeddings(args.windows, dim, args.per_recording)
        stats = shape_stats(
            made.embeddings, made.recording, made.call_type, np.arange(args.windows), pca_rows=real["n"]
        )
        columns[f"gen {dim}"] = stats
        print(f"{dim}: out of range: {compare(stats, real['stats']) or 'none'}")
    names = [name for name in real["stats"] if all(name in column for column in columns.values())]
    print(f"{'':38}" + "".join(f"{title:>10}" for title in columns))
    for name in names:
        print(f"{name:38}" + "".join(f"{column[name]:10.3g}" for column in columns.values()))
    if args.speed:
        began = time.perf_counter()
        real_like_embeddings(args.speed, args.dims[0], args.per_recording)
        print(f"{args.speed} x {args.dims[0]}: {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main()
