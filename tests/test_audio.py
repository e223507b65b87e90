"""Decoding, resampling and windowing: pure functions, no server."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from annotations.audio import AudioError, Framing, band_limited, iter_resampled_blocks, iter_windows, probe
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


def test_a_box_band_keeps_what_lies_inside_it_and_silences_what_lies_outside():
    rate = 32_000
    t = np.arange(2 * rate) / rate
    low, inside, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (300.0, 4_000.0, 14_000.0))
    (filtered,) = band_limited(
        iter([low[:rate] + inside[:rate], low[rate:] + inside[rate:] + high[rate:]]), rate, 2_000, 8_000
    )
    middle = slice(rate // 4, -rate // 4)  # away from the ends, where any filter rings

    def level_db(signal, reference):
        return 10 * np.log10(np.mean(signal[middle] ** 2) / np.mean(reference[middle] ** 2))

    alone = band_limited(iter([inside]), rate, 2_000, 8_000)
    assert abs(level_db(next(alone), inside)) < 0.5  # the tone in the band stays as it was
    residue = filtered - inside
    assert level_db(residue, low + high) < -40  # the tones an octave and more outside it go
    assert next(band_limited(iter([inside]), rate, 0, 20_000)) is not None  # the whole band: as it was
    with pytest.raises(AudioError, match="above the 16000 Hz"):
        next(band_limited(iter([inside]), rate, 17_000, 20_000))


def test_a_box_around_a_song_hears_the_song_not_the_loud_drone_below_it(tmp_path, birdsong):
    """Real birdsong (2-9 kHz) under an engine-like drone (harmonics of 90 Hz up to 1 kHz,
    louder than the song), embedded by the app's own model (BirdNET). Boxed to the song's
    band, the region embeds as the boxed clean song does, whatever droned below it; and as
    a query it stands three times further from the drone than from the song as the whole
    region did (0.35 against 0.12 measured: the stored windows are embedded whole, so the
    song itself comes only a little closer, 0.78 to 0.81)."""
    from workers.embedding_models import configured_model
    from workers.ingest import embed_file

    samples, rate = birdsong
    t = np.arange(len(samples)) / rate
    drone = sum(np.sin(2 * np.pi * 90 * k * t + k) / k for k in range(1, 12)).astype(np.float32)
    drone *= 3 * np.abs(samples).max() / np.abs(drone).max()
    paths = {name: tmp_path / f"{name}.wav" for name in ("song", "drone", "both")}
    for name, audio in (("song", samples), ("drone", drone), ("both", samples + drone)):
        soundfile.write(str(paths[name]), np.clip(audio, -1, 1), rate)
    model = configured_model()

    def unit(name, band=None):
        outputs = embed_file(paths[name], model, batch_size=8, span_s=(0.0, 9.0), box_hz=band).outputs
        mean = outputs.embeddings.mean(axis=0)
        return mean / np.linalg.norm(mean)

    band = (1_500.0, 12_000.0)
    assert unit("both", band) @ unit("song", band) > 0.98
    song, drone_only = unit("song"), unit("drone")
    whole, boxed = unit("both"), unit("both", band)
    whole_margin, boxed_margin = whole @ song - whole @ drone_only, boxed @ song - boxed @ drone_only
    assert boxed_margin > 2 * whole_margin > 0, (whole_margin, boxed_margin)
