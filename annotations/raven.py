"""Raven Pro selection tables and label tables from other tools: pure text in, rows out.

A Raven selection table is tab-separated text, one selection a row, with the standard
columns ``Selection, View, Channel, Begin Time (s), End Time (s), Low Freq (Hz),
High Freq (Hz)`` and any extra ones, which Raven keeps as annotation columns (here
``Label``, ``Score`` and the ``extra_columns`` a writer is given). Raven writes a
``Waveform 1`` row beside each ``Spectrogram 1`` row for the same selection; reading
keeps one of them.

A table over many files (Raven opens a file sequence as one long recording) adds
``Begin Path``, ``File Offset (s)`` and ``Begin File``; its begin and end times count
from the start of the first file, and a selection's place in its own file is its
``File Offset (s)``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterable, Sequence

from annotations.formula_cells import neutral_cell

STANDARD_COLUMNS = [
    "Selection",
    "View",
    "Channel",
    "Begin Time (s)",
    "End Time (s)",
    "Low Freq (Hz)",
    "High Freq (Hz)",
]

# Column names other tools use for the same things (Raven, Audacity exports, Kaleidoscope, plain CSV).
ALIASES = {
    "start_s": ("begin time (s)", "start (s)", "start", "begin", "start_s", "offset", "start time"),
    "end_s": ("end time (s)", "end (s)", "end", "end_s", "end time"),
    "label": ("label", "annotation", "species", "manual id", "class", "common name", "sound type"),
    "file": ("begin file", "begin path", "in file", "filename", "file", "recording", "path"),
    "file_offset_s": ("file offset (s)",),
    "value": ("value", "verdict", "positive"),
    "score": ("score", "confidence"),
    "low_hz": ("low freq (hz)", "low freq", "low_hz", "min freq (hz)", "freq low"),
    "high_hz": ("high freq (hz)", "high freq", "high_hz", "max freq (hz)", "freq high"),
}


@dataclasses.dataclass(frozen=True)
class Selection:
    start_s: float
    end_s: float
    label: str
    file: str = ""  # recording file name, where the table names one
    value: str = "positive"
    score: float | None = None
    extra: tuple[str, ...] = ()  # values of a writer's extra_columns, in their order
    band_hz: tuple[float, float] | None = None  # a box's band; none: 0 Hz to the Nyquist frequency


def _band(selection: Selection, nyquist_hz: float) -> list[str]:
    low, high = selection.band_hz or (0.0, nyquist_hz)
    return [f"{low:.1f}", f"{min(high, nyquist_hz):.1f}"]


def _score(selection: Selection) -> str:
    return "" if selection.score is None else f"{selection.score:.6f}"


def write_selection_table(selections: Iterable[Selection], nyquist_hz: float, extra_columns: Sequence[str] = ()) -> str:
    """One recording's selections as a Raven selection table (each a box's band where it
    has one, else the whole band; high frequency capped at Nyquist); labels and extra
    values neutralised against spreadsheet formulas (``formula_cells``)."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow([*STANDARD_COLUMNS, "Label", "Score", *extra_columns])
    for number, selection in enumerate(selections, start=1):
        writer.writerow(
            [
                number,
                "Spectrogram 1",
                1,
                f"{selection.start_s:.6f}",
                f"{selection.end_s:.6f}",
                *_band(selection, nyquist_hz),
                neutral_cell(selection.label),
                _score(selection),
                *map(neutral_cell, selection.extra),
            ]
        )
    return out.getvalue()


@dataclasses.dataclass(frozen=True)
class FileSpan:
    """A file of a sequence: where it lies, and where it starts in the sequence's time."""

    path: str
    sequence_start_s: float


def write_file_sequence_table(
    selections: Iterable[tuple[Selection, FileSpan]], nyquist_hz: float, extra_columns: Sequence[str] = ()
) -> str:
    """Selections over many files as one Raven table that opens the files as a sequence;
    paths, labels and extra values neutralised like ``write_selection_table``'s."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(
        [*STANDARD_COLUMNS, "Begin Path", "File Offset (s)", "Begin File", "Label", "Score", *extra_columns]
    )
    for number, (selection, span) in enumerate(selections, start=1):
        writer.writerow(
            [
                number,
                "Spectrogram 1",
                1,
                f"{span.sequence_start_s + selection.start_s:.6f}",
                f"{span.sequence_start_s + selection.end_s:.6f}",
                *_band(selection, nyquist_hz),
                neutral_cell(span.path),
                f"{selection.start_s:.6f}",
                neutral_cell(span.path.replace("\\", "/").rsplit("/", 1)[-1]),
                neutral_cell(selection.label),
                _score(selection),
                *map(neutral_cell, selection.extra),
            ]
        )
    return out.getvalue()


def _column(header: list[str], field: str) -> int | None:
    lowered = [name.strip().lower() for name in header]
    for alias in ALIASES[field]:
        if alias in lowered:
            return lowered.index(alias)
    return None


def read_label_table(text: str, default_label: str = "") -> list[Selection]:
    """Read a Raven selection table, an Audacity label track (``start\\tend\\tlabel``, no
    header) or a CSV with common column names. Raises ValueError naming what is missing."""
    text = text.lstrip("\ufeff")
    first_line = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if "\t" in first_line else ","
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError("the table is empty")
    if _is_number(rows[0][0]) and len(rows[0]) >= 2:  # Audacity: no header
        return [
            Selection(float(r[0]), float(r[1]), (r[2].strip() if len(r) > 2 else "") or default_label) for r in rows
        ]
    header, body = rows[0], rows[1:]
    columns = {field: _column(header, field) for field in ALIASES}
    if columns["start_s"] is None or columns["end_s"] is None:
        raise ValueError("the table needs begin and end time columns (e.g. 'Begin Time (s)', 'End Time (s)')")
    if columns["label"] is None and not default_label:
        raise ValueError("the table has no label column: name the label to import the selections as")
    view = header.index("View") if "View" in header else None
    selections, seen = [], set()
    for row in body:
        if view is not None and row[view].startswith("Waveform"):
            continue  # Raven's duplicate of a Spectrogram row

        def cell(field: str, row=row) -> str:
            index = columns[field]
            return row[index].strip() if index is not None and index < len(row) else ""

        start_s, end_s = float(cell("start_s")), float(cell("end_s"))
        if cell("file_offset_s"):  # a file sequence: times count from the first file
            start_s, end_s = float(cell("file_offset_s")), float(cell("file_offset_s")) + end_s - start_s
        selection = Selection(
            start_s=start_s,
            end_s=end_s,
            label=cell("label") or default_label,
            file=cell("file").replace("\\", "/").rsplit("/", 1)[-1],
            value=(cell("value") or "positive").lower(),
            score=float(cell("score")) if cell("score") else None,
            band_hz=(float(cell("low_hz")), float(cell("high_hz"))) if cell("low_hz") and cell("high_hz") else None,
        )
        key = (selection.file, selection.start_s, selection.end_s, selection.label)
        if key not in seen:
            seen.add(key)
            selections.append(selection)
    return selections


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
