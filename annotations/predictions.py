"""What the embedding model itself hears in a window: its top classes, stored at ingest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from annotations.models import EmbeddingModel, Window


class Prediction(NamedTuple):
    class_name: str
    logit: float


def _named(
    class_names: Sequence[str], classes: Sequence[int] | None, logits: Sequence[float] | None
) -> list[Prediction]:
    if not classes or not logits:
        return []
    return [Prediction(class_names[c], logit) for c, logit in zip(classes, logits, strict=True)]


def top_predictions(window: Window) -> list[Prediction]:
    """The window's top classes, best first; [] for a model without classes.
    (Reads ``window.model``: select it with the window where there are many.)"""
    return _named(window.model.class_names, window.top_classes, window.top_logits)


def top_predictions_of(window_ids: Sequence[int]) -> dict[int, list[Prediction]]:
    """Top classes of many windows in two queries: {window_id: predictions, best first}."""
    rows = list(Window.objects.filter(pk__in=window_ids).values_list("pk", "model_id", "top_classes", "top_logits"))
    class_names = dict(EmbeddingModel.objects.filter(pk__in={row[1] for row in rows}).values_list("pk", "class_names"))
    return {pk: _named(class_names[model_id], classes, logits) for pk, model_id, classes, logits in rows}
