"""What the embedding model itself hears in a window: its top classes, stored at ingest,
each marked in or out of the species' range at the deployment and week
(``species_range``). The scores are the model's own sigmoid outputs: uncalibrated."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from annotations.models import Deployment, EmbeddingModel, Window
from annotations.species_range import RangeCheck


class Prediction(NamedTuple):
    class_name: str
    logit: float
    in_range: bool | None = None  # None: the range model cannot say (see species_range)


def named_predictions(windows: Iterable[Window]) -> dict[int, list[Prediction]]:
    """Top classes of windows already loaded (with ``model_id``, ``deployment_id``,
    ``started_at``, ``top_classes`` and ``top_logits``), best first: {window_id:
    predictions}. One query each for the class names and the deployments' places."""
    windows = list(windows)
    class_names = dict(
        EmbeddingModel.objects.filter(pk__in={w.model_id for w in windows}).values_list("pk", "class_names")
    )
    places = {
        pk: (latitude, longitude, zone)
        for pk, latitude, longitude, zone in Deployment.objects.filter(
            pk__in={w.deployment_id for w in windows}
        ).values_list("pk", "latitude", "longitude", "timezone")
    }
    check = RangeCheck()
    named = {}
    for w in windows:
        latitude, longitude, zone = places[w.deployment_id]
        names = class_names[w.model_id]
        named[w.pk] = [
            Prediction(names[c], logit, check.in_range(names[c], latitude, longitude, w.started_at, zone))
            for c, logit in zip(w.top_classes or [], w.top_logits or [], strict=True)
        ]
    return named
