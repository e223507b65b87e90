"""Audio of a window, or of a stretch of a recording, for listening in the browser.

A time-expanded recording (bats: ``Recording.speed_factor``) is served as the model heard
it: its samples under a rate of the speed times the file's, so that a browser plays a
bat call ten times slower, in the range people hear. Stretches are still asked for in
the file's own seconds."""

from __future__ import annotations

import io
from pathlib import Path

import soundfile

from annotations.audio import read_segment
from annotations.errors import InputError
from annotations.models import Recording, Window

MAX_CONTEXT_S = 10.0
# The recording view plays a whole file as a chain of stretches, each asked for while the
# one before plays: a minute at 384 kHz (bats) is 44 MB of WAV, at 48 kHz 5.5 MB.
MAX_STRETCH_S = 60.0


def window_wav(window: Window, context_s: float = 0.0) -> bytes:
    """The window's audio (plus up to 10 s heard of context either side) as 16-bit WAV:
    the deployment's chosen channel, or all channels where it embeds their mix."""
    context_s = min(max(context_s, 0.0), MAX_CONTEXT_S) * window.recording.speed_factor
    return _wav(window.recording, window.start_s - context_s, window.end_s + context_s)


def recording_wav(recording: Recording, start_s: float, end_s: float) -> bytes:
    """``[start_s, end_s)`` of the recording (at most MAX_STRETCH_S, inside the file) as
    16-bit WAV at the rate it is heard at (the file's own, unless time-expanded), the
    channel that was embedded."""
    duration = recording.duration_s or 0.0
    if not 0.0 <= start_s < end_s:
        raise InputError(f"the stretch must start before it ends (start {start_s:g} s, end {end_s:g} s)")
    if end_s - start_s > MAX_STRETCH_S:
        raise InputError(f"a stretch of audio is at most {MAX_STRETCH_S:g} s long; ask for the rest in turn")
    if duration and start_s >= duration:
        raise InputError(f"{recording.filename} is {duration:g} s long: nothing starts at {start_s:g} s")
    return _wav(recording, start_s, min(end_s, duration) if duration else end_s)


def _wav(recording: Recording, start_s: float, end_s: float) -> bytes:
    samples, rate = read_segment(Path(recording.path), start_s, end_s, recording.deployment.channel)
    buffer = io.BytesIO()
    heard_rate = max(1, round(rate * recording.speed_factor))
    soundfile.write(buffer, samples, heard_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
