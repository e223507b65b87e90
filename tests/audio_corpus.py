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


def _pcm16_wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """A canonical 44-byte PCM WAV header, with whatever sizes a test wants it to claim."""
    import struct

    byte_rate = sample_rate * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", (36 + data_bytes) & 0xFFFFFFFF)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes & 0xFFFFFFFF)
    )


def make_hostile_corpus(folder: Path, birdsong: np.ndarray, rate: int) -> dict[str, tuple[str, str | int]]:
    """Files that break naive ingest, each with what should happen to it:
    {file name: ("failed", words in the reason) or ("done", expected window count)}."""
    folder.mkdir(parents=True, exist_ok=True)
    one_second = (birdsong[:rate] * 32767).astype("<i2").tobytes()
    expected: dict[str, tuple[str, str | int]] = {}

    (folder / "empty.wav").write_bytes(b"")
    expected["empty.wav"] = ("failed", "empty")
    (folder / "wrong_magic.wav").write_bytes(b"RIFX" + bytes(range(256)) * 4)
    expected["wrong_magic.wav"] = ("failed", "not a readable audio file")
    (folder / "notes.flac").write_text("not audio at all\n" * 50)
    expected["notes.flac"] = ("failed", "not a readable audio file")
    (folder / "zero_rate.wav").write_bytes(_pcm16_wav_header(0, 1, len(one_second)) + one_second)
    expected["zero_rate.wav"] = ("failed", "")
    # A header that claims 2^31 frames over one second of data.
    (folder / "claims_2e31_frames.wav").write_bytes(_pcm16_wav_header(rate, 1, 2**32 - 2) + one_second)
    expected["claims_2e31_frames.wav"] = ("done", 1)
    nan_audio = birdsong[: 6 * rate].copy()
    nan_audio[rate : 2 * rate] = np.nan
    soundfile.write(str(folder / "nan_samples.wav"), nan_audio, rate, subtype="FLOAT")
    expected["nan_samples.wav"] = ("done", 2)
    soundfile.write(str(folder / "eight_channels.wav"), np.tile(birdsong[: 9 * rate, None], (1, 8)), rate)
    expected["eight_channels.wav"] = ("done", 3)
    soundfile.write(str(folder / "ultrasonic_384k.wav"), soxr.resample(birdsong[: 6 * rate], rate, 384_000), 384_000)
    expected["ultrasonic_384k.wav"] = ("done", 2)
    # Three hours of digital silence: FLAC keeps it small; the model embeds it once.
    silence_rate = 8_000
    with soundfile.SoundFile(
        str(folder / "silence_3h.flac"), "w", silence_rate, 1, subtype="PCM_16", format="FLAC"
    ) as f:
        block = np.zeros(silence_rate * 600, dtype=np.int16)
        for _ in range(18):
            f.write(block)
    expected["silence_3h.flac"] = ("done", 3600)
    soundfile.write(str(folder / "good.wav"), birdsong, rate)
    expected["good.wav"] = ("done", 4)
    return expected
