"""Importing labels made in other tools (Raven, Audacity, CSV) onto a deployment's windows.

An import is planned before anything is written: its selections are matched to windows
and compared with the importer's own labels (new, same, changed) and with other
annotators' (disagreeing, never touched). An import that would change none of the
importer's labels is written at once; one that would change some waits until the
importer chooses to keep them or to overwrite them. Writing is one bulk statement,
every change in the audit trail with the import it came from. A selection's Low and High
Freq, in the recording's own Hz, become its labels' box (``imported_band``). Tables larger than
``INLINE_MAX_BYTES`` are planned and written by a worker.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from annotations.bands import checked_band
from annotations.errors import InputError
from annotations.models import Deployment, ImportMode, ImportStatus, LabelImport, LabelValue, Window
from annotations.queueing import IMPORT_LABELS, enqueue_on_commit
from annotations.raven import Selection, read_label_table

MAX_BYTES = 50 * 1024 * 1024  # an uploaded label table
# Larger tables (about 6,000 Raven rows), and decisions on plans of more windows, go to
# a worker, so that no request grows with them.
INLINE_MAX_BYTES = 256 * 1024
INLINE_MAX_WINDOWS = 10_000
# Raven names a per-recording table "<recording>.Table.1.selections.txt".
RAVEN_TABLE_NAME = re.compile(r"^(?P<recording>.+?)\.Table\.\d+\.selections\.txt$", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class MatchedSelections:
    """window_ids, label_ids: int64 [N]; values: [N] str; bands: [N] (low, high) Hz or None.
    One entry per (window, label)."""

    window_ids: np.ndarray
    label_ids: np.ndarray
    values: list[str]
    bands: list[tuple[float, float] | None]
    unmatched_files: list[str]
    unmatched_selections: int


def overlaps_enough(start_s: float, end_s: float, window_start: float, window_end: float) -> bool:
    """A selection labels a window when they share at least half of the shorter of the two."""
    shared = min(end_s, window_end) - max(start_s, window_start)
    return shared > 0 and shared >= 0.5 * min(end_s - start_s, window_end - window_start)


def imported_band(band_hz: tuple[float, float] | None, sample_rate: int | None) -> tuple[float, float] | None:
    """The box a selection's Low and High Freq give its labels on a recording at
    ``sample_rate``: None where the table gives no band, where it spans the recording's
    whole band (0 Hz to its Nyquist frequency: how Raven, and this app's exports, write a
    selection of the whole window), or where it is no band of that audio (then the label
    is kept, on the whole window)."""
    if band_hz is None:
        return None
    nyquist = (sample_rate or 0) / 2
    if band_hz[0] <= 0 and nyquist and band_hz[1] >= nyquist - 1:
        return None
    try:
        return checked_band(band_hz, sample_rate)
    except InputError:
        return None


def covered_windows(ids: np.ndarray, starts: np.ndarray, ends: np.ndarray, start_s: float, end_s: float) -> list[int]:
    """The ids of the windows that [start_s, end_s) covers enough (``overlaps_enough``).

    ids: int64 [N]; starts, ends: float64 [N], one recording's windows in start order.
    """
    # Windows come in start order with one length, so their ends are sorted too.
    first = np.searchsorted(ends, start_s, side="right")
    last = np.searchsorted(starts, end_s, side="left")
    return [int(ids[i]) for i in range(first, last) if overlaps_enough(start_s, end_s, starts[i], ends[i])]


def recording_named_by_upload(upload_name: str) -> str:
    """The recording a Raven table's own file name names ("dawn.Table.1.selections.txt": dawn)."""
    found = RAVEN_TABLE_NAME.match(upload_name.replace("\\", "/").rsplit("/", 1)[-1])
    return found["recording"] if found else ""


def read_selections(deployment: Deployment, text: str, label: str) -> list[Selection]:
    """The table's selections, checked against the project's vocabulary (InputError if not)."""
    try:
        selections = read_label_table(text, label)
    except (ValueError, IndexError) as error:
        raise InputError(f"could not read the table: {error}") from None
    if label:
        selections = [dataclasses.replace(selection, label=label) for selection in selections]
    known = set(deployment.project.labels.values_list("name", flat=True))
    if unknown := sorted({s.label for s in selections} - known):
        raise InputError(f"labels not in this project's vocabulary: {', '.join(unknown)}; add them first")
    if bad_values := sorted({s.value for s in selections} - set(LabelValue.values)):
        raise InputError(f"values must be positive, negative or unsure, not {', '.join(bad_values)}")
    return selections


