"""A recording's whole-file overview: few frames read, short calls still visible."""

from __future__ import annotations

import numpy as np
import soundfile

from annotations.spectrograms import SpectrogramStyle, overview_db


def test_a_short_call_in_an_hour_shows_in_its_column_of_the_overview(tmp_path):
    rate = 16_000
    samples = np.zeros(600 * rate, dtype=np.float32)  # 10 minutes of silence
    at = 300 * rate  # a 0.3 s, 2 kHz call at 5 minutes
    samples[at : at + int(0.3 * rate)] = 0.5 * np.sin(2 * np.pi * 2000 * np.arange(int(0.3 * rate)) / rate)
    path = tmp_path / "quiet.wav"
    soundfile.write(path, samples, rate)
    levels, read_rate = overview_db(path, None, SpectrogramStyle(), columns=1200)  # 0.5 s a column
    assert read_rate == rate and levels.shape == (128, 1200)
    loudest = levels.max(axis=0)
    assert int(loudest.argmax()) in (599, 600)
    assert loudest.max() > -20 and np.delete(loudest, [599, 600]).max() < -150
