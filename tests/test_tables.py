"""Raven selection tables, other tools' label tables, recorder file names, review queues."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotations.errors import InputError
from annotations.label_import import overlaps_enough
from annotations.raven import FileSpan, Selection, read_label_table, write_file_sequence_table, write_selection_table
from annotations.recording_time import start_time_from_filename
from annotations.review_queues import closest_to_threshold, fill_bins, pick_diverse, suggest_kind
from annotations.text_uploads import read_text_table
from annotations.weak_negatives import near_positives, scored_likely


def test_a_raven_table_written_and_read_back_gives_the_same_detections():
    detections = [
        Selection(0.0, 3.0, "Hermit Thrush", score=0.912345),
        Selection(3.0, 6.0, "Hermit Thrush", score=0.5),
        Selection(42.0, 45.0, "Owl, barred", score=0.999999),
    ]
    table = write_selection_table(detections, nyquist_hz=24_000)
    header = table.splitlines()[0].split("\t")
    assert header[:7] == [
        "Selection",
        "View",
        "Channel",
        "Begin Time (s)",
        "End Time (s)",
        "Low Freq (Hz)",
        "High Freq (Hz)",
    ]
    assert table.splitlines()[1].split("\t")[6] == "24000.0"
    # Read back with the band written for them: 0 Hz to the Nyquist frequency (the whole window).
    assert read_label_table(table) == [dataclasses.replace(d, band_hz=(0.0, 24_000.0)) for d in detections]


def test_a_table_over_a_file_sequence_reads_back_per_file_times():
    spans = [FileSpan("/data/a/20240521_050000.WAV", 0.0), FileSpan("/data/a/20240521_060000.WAV", 3600.0)]
    rows = [(Selection(12.0, 15.0, "owl", score=0.9), spans[0]), (Selection(30.0, 33.0, "owl", score=0.8), spans[1])]
    table = write_file_sequence_table(rows, nyquist_hz=16_000)
    second = dict(zip(table.splitlines()[0].split("\t"), table.splitlines()[2].split("\t"), strict=True))
    assert second["Begin Time (s)"] == "3630.000000" and second["File Offset (s)"] == "30.000000"
    assert second["Begin Path"] == spans[1].path and second["Begin File"] == "20240521_060000.WAV"
    assert read_label_table(table) == [
        Selection(12.0, 15.0, "owl", file="20240521_050000.WAV", score=0.9, band_hz=(0.0, 16_000.0)),
        Selection(30.0, 33.0, "owl", file="20240521_060000.WAV", score=0.8, band_hz=(0.0, 16_000.0)),
    ]


def test_raven_waveform_rows_are_not_counted_twice():
    table = (
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies\n"
        "1\tSpectrogram 1\t1\t1.5\t2.5\t500\t8000\twren\n"
        "1\tWaveform 1\t1\t1.5\t2.5\t500\t8000\twren\n"
    )
    assert read_label_table(table) == [Selection(1.5, 2.5, "wren", band_hz=(500.0, 8000.0))]


def test_audacity_and_csv_label_tables():
    assert read_label_table("1.0\t4.0\tcall\n5.5\t6.0\t\n", default_label="song") == [
        Selection(1.0, 4.0, "call"),
        Selection(5.5, 6.0, "song"),
    ]
    csv_text = "IN FILE,Start (s),End (s),MANUAL ID,value\nC:\\data\\a.wav,0,3,frog,negative\n"
    assert read_label_table(csv_text) == [Selection(0.0, 3.0, "frog", file="a.wav", value="negative")]
    with pytest.raises(ValueError, match="begin and end"):
        read_label_table("file,label\na.wav,frog\n")
    with pytest.raises(ValueError, match="no label column"):
        read_label_table("Begin Time (s),End Time (s)\n0,1\n")


def test_a_selection_labels_the_windows_it_mostly_covers():
    assert overlaps_enough(1.0, 2.0, 0.0, 3.0)  # a short call inside a window
    assert overlaps_enough(2.0, 5.0, 3.0, 6.0)  # two thirds of the window
    assert not overlaps_enough(2.5, 5.5, 0.0, 3.0)  # a sliver of the previous window
    assert not overlaps_enough(3.0, 6.0, 0.0, 3.0)  # touching is not overlapping


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("20240521_053000.WAV", dt.datetime(2024, 5, 21, 5, 30, tzinfo=dt.UTC)),
        ("SM4XYZ_20240521_053000.wav", dt.datetime(2024, 5, 21, 5, 30, tzinfo=dt.UTC)),
        (
            "20240521T053000+1000_site-a_3.flac",
            dt.datetime(2024, 5, 21, 5, 30, tzinfo=dt.timezone(dt.timedelta(hours=10))),
        ),
        ("site1_20260511_050001.wav", dt.datetime(2026, 5, 11, 5, 0, 1, tzinfo=dt.UTC)),
        ("5CE38CD8.WAV", dt.datetime(2019, 5, 21, 5, 30, tzinfo=dt.UTC)),  # old AudioMoth: hex Unix seconds
        ("card/5ce38cd8.wav", dt.datetime(2019, 5, 21, 5, 30, tzinfo=dt.UTC)),
        ("DEADBEEF.flac", None),
        ("00000042.WAV", None),  # a counter, not 1970
        ("20240521T053000+9999_a.flac", None),  # no such UTC offset
        ("notes.wav", None),
        ("20241399_999999.wav", None),
    ],
)
def test_start_times_from_recorder_file_names(name, expected):
    assert start_time_from_filename(name) == expected


def test_review_queues_pick_what_they_promise():
    above, below = [(1, 0.52), (2, 0.7)], [(3, 0.45), (4, 0.1)]
    assert closest_to_threshold(above, below, 0.5, 2) == [(1, 0.52), (3, 0.45)]
    sample = [
        (i, score) for i, score in enumerate([0.05, 0.95, 0.45, 0.55, 0.15, 0.85, 0.25, 0.75, 0.35, 0.65, 1.0, 0.07])
    ]
    bins = fill_bins(sample, 1)
    assert [len(chosen) for chosen in bins.values()] == [1] * 10  # one from every tenth; 1.0 in the last
    assert bins[0] == [(0, 0.05)] and bins[9] == [(1, 0.95)]  # the first of the sample's order, not the second
    embeddings = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
    assert list(pick_diverse(np.array([0.9, 0.8, 0.7]), embeddings, 2)) == [0, 2]  # 1 is a near-duplicate of 0


def test_the_suggested_queue_asks_for_what_the_labels_lack():
    assert suggest_kind(3, 20, 0.5).kind == "top"  # few positives: find more
    lacking = suggest_kind(60, 0, 0.5)
    assert lacking.kind == "bins" and lacking.reason.startswith("60 positives, 0 negatives: windows across the score")
    assert suggest_kind(60, 29, 0.5).kind == "bins"
    balanced = suggest_kind(60, 30, 0.42)
    assert balanced.kind == "margin" and "threshold 0.42" in balanced.reason


def test_weak_negatives_that_look_like_the_labels_calls_are_left_out():
    positives = np.array([[1, 0, 0], [0.9, 0.1, 0], [1, 0.05, 0.05]], np.float32)
    candidates = np.array([[1, 0.02, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0]], np.float32)
    assert list(near_positives(candidates, positives)) == [True, False, False, False]
    assert not near_positives(candidates, positives[:1]).any()  # one positive: no spread to measure
    # The latest version's scores: likely where they reach the weaker of its threshold and
    # the weakest tenth of the labeled positives' scores; unscored windows are not.
    scores = np.array([0.3, 0.6, np.nan, 0.1])
    assert list(scored_likely(scores, np.array([0.2, 0.25, 0.9, 0.95]), 0.5)) == [True, True, False, False]
    assert list(scored_likely(scores, np.array([0.9, 0.95]), 0.5)) == [False, True, False, False]


def test_uploaded_tables_are_read_as_utf8_within_their_limit():
    assert (
        read_text_table(SimpleUploadedFile("t.csv", "\ufeffname\nRidge\n".encode()), 100, "a table") == "name\nRidge\n"
    )
    with pytest.raises(InputError, match="a label table must be under 1 MB"):
        read_text_table(SimpleUploadedFile("t.csv", b"x" * (1024 * 1024 + 1)), 1024 * 1024, "a label table")
    with pytest.raises(InputError, match="not UTF-8"):
        read_text_table(SimpleUploadedFile("t.csv", b"\xff\xfe\x00n"), 100, "a table")
