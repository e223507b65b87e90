"""Decoding, resampling and windowing audio, in chunks so memory stays flat.

Pure functions over files and arrays: no Django, no model. A window ``k`` starts at
``k * hop`` samples; windows are emitted until the audio is covered, the last one
zero-padded, so no sound at the end of a file goes unheard.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile
import soxr

from annotations.errors import AudioUnavailable

# Read this much audio per block: long enough for the resampler, short enough that a
# multi-hour file never sits in memory.
BLOCK_SECONDS = 60.0
# A WAV's header chunks (format, comments) are read from its first bytes, never its audio.
WAV_HEAD_BYTES = 64 * 1024


class AudioError(Exception):
    """A file that cannot be used, with a reason a person can act on."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int
    format: str
    # Set when the file holds less than its header promises (a recorder that lost power).
    warning: str = ""

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


@dataclasses.dataclass(frozen=True)
class Framing:
    """How a model cuts audio: window and hop lengths in samples at ``sample_rate``."""

    sample_rate: int
    window_samples: int
    hop_samples: int

    @classmethod
    def from_seconds(cls, sample_rate: int, window_s: float, hop_s: float) -> Framing:
        return cls(sample_rate, round(window_s * sample_rate), round(hop_s * sample_rate))

    def window_count(self, total_samples: int) -> int:
        """Windows needed to cover ``total_samples``: ``k * hop`` for k = 0..n-1.

        Window k is emitted while it starts inside the audio and the window before it
        did not already reach the end.
        """
        if total_samples <= 0:
            return 0
        if total_samples <= self.window_samples:
            return 1
        return 1 + -(-(total_samples - self.window_samples) // self.hop_samples)


# Leading bytes of the formats we decode. An upload is checked against these, not its name.
_MAGIC = (
    (b"RIFF", "WAV"),
    (b"RF64", "WAV"),
    (b"fLaC", "FLAC"),
    (b"OggS", "OGG"),
    (b"ID3", "MP3"),
)


def sniff_format(head: bytes) -> str | None:
    """The audio format that a file's first bytes announce, or None."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "MP3"  # an MPEG audio frame sync without an ID3 tag
    return None


def probe(path: Path) -> AudioInfo:
    """Read a file's header and check it holds usable audio, without decoding it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError("file not found")
    if path.stat().st_size == 0:
        raise AudioError("the file is empty (0 bytes)")
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"not a readable audio file ({_short(error)})") from None
    if info.samplerate <= 0:
        raise AudioError(f"invalid sample rate in header: {info.samplerate} Hz")
    if info.channels <= 0:
        raise AudioError("the header declares no audio channels")
    if info.frames <= 0:
        raise AudioError("the file holds no audio samples")
    warning = _wav_truncation_warning(path, info) if info.format == "WAV" else ""
    return AudioInfo(info.samplerate, info.channels, info.frames, info.format, warning)


def _short(error: Exception) -> str:
    return str(error).split(":", 1)[-1].strip() or type(error).__name__


def _wav_truncation_warning(path: Path, info: soundfile._SoundFileInfo) -> str:
    """Compare the RIFF data chunk's declared size with the bytes present."""
    with open(path, "rb") as f:
        header = f.read(WAV_HEAD_BYTES)
    position = header.find(b"data")
    if position < 0 or position + 8 > len(header):
        return ""
    declared = struct.unpack("<I", header[position + 4 : position + 8])[0]
    present = path.stat().st_size - (position + 8)
    if declared in (0, 0xFFFFFFFF) or declared <= present:
        return ""  # 0 / 0xFFFFFFFF: streaming writers that never filled in the size
    bytes_per_second = present / info.frames * info.samplerate
    return (
        f"file is truncated: the header promises {declared / bytes_per_second:.1f} s but only "
        f"{info.frames / info.samplerate:.1f} s of audio are present; the present audio was used"
    )


