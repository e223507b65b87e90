"""Test recordings built from real birdsong: which windows hold song is known by construction.

Each recording is quiet brown noise with one 3 s excerpt of the real birdsong recording
placed exactly in one BirdNET window (3 s windows, 3 s hop), at different gains and
sample rates, so a probe has real positives and negatives to learn and to be measured on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile
import soxr

WINDOW_S = 3.0
WINDOWS_PER_RECORDING = 4


@dataclasses.dataclass(frozen=True)
class CorpusRecording:
    path: Path
    song_window: int  # index of the window that holds birdsong; the others hold noise


def brown_noise(seconds: float, rate: int, rng: np.random.Generator, level: float = 0.02) -> np.ndarray:
    steps = rng.standard_normal(int(seconds * rate)).astype(np.float32)
    noise = np.cumsum(steps)
    noise -= np.convolve(noise, np.ones(rate // 10) / (rate // 10), mode="same")  # remove drift
    return (level * noise / (np.abs(noise).max() + 1e-9)).astype(np.float32)


def make_recordings(
    folder: Path, birdsong: np.ndarray, rate: int, count: int = 8, seed: int = 0
) -> list[CorpusRecording]:
    """``count`` 12 s recordings, each with birdsong in exactly one window."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    recordings = []
    file_rates = [32_000, 44_100, 48_000, 22_050]
    for i in range(count):
        file_rate = file_rates[i % len(file_rates)]
        audio = brown_noise(WINDOW_S * WINDOWS_PER_RECORDING, rate, rng)
        excerpt_start = int((i % 3) * WINDOW_S * rate)
        excerpt = birdsong[excerpt_start : excerpt_start + int(WINDOW_S * rate)] * (0.5 + 0.5 * (i % 2))
        song_window = i % WINDOWS_PER_RECORDING
        offset = int(song_window * WINDOW_S * rate)
        audio[offset : offset + len(excerpt)] += excerpt
        if file_rate != rate:
            audio = soxr.resample(audio, rate, file_rate)
        extension = "flac" if i % 4 == 3 else "wav"
        path = folder / f"site{i % 2}_2026051{i}_0500{i:02d}.{extension}"
        soundfile.write(str(path), np.clip(audio, -1, 1), file_rate, subtype="PCM_16")
        recordings.append(CorpusRecording(path, song_window))
    return recordings


def make_bad_files(folder: Path, good_wav: Path) -> dict[str, Path]:
    """Files a deployment meets in the field: a text file named .wav, a WAV cut inside its
    header, and one cut in its data (a recorder that lost power)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = good_wav.read_bytes()
    files = {
        "text": folder / "notes.wav",
        "header_cut": folder / "cut_header.wav",
        "data_cut": folder / "cut_data.wav",
    }
    files["text"].write_text("field notes: battery low at 05:00, not audio\n" * 20)
    files["header_cut"].write_bytes(data[:30])
    files["data_cut"].write_bytes(data[: len(data) // 2])
    return files
