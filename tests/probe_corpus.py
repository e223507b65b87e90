"""A corpus for measuring probes on real sound: real songs mixed into real ambience.

Great tit songs of two individuals (pykanto's wheel, each song with its bird's id) are
placed at known times and SNRs into 3 s windows of bird-free ambience (rain and wind
from Debian's flare-game), among windows of other species (Bengalese finch, European
storm-petrel, also from pykanto) and of ambience alone. The training windows hold one
individual's songs, the held-out windows the other's, on fresh ambience: a probe has to
generalise to a bird it never heard, as in the field.

Everything is at BirdNET's framing (48 kHz, 3 s windows), one window per vocalization,
so each window's truth is known by construction.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import soundfile
import soxr

from annotations.package_data import deb_members, wheel_members

RATE = 48_000
WINDOW_S = 3.0
WINDOW = int(RATE * WINDOW_S)
PYKANTO = "pykanto==0.1.8"
GREAT_TIT = "pykanto/data/segmented/great_tit"
GREAT_TIT_SONGS = [
    "2021-B32-0415_05-11",
    "2021-B32-0415_05-15",
    "2021-B32-0415_05-21",
    "2021-B32-0415_05-23",
    "2021-B32-0415_05-3",
    "2021-B32-0415_05-6",
    "2021-B32-0415_05-9",
    "2021-B32-0416_04-21",
    "2021-B32-0416_04-23",
    "2021-B32-0416_04-24",
    "2021-B32-0416_05-20",
    "2021-SW83-0418_04-77",
    "2021-SW83-0418_04-78",
    "2021-SW83-0418_04-79",
    "2021-SW83-0418_04-80",
    "2021-SW83-0418_04-81",
    "2021-SW83-0418_04-86",
    "2021-SW83-0418_04-88",
    "2021-SW83-0418_04-91",
    "2021-SW83-0418_04-92",
]
OTHER_SPECIES = [
    "pykanto/data/raw/BENGALESE_FINCH/bird_3/348.wav",
    "pykanto/data/raw/BENGALESE_FINCH/bird_3/363.wav",
    "pykanto/data/raw/STORM-PETREL/XC46092.wav",
    "pykanto/data/raw/STORM-PETREL/XC663885.wav",
]
FLARE = "usr/share/games/flare/mods"
AMBIENCE = [
    f"{FLARE}/empyrean_campaign/soundfx/environment/rain.ogg",
    f"{FLARE}/fantasycore/soundfx/environment/wind_loop.ogg",
    f"{FLARE}/fantasycore/soundfx/environment/cave_wind_loop.ogg",
]
TRAIN_BIRD, HELD_OUT_BIRD = "B32", "SW83"
AMBIENCE_RMS = 0.02


@dataclasses.dataclass(frozen=True)
class Sources:
    """Mono float32 audio at 48 kHz: songs by bird id, other species' recordings, ambience beds."""

    songs: dict[str, list[np.ndarray]]
    other_species: list[np.ndarray]
    ambience: list[np.ndarray]


@dataclasses.dataclass(frozen=True)
class Corpus:
    """windows: float32 [N, WINDOW]; song: bool [N]; held_out: bool [N] (the other bird's
    side); recording: int [N], windows of one ambience bed in a row; snr_db: float [N],
    NaN where the window holds no vocalization."""

    windows: np.ndarray
    song: np.ndarray
    held_out: np.ndarray
    recording: np.ndarray
    snr_db: np.ndarray


def _read(path: Path) -> np.ndarray:
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, RATE).astype(np.float32)


def load_sources(cache: Path) -> Sources:
    """The real recordings, fetched once into ``cache`` (the wheel and the .deb)."""
    wavs = wheel_members(cache, PYKANTO, [f"{GREAT_TIT}/WAV/{song}.wav" for song in GREAT_TIT_SONGS])
    metadata = wheel_members(cache, PYKANTO, [f"{GREAT_TIT}/JSON/{song}.JSON" for song in GREAT_TIT_SONGS])
    songs: dict[str, list[np.ndarray]] = {}
    for wav, meta in zip(wavs, metadata, strict=True):
        songs.setdefault(json.loads(meta.read_text())["ID"], []).append(_read(wav))
    other = [_read(path) for path in wheel_members(cache, PYKANTO, OTHER_SPECIES)]
    ambience = [_read(path) for path in deb_members(cache, "flare-game", AMBIENCE)]
    return Sources(songs, other, ambience)


