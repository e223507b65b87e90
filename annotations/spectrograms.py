"""Spectrogram pictures of recordings, rendered on the server and cached on disk.

One fixed colour scale for every picture (``MIN_DB`` .. ``MAX_DB`` dB relative to full
scale), so the same colour means the same sound level on every hit an annotator
compares. Rendering is NumPy (an STFT, a triangular filterbank on mel or linear
frequency) and Pillow; matplotlib would cost more per picture than the whole rest of
a results page.

A time-expanded recording (``Recording.speed_factor``, bats) is drawn as the model hears
it, its samples read as if their rate were the speed times the file's: a second of the
picture is that many seconds of the file, its frequencies that many times lower. Only
the labels of the frequency axis are the file's own Hz.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
from django.conf import settings
from PIL import Image, ImageDraw

from annotations.audio import AudioError, read_segment
from annotations.errors import InputError
from annotations.models import Recording
from annotations.playback import MAX_CONTEXT_S

MIN_DB = -100.0
MAX_DB = -30.0
# Bumped whenever rendering changes, so that cached pictures are not served stale.
RENDER_VERSION = 1
# A stretch of a recording is drawn as the shortest tile that covers it, so that spans
# shifted by a millisecond share one cached picture instead of filling the disk. A tile
# of length L starts on a multiple of L / 2: tiles overlap by half, so every span up to
# half the longest tile lies inside one.
TILE_LENGTHS_S = (5.0, 10.0, 30.0, 60.0, 120.0)
MAX_SPAN_S = TILE_LENGTHS_S[-1] / 2
# A whole recording's overview: at most this many columns, each the loudest of a few frames.
OVERVIEW_COLUMNS = 1200
OVERVIEW_FRAMES = 4
SCALES = ("mel", "linear")
# Brightening for faint calls, the same for every picture on a page: the colour scale
# moves down by this many dB (still one scale, so pictures stay comparable).
GAINS_DB = (0, 10, 20, 30, 40)
# Time scales of a recording's tiles, so that a zoomed view is drawn at about its own width.
PX_PER_S = (25, 50, 100, 200)

# Anchors of the "magma" colour map (dark purple to pale yellow), perceptually ordered.
_MAGMA_ANCHORS = np.array(
    [
        [0, 0, 4],
        [28, 16, 68],
        [79, 18, 123],
        [129, 37, 129],
        [181, 54, 122],
        [229, 80, 100],
        [251, 135, 97],
        [254, 194, 135],
        [252, 253, 191],
    ],
    dtype=np.float64,
)
COLOURS = np.stack(
    [np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_MAGMA_ANCHORS)), _MAGMA_ANCHORS[:, c]) for c in range(3)],
    axis=1,
).astype(np.uint8)  # [256, 3]


@dataclasses.dataclass(frozen=True)
class SpectrogramStyle:
    """How a picture looks: frequency scale, size, and the highest frequency shown."""

    scale: str = "mel"
    gain_db: int = 0
    height_px: int = 128
    px_per_s: int = 50
    max_frequency_hz: float = 16_000.0
    axis_px: int = 34  # left margin for the frequency labels

    def __post_init__(self):
        if self.scale not in SCALES:
            raise InputError(f"scale must be one of {', '.join(SCALES)}, not {self.scale!r}")
        if self.gain_db not in GAINS_DB:
            raise InputError(f"gain must be one of {', '.join(map(str, GAINS_DB))} dB")
        if self.px_per_s not in PX_PER_S:
            raise InputError(f"px_per_s must be one of {', '.join(map(str, PX_PER_S))}")


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def band_edges(style: SpectrogramStyle, nyquist_hz: float) -> np.ndarray:
    """Edges of the picture's ``height_px`` frequency bands in Hz, lowest first: [height_px + 2]."""
    top = min(style.max_frequency_hz, nyquist_hz)
    if style.scale == "mel":
        return _mel_to_hz(np.linspace(_hz_to_mel(50.0), _hz_to_mel(top), style.height_px + 2))
    return np.linspace(0.0, top, style.height_px + 2)


