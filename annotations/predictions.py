"""What the embedding model itself hears in a window: its top classes, stored at ingest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def named_predictions(windows: Iterable[Window]) -> dict[int, list[Prediction]]:
    """Top classes of windows already loaded (with ``model_id``, ``top_classes`` and
    ``top_logits``), best first: {window_id: predictions}. One query for the class names."""
    windows = list(windows)
    class_names = dict(
        EmbeddingModel.objects.filter(pk__in={w.model_id for w in windows}).values_list("pk", "class_names")
    )
    return {w.pk: _named(class_names[w.model_id], w.top_classes, w.top_logits) for w in windows}