def _excerpt(audio: np.ndarray, seconds: float, rng: np.random.Generator) -> np.ndarray:
    length = min(len(audio), int(seconds * RATE))
    start = rng.integers(0, len(audio) - length + 1)
    return audio[start : start + length]


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12)


def _side(
    sources: Sources,
    bird: str,
    placements: int,
    negatives_per_song: int,
    windows_per_recording: int,
    snr_range_db: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One side of the split: every song of ``bird`` ``placements`` times, and
    ``negatives_per_song`` negatives per placed song, half other species, half ambience."""
    clips: list[np.ndarray | None] = [song for song in sources.songs[bird] for _ in range(placements)]
    is_song = [True] * len(clips)
    for i in range(len(clips) * negatives_per_song):
        clips.append(_excerpt(sources.other_species[i % len(sources.other_species)], 2.5, rng) if i % 2 else None)
        is_song.append(False)
    order = rng.permutation(len(clips))
    windows = np.empty((len(clips), WINDOW), np.float32)
    snr_db = np.full(len(clips), np.nan)
    bed = sources.ambience[0]
    for row, i in enumerate(order):
        if row % windows_per_recording == 0:  # a new recording: another bed, another level
            bed = sources.ambience[rng.integers(len(sources.ambience))]
            level = AMBIENCE_RMS * 10 ** rng.uniform(-0.3, 0.3)
        noise = _excerpt(np.tile(bed, 1 + WINDOW // len(bed)), WINDOW_S, rng)
        window = noise * (level / _rms(noise))
        clip = clips[i]
        if clip is not None:
            clip = clip[: WINDOW - RATE // 10]
            snr_db[row] = rng.uniform(*snr_range_db)
            # SNR of the clip against the ambience over the same span.
            clip = clip * (level / _rms(clip) * 10 ** (snr_db[row] / 20))
            offset = rng.integers(0, WINDOW - len(clip) + 1)
            window[offset : offset + len(clip)] += clip
        windows[row] = np.clip(window, -1, 1)
    recording = np.arange(len(clips)) // windows_per_recording
    return windows, np.asarray(is_song)[order], recording, snr_db


def make_corpus(
    sources: Sources,
    placements: int = 2,
    negatives_per_song: int = 2,
    windows_per_recording: int = 6,
    snr_range_db: tuple[float, float] = (-30.0, -6.0),
    seed: int = 0,
) -> Corpus:
    """Training windows with the training bird's songs, then held-out windows with the
    other bird's; recordings are numbered on across both."""
    rng = np.random.default_rng(seed)
    sides = [
        _side(sources, bird, placements, negatives_per_song, windows_per_recording, snr_range_db, rng)
        for bird in (TRAIN_BIRD, HELD_OUT_BIRD)
    ]
    train_recordings = sides[0][2].max() + 1
    return Corpus(
        windows=np.concatenate([side[0] for side in sides]),
        song=np.concatenate([side[1] for side in sides]),
        held_out=np.concatenate([np.zeros(len(sides[0][0]), bool), np.ones(len(sides[1][0]), bool)]),
        recording=np.concatenate([sides[0][2], sides[1][2] + train_recordings]),
        snr_db=np.concatenate([side[3] for side in sides]),
    )


def embed(corpus: Corpus, batch: int = 32) -> np.ndarray:
    """BirdNET V2.4 embeddings of the corpus windows: float32 [N, 1024]."""
    from workers.embedding_models import load_model

    model = load_model("birdnet_v2_4")
    return np.concatenate(
        [model.embed_windows(corpus.windows[i : i + batch]).embeddings for i in range(0, len(corpus.windows), batch)]
    )