def _filterbank(bin_hz: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Triangular bands [bands, bins], each row summing to 1: a band's power is the mean
    power of its bins, so mel and linear pictures share one colour scale."""
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz[None, :] - lower) / np.maximum(centre - lower, 1e-9)
    falling = (upper - bin_hz[None, :]) / np.maximum(upper - centre, 1e-9)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    # A band narrower than one FFT bin takes its nearest bin, so no row is empty.
    empty = weights.sum(axis=1) == 0
    nearest = np.abs(bin_hz[None, :] - centre[empty]).argmin(axis=1)
    weights[np.nonzero(empty)[0], nearest] = 1.0
    return weights / weights.sum(axis=1, keepdims=True)


def fft_size(sample_rate: int) -> int:
    return 1 << int(np.ceil(np.log2(max(256, sample_rate * 0.02))))  # about 20 ms


def band_power(frames: np.ndarray, sample_rate: int, style: SpectrogramStyle) -> np.ndarray:
    """Power of each of the style's bands in each frame (float32 [frames, fft_size]): [bands, frames]."""
    n_fft = frames.shape[1]
    window = np.hanning(n_fft).astype(np.float32)
    # Scaled so that a full-scale sine reads 0 dB.
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 * (4.0 / window.sum() ** 2)
    bands = _filterbank(np.fft.rfftfreq(n_fft, 1.0 / sample_rate), band_edges(style, sample_rate / 2))
    return bands @ power.T


def spectrogram_db(samples: np.ndarray, sample_rate: int, style: SpectrogramStyle) -> np.ndarray:
    """Band levels in dB relative to full scale, float32 [height_px, columns], low
    frequencies first; one column per ``1 / px_per_s`` seconds of ``samples`` (float32 [n])."""
    hop = max(1, round(sample_rate / style.px_per_s))
    n_fft = fft_size(sample_rate)
    columns = max(1, int(np.ceil(len(samples) / hop)))
    padded = np.zeros(columns * hop + n_fft, dtype=np.float32)
    padded[n_fft // 2 : n_fft // 2 + len(samples)] = samples
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:columns]
    return (10.0 * np.log10(band_power(frames, sample_rate, style) + 1e-20)).astype(np.float32)


def overview_db(
    path: Path, channel: int | None, style: SpectrogramStyle, columns: int, speed: float = 1.0
) -> tuple[np.ndarray, float]:
    """A whole file heard at ``speed`` in ``columns`` columns, as ``spectrogram_db``, and
    the rate it is heard at. Each column is the loudest
    of ``OVERVIEW_FRAMES`` short frames spread over its stretch: reading only those keeps an
    hour's overview to seconds, and the loudest keeps a short call visible."""
    with soundfile.SoundFile(str(path)) as f:
        heard_rate = f.samplerate * speed
        n_fft = fft_size(heard_rate)
        starts = np.linspace(0, max(0, f.frames - n_fft), columns * OVERVIEW_FRAMES).astype(np.int64)
        frames = np.zeros((len(starts), n_fft), dtype=np.float32)
        for row, start in enumerate(starts):
            f.seek(int(start))
            samples = f.read(n_fft, dtype="float32", always_2d=True)
            mono = samples.mean(axis=1) if channel is None else samples[:, channel]
            frames[row, : len(mono)] = mono
        power = band_power(frames, heard_rate, style).reshape(style.height_px, columns, OVERVIEW_FRAMES)
    return (10.0 * np.log10(power.max(axis=2) + 1e-20)).astype(np.float32), heard_rate


def _frequency_ticks(style: SpectrogramStyle, edges: np.ndarray, speed: float = 1.0) -> list[tuple[float, str]]:
    """(row from the bottom, label) for round frequencies inside the picture, labelled in
    the file's Hz (the picture's divided by ``speed``)."""
    centres = edges[1:-1]
    candidates = (500, 1000, 2000, 4000, 8000, 16000) if style.scale == "mel" else range(0, 48001, 2000)
    ticks = []
    for hz in candidates:
        if centres[0] <= hz <= centres[-1]:
            row = float(np.interp(hz, centres, np.arange(len(centres))))
            ticks.append((row, f"{hz / speed / 1000:.3g}k"))
    if style.scale == "linear" and len(ticks) > 6:
        ticks = ticks[:: len(ticks) // 5 + 1]
    return ticks


def render_png(
    samples: np.ndarray,
    sample_rate: int,
    style: SpectrogramStyle,
    marks_s: tuple[float, ...] = (),
    speed: float = 1.0,
) -> bytes:
    """A PNG of ``samples`` (float32 [n]) with a labeled frequency axis; thin white lines
    at ``marks_s`` seconds (e.g. where the window starts and ends within its context).
    ``speed``: the audio's time expansion, drawn as the model hears it."""
    marks_px = tuple(round(seconds / speed * style.px_per_s) for seconds in marks_s)
    heard_rate = sample_rate * speed
    return levels_png(spectrogram_db(samples, heard_rate, style), heard_rate, style, marks_px, speed)


def levels_png(
    levels: np.ndarray, sample_rate: float, style: SpectrogramStyle, marks_px: tuple[int, ...] = (), speed: float = 1.0
) -> bytes:
    """A PNG of band levels (float32 [height_px, columns] dB) of audio heard at
    ``sample_rate`` (the file's times ``speed``), with a frequency axis in the file's Hz."""
    import io

    scaled = np.clip((levels + style.gain_db - MIN_DB) / (MAX_DB - MIN_DB), 0.0, 1.0)
    pixels = COLOURS[(scaled[::-1] * 255).astype(np.uint8)]  # high frequencies at the top
    height, width = pixels.shape[:2]
    image = Image.new("RGB", (width + style.axis_px, height), (255, 255, 255))
    image.paste(Image.fromarray(pixels, "RGB"), (style.axis_px, 0))
    draw = ImageDraw.Draw(image)
    for column in marks_px:
        x = style.axis_px + column
        draw.line([(x, 0), (x, height)], fill=(255, 255, 255), width=1)
    for row, label in _frequency_ticks(style, band_edges(style, sample_rate / 2), speed):
        y = height - 1 - round(row)
        draw.line([(style.axis_px - 4, y), (style.axis_px - 1, y)], fill=(0, 0, 0))
        draw.text((1, max(0, min(height - 11, y - 5))), label, fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=1)
    return buffer.getvalue()


def cache_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "spectrograms"


def cache_folder(deployment_id: int) -> Path:
    return cache_root() / str(deployment_id)


def purge_cache(unused_for_s: float) -> tuple[int, int]:
    """Delete cached pictures not served for ``unused_for_s`` seconds (by access time, or
    by write time where the disk does not keep access times). Returns (files, bytes)."""
    cutoff = time.time() - unused_for_s
    files = size = 0
    for path in cache_root().glob("*/*.png"):
        stat = path.stat()
        if max(stat.st_atime, stat.st_mtime) < cutoff:
            path.unlink(missing_ok=True)
            files, size = files + 1, size + stat.st_size
    return files, size


@dataclasses.dataclass(frozen=True)
class Tile:
    start_s: float
    end_s: float  # the tile's end, or the recording's where that comes first


def covering_tile(recording: Recording, start_s: float, end_s: float) -> Tile:
    """The shortest tile of ``TILE_LENGTHS_S`` (seconds heard: a time-expanded recording's
    are shorter in the file) that holds ``[start_s, end_s)``."""
    speed = recording.speed_factor
    if not (end_s > start_s >= 0) or end_s - start_s > MAX_SPAN_S * speed:
        raise InputError(f"a spectrogram spans 0 < end - start <= {MAX_SPAN_S * speed:g} s from start >= 0")
    for length in (heard * speed for heard in TILE_LENGTHS_S):
        tile_start = length / 2 * math.floor(start_s / (length / 2))
        if tile_start + length >= end_s:
            break
    tile_end = tile_start + length
    if recording.duration_s and tile_start < recording.duration_s:
        tile_end = min(tile_end, recording.duration_s)
    return Tile(tile_start, tile_end)


def recording_spectrogram(recording: Recording, tile: Tile, style: SpectrogramStyle) -> Path:
    """The cached PNG of a tile of a recording (see ``covering_tile``)."""
    return _cached_picture(recording, tile.start_s, tile.end_s, style)


def overview_columns(recording: Recording, style: SpectrogramStyle) -> int:
    """Columns of a recording's overview: one per 1 / px_per_s seconds heard, at most OVERVIEW_COLUMNS."""
    heard_s = (recording.duration_s or 0.0) / recording.speed_factor
    return max(1, min(OVERVIEW_COLUMNS, math.ceil(heard_s * style.px_per_s)))


def recording_overview(recording: Recording, style: SpectrogramStyle) -> Path:
    """The cached PNG of a whole recording in ``overview_columns`` columns (see ``overview_db``)."""
    columns = overview_columns(recording, style)
    name = f"{recording.pk}-overview-{columns}-{_style_key(style, recording)}-v{RENDER_VERSION}.png"
    speed = recording.speed_factor

    def render() -> bytes:
        levels, rate = overview_db(Path(recording.path), recording.deployment.channel, style, columns, speed)
        return levels_png(levels, rate, style, speed=speed)

    return _cached(recording, name, render)


def _style_key(style: SpectrogramStyle, recording: Recording) -> str:
    speed = "" if recording.speed_factor == 1 else f"-x{recording.speed_factor:g}"
    return f"{style.scale}-{style.gain_db}dB-{style.height_px}x{style.px_per_s}-{style.max_frequency_hz:g}{speed}"


def _cached_picture(
    recording: Recording, start_s: float, end_s: float, style: SpectrogramStyle, marks_s: tuple[float, ...] = ()
) -> Path:
    """The cached PNG of ``[start_s, end_s)`` of a recording, rendered on first use."""
    marks = "_".join(f"{m:.3f}" for m in marks_s)
    name = f"{recording.pk}-{start_s:.3f}-{end_s:.3f}-{_style_key(style, recording)}-{marks}-v{RENDER_VERSION}.png"

    def render() -> bytes:
        samples, rate = read_segment(Path(recording.path), start_s, end_s, recording.deployment.channel)
        return render_png(samples.mean(axis=1), rate, style, marks_s, recording.speed_factor)

    return _cached(recording, name, render)


def _cached(recording: Recording, name: str, render) -> Path:
    """The cached picture ``name`` of a recording, from ``render()`` (PNG bytes) on first use.

    Written to a temporary file and renamed, so that a reader never sees half a picture
    and two requests rendering the same picture at once both succeed.
    """
    path = cache_folder(recording.deployment_id) / name
    if path.exists():
        return path
    try:
        png = render()
    except (AudioError, OSError, RuntimeError) as error:  # soundfile raises RuntimeError subclasses
        raise InputError(f"{recording.filename}: cannot read its audio ({error})") from error
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as partial:
        partial.write(png)
    os.replace(partial.name, path)
    return path


def window_spectrogram(window, style: SpectrogramStyle, context_s: float = 0.0) -> Path:
    """A window's picture, with ``context_s`` seconds heard either side (whole seconds: a few
    pictures per window, whatever is asked) marked off by lines."""
    context_s = float(round(min(max(context_s, 0.0), MAX_CONTEXT_S)))  # at most what playback plays
    context_s *= window.recording.speed_factor
    start = max(0.0, window.start_s - context_s)
    end = window.end_s + context_s
    if window.recording.duration_s:
        end = min(end, window.recording.duration_s)
    marks = (window.start_s - start, window.end_s - start) if context_s else ()
    return _cached_picture(window.recording, start, end, style, marks)
