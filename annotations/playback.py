"""Audio of a window, for listening in the browser."""

from __future__ import annotations

import io
from pathlib import Path

import soundfile

from annotations.audio import read_segment
from annotations.models import Window

MAX_CONTEXT_S = 10.0


def window_wav(window: Window, context_s: float = 0.0) -> bytes:
    """The window's audio (plus up to 10 s of context either side) as 16-bit WAV: the
    deployment's chosen channel, or all channels where it embeds their mix."""
    context_s = min(max(context_s, 0.0), MAX_CONTEXT_S)
    recording = window.recording
    samples, rate = read_segment(
        Path(recording.path), window.start_s - context_s, window.end_s + context_s, recording.deployment.channel
    )
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
