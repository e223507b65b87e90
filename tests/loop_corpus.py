"""Deployments of real sound for measuring the labeling loop: what a scripted annotator
gains from the queues, label by label.

Two deployments of continuous recordings (48 kHz, 3 s windows, BirdNET's framing), each
window holding at most one vocalization, so that every window's truth is known:

- a **common** species, great tit song (pykanto's two birds), in about 15% of windows;
  BirdNET knows it well;
- a **rare** one, Bengalese finch song (pykanto's two recordings of one bird), in about
  1%: a domesticated munia that BirdNET's classes name only as its wild form, the kind
  of new call type agile modeling is for;
- distractors: European storm-petrel calls (pykanto), Java sparrow sequences and kiwi
  syllables (yaaat), in about 20%; the rest is ambience alone.

Deployment A holds one great tit and one finch recording, deployment B the other bird
and the other recording on other stretches of ambience: a probe trained on A is scored
on B, a great tit it never heard. Vocalizations are mixed at -22 to -2 dB against the
ambience over the same span, faint as most calls in a season's recordings are (at -12
to +2 dB every probe reaches ROC-AUC 1.000 from all labels, and the benchmark tells
nothing); the ambience beds (flare-game's rain and winds) change level from recording
to recording.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import soundfile

from tests.probe_corpus import _excerpt, _read, _rms, load_sources

RATE = 48_000
WINDOW_S = 3.0
WINDOW = int(RATE * WINDOW_S)
COMMON, RARE = "great tit", "Bengalese finch"
YAAAT = "yaaat==0.2.1"
JAVA_SPARROW = [
    f"yaaat/test_files/test_audio/sequences/jelatik/{n}.wav"
    for n in ("0611", "1311", "1411", "1511", "1611", "1713", "1811", "1911", "2051", "2111", "2211", "2411", "2511")
]
KIWI = [f"yaaat/test_files/test_audio/syllables/kiwi/slice_{n}.wav" for n in range(1, 11)]
STORM_PETRELS = ["pykanto/data/raw/STORM-PETREL/XC46092.wav", "pykanto/data/raw/STORM-PETREL/XC663885.wav"]
FINCHES = ["pykanto/data/raw/BENGALESE_FINCH/bird_3/348.wav", "pykanto/data/raw/BENGALESE_FINCH/bird_3/363.wav"]
FINCH_SONG_S = (6, 20)
GREAT_TIT_BIRDS = ("B32", "SW83")  # deployment A's bird, deployment B's
AMBIENCE_RMS = 0.02
FIRST_START = dt.datetime(2026, 5, 1, 4, 0)


@dataclasses.dataclass(frozen=True)
class LoopSources:
    """Mono float32 audio at RATE: great tit songs by bird, Bengalese finch recordings (A's,
    B's), distractor vocalizations, ambience beds."""

    great_tit: dict[str, list[np.ndarray]]
    finch: list[np.ndarray]
    distractors: list[np.ndarray]
    ambience: list[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Recording:
    """audio: float32 [windows * WINDOW]; truth: the species of each window ('' for none)."""

    name: str
    audio: np.ndarray
    truth: list[str]


def load_loop_sources(cache: Path) -> LoopSources:
    """The real recordings, fetched once into ``cache`` (pykanto's and yaaat's wheels, flare-game)."""
    from annotations.package_data import wheel_members

    probe = load_sources(cache)
    # Both finch files are quiet for their first 6 s and after 20 s; song lies between.
    finches = [
        _read(path)[FINCH_SONG_S[0] * RATE : FINCH_SONG_S[1] * RATE]
        for path in wheel_members(cache, "pykanto==0.1.8", FINCHES)
    ]
    distractors = [_read(path) for path in wheel_members(cache, "pykanto==0.1.8", STORM_PETRELS)]
    distractors += [_read(path) for path in wheel_members(cache, YAAAT, JAVA_SPARROW + KIWI)]
    return LoopSources(probe.songs, finches, distractors, probe.ambience)


def make_deployment(
    sources: LoopSources,
    side: int,
    recordings: int,
    windows_per_recording: int,
    common_share: float = 0.15,
    rare_share: float = 0.01,
    distractor_share: float = 0.2,
    snr_range_db: tuple[float, float] = (-22.0, -2.0),
    seed: int = 0,
) -> list[Recording]:
    """One deployment: side 0 is A (the first great tit and finch recording), 1 is B."""
    rng = np.random.default_rng(seed * 2 + side)
    songs = sources.great_tit[GREAT_TIT_BIRDS[side]]
    finch = sources.finch[side]
    total = recordings * windows_per_recording
    counts = {COMMON: round(total * common_share), RARE: max(1, round(total * rare_share))}
    counts["distractor"] = round(total * distractor_share)
    kinds = [kind for kind, count in counts.items() for _ in range(count)]
    kinds += [""] * (total - len(kinds))
    kinds = [kinds[i] for i in rng.permutation(total)]
    made = []
    for r in range(recordings):
        bed = sources.ambience[rng.integers(len(sources.ambience))]
        looped = np.tile(bed, 2 + windows_per_recording * WINDOW // len(bed))
        start = rng.integers(0, len(bed))
        level = AMBIENCE_RMS * 10 ** rng.uniform(-0.3, 0.3)
        audio = looped[start : start + windows_per_recording * WINDOW] * (level / _rms(bed))
        truth = []
        for w in range(windows_per_recording):
            kind = kinds[r * windows_per_recording + w]
            if kind == COMMON:
                clip = songs[rng.integers(len(songs))]
            elif kind == RARE:
                clip = _excerpt(finch, rng.uniform(1.5, 2.5), rng)
            elif kind == "distractor":
                clip = _excerpt(sources.distractors[rng.integers(len(sources.distractors))], 2.5, rng)
            else:
                truth.append("")
                continue
            clip = clip[: WINDOW - RATE // 10]
            offset = w * WINDOW + rng.integers(0, WINDOW - len(clip) + 1)
            span = audio[offset : offset + len(clip)]
            clip = clip * (_rms(span) / _rms(clip) * 10 ** (rng.uniform(*snr_range_db) / 20))
            audio[offset : offset + len(clip)] += clip
            truth.append("" if kind == "distractor" else kind)
        started = FIRST_START + dt.timedelta(days=side * 30 + r // 8, minutes=(r % 8) * 30)
        made.append(Recording(f"{started:%Y%m%d_%H%M%S}.wav", np.clip(audio, -1, 1).astype(np.float32), truth))
    return made


def write_recordings(recordings: list[Recording], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for recording in recordings:
        soundfile.write(folder / recording.name, recording.audio, RATE, subtype="PCM_16")


def example_clip(sources: LoopSources, species: str, path: Path) -> Path:
    """What a person would upload as the example: one clear call of A's bird or
    recording (+6 dB over rain), a 3 s WAV at ``path``."""
    bed = sources.ambience[0][:WINDOW]
    bed = bed * (AMBIENCE_RMS / _rms(bed))
    finch = sources.finch[0][2 * RATE : 4 * RATE]
    call = sources.great_tit[GREAT_TIT_BIRDS[0]][0] if species == COMMON else finch
    call = call[: WINDOW - RATE // 5]
    offset = RATE // 10
    span = bed[offset : offset + len(call)]
    audio = bed.copy()
    audio[offset : offset + len(call)] += call * (_rms(span) / _rms(call) * 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.clip(audio, -1, 1), RATE, subtype="PCM_16")
    return path
