"""Audio of a window, for listening in the browser."""

from __future__ import annotations

import io
from pathlib import Path

import soundfile

from annotations.models import Window
from workers.audio import read_segment

MAX_CONTEXT_S = 10.0


def window_wav(window: Window, context_s: float = 0.0) -> bytes:
    """The window's audio (plus up to 10 s of context either side) as 16-bit WAV."""
    context_s = min(max(context_s, 0.0), MAX_CONTEXT_S)
    samples, rate = read_segment(Path(window.recording.path), window.start_s - context_s, window.end_s + context_s)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
