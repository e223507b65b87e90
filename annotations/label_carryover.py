"""Labels that outlive their windows: when a recording is embedded again (at another hop,
or the same), each label stays on its span of time and moves onto the new windows that
span covers at least half of.

Per label and annotator, a new window takes the value of the old labeled window covering
most of it; where two old windows cover it equally and disagree (a positive and a
negative each holding half of it), it takes neither: no label is guessed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

import numpy as np

from annotations.models import Annotation

# Spans that differ by less than this are equal (starts computed from sample offsets).
TOLERANCE_S = 1e-6


@dataclasses.dataclass(frozen=True)
class HeldLabel:
    """A label as it was on a window about to be replaced, with that window's span."""

    label_id: int
    annotator_id: int
    value: str
    provenance: str
    start_s: float
    end_s: float
    updated_at: dt.datetime
    low_hz: float | None = None  # the band of a label given to a box
    high_hz: float | None = None


def labels_on_recording(recording_id: int, model_id: int) -> list[HeldLabel]:
    rows = Annotation.objects.filter(window__recording_id=recording_id, window__model_id=model_id).values_list(
        "label_id",
        "annotator_id",
        "value",
        "provenance",
        "window__start_s",
        "window__end_s",
        "updated_at",
        "low_hz",
        "high_hz",
    )
    return [HeldLabel(*row) for row in rows]


def carry_over(held: Sequence[HeldLabel], starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, HeldLabel]]:
    """(index of a new window, the label it takes) for the new windows (starts, ends:
    float [N], in start order) that the held labels' spans cover at least half of."""
    best: dict[tuple[int, int, int], tuple[float, list[HeldLabel]]] = {}
    for label in held:
        # Only new windows that end after the span starts and start before it ends can share time.
        first = int(np.searchsorted(ends, label.start_s, side="right"))
        last = int(np.searchsorted(starts, label.end_s, side="left"))
        for index in range(first, last):
            shared = min(ends[index], label.end_s) - max(starts[index], label.start_s)
            if shared <= 0 or shared < 0.5 * (ends[index] - starts[index]) - TOLERANCE_S:
                continue
            key = (index, label.label_id, label.annotator_id)
            cover, labels = best.get(key, (0.0, []))
            if shared > cover + TOLERANCE_S:
                best[key] = (shared, [label])
            elif shared > cover - TOLERANCE_S:
                labels.append(label)
    carried = []
    for (index, _, _), (_, labels) in sorted(best.items()):
        if len({label.value for label in labels}) == 1:
            carried.append((index, max(labels, key=lambda label: label.updated_at)))
    return carried


def restore_labels(held: Sequence[HeldLabel], window_ids: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> int:
    """Write the held labels onto the new windows (ids, starts, ends: [N], in start
    order); returns how many labels were written."""
    annotations = [
        Annotation(
            window_id=int(window_ids[index]),
            label_id=label.label_id,
            annotator_id=label.annotator_id,
            value=label.value,
            provenance=label.provenance,
            low_hz=label.low_hz,
            high_hz=label.high_hz,
        )
        for index, label in carry_over(held, starts, ends)
    ]
    Annotation.objects.bulk_create(annotations)
    return len(annotations)
