"""Decoding, resampling and windowing: pure functions, no server."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from annotations.audio import AudioError, Framing, iter_resampled_blocks, iter_windows, probe
from tests.audio_corpus import make_bad_files


@pytest.mark.parametrize(
    ("total", "expected"),
    [(0, 0), (1, 1), (144_000, 1), (144_001, 2), (288_000, 2), (486_400, 4)],
)
def test_window_count_covers_the_audio(total, expected):
    framing = Framing(48_000, 144_000, 144_000)
    assert framing.window_count(total) == expected


def test_overlapping_windows_stop_once_the_end_is_covered():
    framing = Framing(10, 30, 10)  # 3 s windows, 1 s hop
    assert framing.window_count(50) == 3  # starts 0, 1, 2 s; the window at 2 s reaches 5 s


def test_windows_are_exact_and_the_last_is_zero_padded():
    framing = Framing(10, 4, 4)
    blocks = iter([np.arange(1, 6, dtype=np.float32), np.arange(6, 11, dtype=np.float32)])
    windows = list(iter_windows(blocks, framing))
    assert [start for start, _ in windows] == [0, 4, 8]
    np.testing.assert_array_equal(windows[1][1], [5, 6, 7, 8])
    np.testing.assert_array_equal(windows[2][1], [9, 10, 0, 0])


def test_windows_with_hop_shorter_than_window():
    framing = Framing(10, 4, 2)
    blocks = iter([np.arange(7, dtype=np.float32)])
    windows = list(iter_windows(blocks, framing))
    assert [start for start, _ in windows] == [0, 2, 4]
    np.testing.assert_array_equal(windows[2][1], [4, 5, 6, 0])


@pytest.mark.parametrize(("file_rate", "extension"), [(44_100, "wav"), (48_000, "flac"), (32_000, "wav")])
def test_resampled_length_and_window_timestamps_are_exact(tmp_path, file_rate, extension):
    seconds = 7.0
    t = np.arange(int(seconds * file_rate)) / file_rate
    path = tmp_path / f"tone.{extension}"
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), file_rate)
    blocks = list(iter_resampled_blocks(path, 48_000))
    assert abs(sum(len(b) for b in blocks) - seconds * 48_000) <= 1
    framing = Framing.from_seconds(48_000, 3.0, 3.0)
    starts = [start / 48_000 for start, _ in iter_windows(iter(blocks), framing)]
    assert starts == [0.0, 3.0, 6.0]


def test_multichannel_is_mixed_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    left = np.full(16_000, 0.5, dtype=np.float32)
    soundfile.write(str(path), np.stack([left, -left], axis=1), 16_000)
    (block,) = iter_resampled_blocks(path, 16_000)
    assert np.allclose(block, 0.0)
    (left_only,) = iter_resampled_blocks(path, 16_000, channel=0)
    assert np.allclose(left_only, 0.5, atol=1e-4)


def test_bad_files_get_clear_reasons(tmp_path, birdsong):
    samples, rate = birdsong
    good = tmp_path / "good.wav"
    soundfile.write(str(good), samples, rate, subtype="PCM_16")
    bad = make_bad_files(tmp_path / "bad", good)
    with pytest.raises(AudioError, match="not a readable audio file"):
        probe(bad["text"])
    with pytest.raises(AudioError):
        probe(bad["header_cut"])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        probe(empty)
    info = probe(bad["data_cut"])
    assert "truncated" in info.warning
    assert info.duration_s == pytest.approx(len(samples) / rate / 2, abs=0.01)
    assert probe(good).warning == ""


def test_prefetching_keeps_order_and_passes_errors_on():
    from workers.ingest import prefetched

    assert list(prefetched(iter(range(100)))) == list(range(100))

    def failing():
        yield 1
        raise AudioError("decoding failed at 3.0 s")

    produced = prefetched(failing())
    assert next(produced) == 1
    with pytest.raises(AudioError, match="decoding failed"):
        next(produced)
    abandoned = prefetched(iter(range(1000)), depth=2)
    assert next(abandoned) == 0
    abandoned.close()  # the producer thread stops instead of blocking forever