def iter_resampled_blocks(
    path: Path,
    target_rate: int,
    channel: int | None = None,
    start_s: float = 0.0,
    end_s: float | None = None,
    speed: float = 1.0,
) -> Iterator[np.ndarray]:
    """Yield mono float32 blocks at ``target_rate`` of ``[start_s, end_s)`` of the file (all
    of it by default; in the file's own seconds); ``channel=None`` mixes all channels.
    ``speed``: the file is played at this speed (time expansion: 0.1 makes a 40 kHz bat
    call 4 kHz and each second ten), by reading its samples as if its rate were ``speed``
    times what it is."""
    with soundfile.SoundFile(str(path)) as f:
        _check_channel(channel, f.channels)
        source_rate = f.samplerate
        played_rate = source_rate * speed
        resampler = soxr.ResampleStream(played_rate, target_rate, 1, dtype="float32", quality="HQ")
        block_frames = max(1, int(BLOCK_SECONDS * source_rate))
        first = min(f.frames, max(0, round(start_s * source_rate)))
        left = f.frames - first if end_s is None else max(0, min(f.frames, round(end_s * source_rate)) - first)
        if first:
            f.seek(first)
        while True:
            try:
                block = f.read(min(block_frames, left), dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"decoding failed at {f.tell() / source_rate:.1f} s ({_short(error)})") from None
            left -= len(block)
            last = left <= 0 or len(block) < block_frames
            mono = block.mean(axis=1) if channel is None else block[:, channel]
            if not np.all(np.isfinite(mono)):
                # NaN/inf would poison every embedding of the window: silence them.
                mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
            out = mono if played_rate == target_rate else resampler.resample_chunk(mono, last=last)
            if len(out):
                yield out.astype(np.float32, copy=False)
            if last:
                return


# Butterworth sections of a band filter: steep enough that a hum an octave outside the
# band is 40 dB down.
BAND_FILTER_ORDER = 8


@dataclasses.dataclass(frozen=True)
class AudioFeed:
    """How a recording's audio reaches the model: which channel (None: the mix of all), at
    what speed (time expansion, see ``iter_resampled_blocks``), and which band of it in the
    file's own Hz (None: all of it)."""

    channel: int | None = None
    speed: float = 1.0
    band_hz: tuple[float, float] | None = None


# Every channel mixed, at its own speed, all of its band.
AS_RECORDED = AudioFeed()


def fed_blocks(
    path: Path, target_rate: int, feed: AudioFeed, start_s: float = 0.0, end_s: float | None = None
) -> Iterator[np.ndarray]:
    """``iter_resampled_blocks`` of the file as ``feed`` says: played at its speed, and
    filtered to its band (moved by the speed, as the played audio is) as it streams."""
    blocks = iter_resampled_blocks(path, target_rate, feed.channel, start_s, end_s, feed.speed)
    if feed.band_hz is None:
        return blocks
    low, high = (edge * feed.speed for edge in feed.band_hz)
    return _band_filtered_stream(blocks, band_sections(target_rate, low, high))


def band_sections(rate: float, low_hz: float, high_hz: float) -> np.ndarray | None:
    """The Butterworth sections that keep ``[low_hz, high_hz]`` of audio at ``rate``
    (None: the band holds all of it). Raises AudioError when the band lies wholly above
    what ``rate`` holds."""
    nyquist = rate / 2
    if low_hz >= nyquist:
        raise AudioError(f"the band starts at {low_hz:g} Hz, above the {nyquist:g} Hz that the model hears")
    edges = [edge / nyquist for edge in (low_hz, high_hz)]
    if edges[0] <= 0 and edges[1] >= 1:
        return None
    if edges[0] <= 0:
        return scipy.signal.butter(BAND_FILTER_ORDER, edges[1], "lowpass", output="sos")
    if edges[1] >= 1:
        return scipy.signal.butter(BAND_FILTER_ORDER, edges[0], "highpass", output="sos")
    return scipy.signal.butter(BAND_FILTER_ORDER, edges, "bandpass", output="sos")


def _band_filtered_stream(blocks: Iterator[np.ndarray], sections: np.ndarray | None) -> Iterator[np.ndarray]:
    """``blocks`` through the filter ``sections`` in one pass, its state carried from block
    to block: a long file streams in flat memory (the filter's delay, a few milliseconds
    in the band, is far below a window)."""
    if sections is None:
        yield from blocks
        return
    state = np.zeros((len(sections), 2))
    for block in blocks:
        filtered, state = scipy.signal.sosfilt(sections, block, zi=state)
        yield filtered.astype(np.float32)


def band_limited(blocks: Iterator[np.ndarray], rate: int, low_hz: float, high_hz: float) -> Iterator[np.ndarray]:
    """The audio of ``blocks`` (mono float32 at ``rate``; a short region, read whole) with
    what lies outside ``[low_hz, high_hz]`` filtered out forwards and backwards, so that
    nothing moves in time, as one block. Raises AudioError when the band lies wholly above
    what ``rate`` holds."""
    samples = np.concatenate([*blocks, np.zeros(0, np.float32)])
    sections = band_sections(rate, low_hz, high_hz)
    if sections is None:
        yield samples
        return
    if len(samples) <= 6 * len(sections) + 3:  # sosfiltfilt's padding
        raise AudioError("the box is too short to filter to its band")
    yield scipy.signal.sosfiltfilt(sections, samples).astype(np.float32)


