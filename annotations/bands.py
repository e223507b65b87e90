"""Frequency bands of boxes drawn on a spectrogram: a search's region, or a label's extent."""

from __future__ import annotations

from annotations.errors import InputError

# A box narrower than this holds too few frequency bins of a 5 s window to say much.
MIN_BAND_HZ = 100.0


def checked_band(band_hz: tuple[float, float], sample_rate: int | None) -> tuple[float, float]:
    """(low, high) Hz of a box, if it is a band of audio at ``sample_rate`` (its top is
    capped at the Nyquist frequency)."""
    low_hz, high_hz = (float(edge) for edge in band_hz)
    nyquist = (sample_rate or 0) / 2
    if not 0 <= low_hz < high_hz:
        raise InputError(f"a band needs 0 <= low < high (Hz), not {low_hz:g} to {high_hz:g}")
    if high_hz - low_hz < MIN_BAND_HZ:
        raise InputError(f"a band is at least {MIN_BAND_HZ:g} Hz wide")
    if nyquist and low_hz >= nyquist:
        raise InputError(f"the recording holds nothing above {nyquist:g} Hz (its sample rate is {sample_rate} Hz)")
    return low_hz, min(high_hz, nyquist) if nyquist else high_hz