def match_selections(deployment: Deployment, selections: list[Selection], recording_name: str) -> MatchedSelections:
    """The windows each selection covers enough; a later selection of the same window and
    label wins. ``recording_name`` names the recording for selections that name none,
    by file name with or without its extension."""
    recordings, rates = {}, {}
    for recording_id, filename, rate in deployment.recordings.values_list("pk", "filename", "sample_rate"):
        rates[recording_id] = rate
        name = filename.rsplit("/", 1)[-1]
        recordings[name] = recording_id
        recordings.setdefault(name.rsplit(".", 1)[0], recording_id)
    labels = dict(deployment.project.labels.values_list("name", "pk"))
    by_recording: dict[int, list[Selection]] = {}
    unmatched_files = set()
    for selection in selections:
        name = selection.file or recording_name
        if (recording_id := recordings.get(name)) is None:
            unmatched_files.add(name or "(no file named)")
        else:
            by_recording.setdefault(recording_id, []).append(selection)
    targets: dict[tuple[int, int], tuple[str, tuple[float, float] | None]] = {}
    unmatched = 0
    for recording_id, chosen in by_recording.items():
        rows = np.array(
            Window.objects.filter(recording_id=recording_id).order_by("start_s").values_list("pk", "start_s", "end_s"),
            dtype=np.float64,
        ).reshape(-1, 3)
        ids, starts, ends = rows[:, 0].astype(np.int64), rows[:, 1], rows[:, 2]
        for selection in chosen:
            hits = covered_windows(ids, starts, ends, selection.start_s, selection.end_s)
            unmatched += not hits
            band = imported_band(selection.band_hz, rates[recording_id])
            for window_id in hits:
                targets[(window_id, labels[selection.label])] = (selection.value, band)
    keys = np.array(list(targets), dtype=np.int64).reshape(-1, 2)
    values = [value for value, _ in targets.values()]
    bands = [band for _, band in targets.values()]
    return MatchedSelections(keys[:, 0], keys[:, 1], values, bands, sorted(unmatched_files), unmatched)


def _compare_with_existing(label_import: LabelImport) -> None:
    """Count new, same and changed against the importer's labels, and others' disagreements."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH incoming(window_id, label_id, value) AS (
                SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[])
            )
            SELECT
                count(*) FILTER (WHERE a.annotator_id = %s AND a.value = i.value),
                count(*) FILTER (WHERE a.annotator_id = %s AND a.value <> i.value),
                count(*) FILTER (WHERE a.annotator_id <> %s AND a.value <> i.value),
                array_remove(
                    array_agg(DISTINCT u.username) FILTER (WHERE a.annotator_id <> %s AND a.value <> i.value), NULL
                )
            FROM incoming i
            JOIN annotations_annotation a ON a.window_id = i.window_id AND a.label_id = i.label_id
            JOIN {get_user_model()._meta.db_table} u ON u.id = a.annotator_id
            """,
            [label_import.window_ids, label_import.label_ids, label_import.values, *[label_import.user_id] * 4],
        )
        same, changed, disagreeing, annotators = cursor.fetchone()
    label_import.same, label_import.changed, label_import.disagreeing = same, changed, disagreeing
    label_import.new = len(label_import.window_ids) - same - changed
    label_import.disagreeing_annotators = sorted(annotators or [])


def _write(label_import: LabelImport, mode: str) -> None:
    """Write the plan as the importer's labels in one statement; with ``keep`` the labels
    the importer already gave stay. Every change goes to the audit trail."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH incoming(window_id, label_id, value, low_hz, high_hz) AS (
                SELECT * FROM unnest(
                    %(windows)s::bigint[], %(labels)s::bigint[], %(values)s::text[],
                    %(low_hz)s::float8[], %(high_hz)s::float8[]
                )
            ),
            before AS (
                SELECT a.window_id, a.label_id, a.value, a.low_hz, a.high_hz FROM annotations_annotation a
                JOIN incoming i ON a.window_id = i.window_id AND a.label_id = i.label_id
                WHERE a.annotator_id = %(user)s
            ),
            written AS (
                INSERT INTO annotations_annotation
                    (window_id, label_id, annotator_id, value, low_hz, high_hz, created_at, updated_at)
                SELECT window_id, label_id, %(user)s, value, low_hz, high_hz, statement_timestamp(),
                    statement_timestamp()
                FROM incoming
                ON CONFLICT (window_id, label_id, annotator_id) DO {
                "NOTHING"
                if mode == ImportMode.KEEP
                else "UPDATE SET value = EXCLUDED.value, low_hz = EXCLUDED.low_hz, high_hz = EXCLUDED.high_hz, "
                "updated_at = statement_timestamp() WHERE annotations_annotation.value <> EXCLUDED.value "
                "OR (annotations_annotation.low_hz, annotations_annotation.high_hz) "
                "IS DISTINCT FROM (EXCLUDED.low_hz, EXCLUDED.high_hz)"
            }
                RETURNING window_id, label_id, value, low_hz, high_hz
            )
            INSERT INTO annotations_labelchange
                (window_id, label_id, annotator_id, old_value, old_low_hz, old_high_hz, new_value, new_low_hz,
                new_high_hz, changed_at, label_import_id)
            SELECT w.window_id, w.label_id, %(user)s, coalesce(b.value, ''), b.low_hz, b.high_hz, w.value, w.low_hz,
                w.high_hz, statement_timestamp(), %(import)s
            FROM written w LEFT JOIN before b ON b.window_id = w.window_id AND b.label_id = w.label_id
            """,
            {
                "windows": label_import.window_ids,
                "labels": label_import.label_ids,
                "values": label_import.values,
                "low_hz": label_import.low_hz,
                "high_hz": label_import.high_hz,
                "user": label_import.user_id,
                "import": label_import.pk,
            },
        )
        label_import.written = cursor.rowcount
    label_import.mode, label_import.status = mode, ImportStatus.DONE
    label_import.window_ids, label_import.label_ids, label_import.values = [], [], []
    label_import.low_hz, label_import.high_hz = [], []