def iter_windows(blocks: Iterator[np.ndarray], framing: Framing) -> Iterator[tuple[int, np.ndarray]]:
    """Cut a stream of sample blocks into windows.

    Yields ``(start_sample, window)`` with ``window`` float32 of shape
    [framing.window_samples]; the final window is zero-padded.
    """
    buffer = np.zeros(0, dtype=np.float32)
    buffer_start = 0  # sample index of buffer[0]
    next_start = 0
    total = 0
    for block in blocks:
        buffer = np.concatenate([buffer, block])
        total += len(block)
        while next_start + framing.window_samples <= total:
            offset = next_start - buffer_start
            yield next_start, buffer[offset : offset + framing.window_samples].copy()
            next_start += framing.hop_samples
        drop = next_start - buffer_start
        if drop > 0:
            buffer = buffer[drop:]
            buffer_start = next_start
    emitted = next_start // framing.hop_samples
    while emitted < framing.window_count(total):
        offset = next_start - buffer_start
        window = np.zeros(framing.window_samples, dtype=np.float32)
        tail = buffer[offset:]
        window[: len(tail)] = tail
        yield next_start, window
        next_start += framing.hop_samples
        emitted += 1


def _check_channel(channel: int | None, channels: int) -> None:
    if channel is not None and not 0 <= channel < channels:
        raise AudioError(
            f"the deployment uses channel {channel} (counted from 0), but the file has only {channels} channel(s)"
        )


def read_segment(path: Path, start_s: float, end_s: float, channel: int | None = None) -> tuple[np.ndarray, int]:
    """Read ``[start_s, end_s)`` of a file at its own rate, for playback: all its channels,
    or only ``channel`` (the one that was embedded).

    Returns (samples [frames, channels or 1] float32, sample_rate). Raises
    AudioUnavailable when the file is not there.
    """
    if not Path(path).is_file():
        raise AudioUnavailable(
            f"the audio of {Path(path).name} is not on the server (moved, unmounted, or imported without it)"
        )
    with soundfile.SoundFile(str(path)) as f:
        _check_channel(channel, f.channels)
        start = max(0, int(round(start_s * f.samplerate)))
        stop = min(f.frames, int(round(end_s * f.samplerate)))
        f.seek(min(start, f.frames))
        samples = f.read(max(0, stop - start), dtype="float32", always_2d=True)
        return (samples if channel is None else samples[:, channel : channel + 1]), f.samplerate


# A WAV's chunks before its audio: RIFF/RF64 header, then (id, little-endian size, data, pad to even).
_RIFF_HEADER = struct.Struct("<4sI4s")
_CHUNK_HEADER = struct.Struct("<4sI")


def wav_info_comment(head: bytes) -> str:
    """The ICMT comment of a WAV's LIST/INFO chunk, from the file's first bytes, or "".

    Walks the chunks up to the audio data (AudioMoth writes its comment before it) and
    stops at the end of ``head``, so a comment is found without reading any audio.
    """
    if len(head) < _RIFF_HEADER.size:
        return ""
    riff, _, wave = _RIFF_HEADER.unpack_from(head)
    if riff not in (b"RIFF", b"RF64") or wave != b"WAVE":
        return ""
    position = _RIFF_HEADER.size
    while position + _CHUNK_HEADER.size <= len(head):
        chunk_id, size = _CHUNK_HEADER.unpack_from(head, position)
        body = head[position + _CHUNK_HEADER.size : position + _CHUNK_HEADER.size + size]
        if chunk_id == b"data":
            break
        if chunk_id == b"LIST" and body[:4] == b"INFO" and (comment := _info_comment(body[4:])):
            return comment
        position += _CHUNK_HEADER.size + size + size % 2
    return ""


def _info_comment(info: bytes) -> str:
    position = 0
    while position + _CHUNK_HEADER.size <= len(info):
        chunk_id, size = _CHUNK_HEADER.unpack_from(info, position)
        if chunk_id == b"ICMT":
            text = info[position + _CHUNK_HEADER.size : position + _CHUNK_HEADER.size + size]
            return text.split(b"\0", 1)[0].decode("latin-1").strip()
        position += _CHUNK_HEADER.size + size + size % 2
    return ""


def read_wav_comment(path: Path) -> str:
    """The ICMT comment of a WAV file (see ``wav_info_comment``); "" for other files."""
    with open(path, "rb") as f:
        return wav_info_comment(f.read(WAV_HEAD_BYTES))
