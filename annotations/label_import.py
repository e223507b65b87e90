"""Importing labels made in other tools (Raven, Audacity, CSV) onto a deployment's windows."""

from __future__ import annotations

import dataclasses

from django.db import transaction

from annotations.errors import InputError
from annotations.labeling import set_label
from annotations.models import Deployment, LabelValue, Window
from annotations.raven import read_label_table

MAX_BYTES = 50 * 1024 * 1024  # an uploaded label table


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    selections: int
    windows_labeled: int
    unmatched_files: list[str]
    unmatched_selections: int  # selections that overlap no window enough


def overlaps_enough(start_s: float, end_s: float, window_start: float, window_end: float) -> bool:
    """A selection labels a window when they share at least half of the shorter of the two."""
    shared = min(end_s, window_end) - max(start_s, window_start)
    return shared > 0 and shared >= 0.5 * min(end_s - start_s, window_end - window_start)


def import_labels(deployment: Deployment, user, text: str, label: str = "", file_name: str = "") -> ImportSummary:
    """Label the windows each selection covers, as ``user`` (kept in the audit trail).

    ``label``, when given, is the label of every selection, whatever the table says;
    ``file_name`` names the recording for tables that do not name one themselves.
    """
    try:
        selections = read_label_table(text, label)
    except (ValueError, IndexError) as error:
        raise InputError(f"could not read the table: {error}") from None
    if label:
        selections = [dataclasses.replace(selection, label=label) for selection in selections]
    project = deployment.project
    labels = {label.name: label.pk for label in project.labels.all()}
    unknown = sorted({s.label for s in selections} - set(labels))
    if unknown:
        raise InputError(f"labels not in this project's vocabulary: {', '.join(unknown)}; add them first")
    bad_values = sorted({s.value for s in selections} - set(LabelValue.values))
    if bad_values:
        raise InputError(f"values must be positive, negative or unsure, not {', '.join(bad_values)}")
    recordings = {r.filename.rsplit("/", 1)[-1]: r.pk for r in deployment.recordings.all()}
    windows_by_recording: dict[int, list[tuple[int, float, float]]] = {}
    unmatched_files, unmatched, labeled = set(), 0, set()
    with transaction.atomic():
        for selection in selections:
            name = selection.file or file_name
            recording_id = recordings.get(name)
            if recording_id is None:
                unmatched_files.add(name or "(no file named)")
                continue
            if recording_id not in windows_by_recording:
                windows_by_recording[recording_id] = list(
                    Window.objects.filter(recording_id=recording_id).values_list("pk", "start_s", "end_s")
                )
            hits = [
                window_id
                for window_id, start, end in windows_by_recording[recording_id]
                if overlaps_enough(selection.start_s, selection.end_s, start, end)
            ]
            if not hits:
                unmatched += 1
            for window_id in hits:
                set_label(project, user, window_id, labels[selection.label], selection.value)
                labeled.add((window_id, selection.label))
    return ImportSummary(len(selections), len(labeled), sorted(unmatched_files), unmatched)