def _plan(label_import: LabelImport, selections: list[Selection]) -> None:
    matched = match_selections(label_import.deployment, selections, label_import.recording_name)
    label_import.selections = len(selections)
    label_import.unmatched_files, label_import.unmatched_selections = (
        matched.unmatched_files,
        matched.unmatched_selections,
    )
    label_import.window_ids, label_import.label_ids = matched.window_ids.tolist(), matched.label_ids.tolist()
    label_import.values = matched.values
    label_import.low_hz = [band[0] if band else None for band in matched.bands]
    label_import.high_hz = [band[1] if band else None for band in matched.bands]
    label_import.text = ""
    _compare_with_existing(label_import)


def _plan_and_write(label_import: LabelImport, selections: list[Selection]) -> None:
    """Plan, and write unless the import would change the importer's labels undecided."""
    with transaction.atomic():
        _plan(label_import, selections)
        label_import.save()  # the audit trail refers to it
        if label_import.mode or not label_import.changed:
            _write(label_import, label_import.mode or ImportMode.KEEP)
        else:
            label_import.status = ImportStatus.PLANNED
        label_import.save()


def start_import(
    deployment: Deployment, user, text: str, label: str = "", recording_name: str = "", upload_name: str = "", mode=""
) -> LabelImport:
    """Import a label table as ``user``: planned (and written, see the module) in this
    request when small, else queued for a worker. ``label``, when given, is the label of
    every selection; ``recording_name`` (or a Raven table's own ``upload_name``) names the
    recording for tables that do not name one; ``mode`` (keep or overwrite) decides ahead."""
    if mode and mode not in ImportMode.values:
        raise InputError(f"mode must be keep or overwrite, not {mode!r}")
    label_import = LabelImport(
        project=deployment.project,
        deployment=deployment,
        user=user,
        file_name=upload_name[:300],
        mode=mode,
        label_override=label,
        recording_name=(recording_name or recording_named_by_upload(upload_name))[:300],
    )
    if len(text) <= INLINE_MAX_BYTES:
        selections = read_selections(deployment, text, label)  # a bad table is a 400 here
        _plan_and_write(label_import, selections)
        return label_import
    with transaction.atomic():
        label_import.text = text
        label_import.save()
        enqueue_on_commit(IMPORT_LABELS, label_import.pk, on_failure=lambda reason: fail(label_import.pk, reason))
    return label_import


def queued_import(deployment: Deployment, user, text: str, upload_name: str) -> LabelImport:
    """An import saved for a worker to plan and write, keeping the user's labels; the caller
    sends ``IMPORT_LABELS`` when its windows will exist (the demo: after its ingest)."""
    read_selections(deployment, text, "")  # a bad table fails here, not in the worker
    return LabelImport.objects.create(
        project=deployment.project,
        deployment=deployment,
        user=user,
        file_name=upload_name[:300],
        mode=ImportMode.KEEP,
        text=text,
    )


def fail(import_id: int, reason: str) -> None:
    """Record why an import stopped; nothing of it was written."""
    LabelImport.objects.filter(pk=import_id).update(status=ImportStatus.FAILED, error=reason, text="")


def run_queued_import(import_id: int) -> None:
    """A worker's part: plan (and write) a table too large for a request, or write a
    large plan the importer decided on."""
    label_import = LabelImport.objects.select_related("deployment__project").get(pk=import_id)
    if label_import.status != ImportStatus.QUEUED:
        return
    if not label_import.text:
        with transaction.atomic():
            _write(label_import, label_import.mode)
            label_import.save()
        return
    try:
        selections = read_selections(label_import.deployment, label_import.text, label_import.label_override)
    except InputError as error:
        fail(import_id, str(error))
        return
    _plan_and_write(label_import, selections)


def decide_import(label_import: LabelImport, mode: str) -> LabelImport:
    """The importer's choice for an import waiting on one: keep or overwrite their labels."""
    if mode not in ImportMode.values:
        raise InputError(f"mode must be keep or overwrite, not {mode!r}")
    with transaction.atomic():
        label_import = LabelImport.objects.select_for_update().get(pk=label_import.pk)
        if label_import.status != ImportStatus.PLANNED:
            raise InputError(f"this import is {label_import.get_status_display().lower()}: nothing to decide")
        if len(label_import.window_ids) <= INLINE_MAX_WINDOWS:
            _write(label_import, mode)
        else:
            label_import.mode, label_import.status = mode, ImportStatus.QUEUED
            enqueue_on_commit(IMPORT_LABELS, label_import.pk, on_failure=lambda reason: fail(label_import.pk, reason))
        label_import.save()
    return label_import
