"""Search hits as pages show them: window, recording, site, local time, labels, predictions."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

from annotations.labeling import labels_by_window
from annotations.models import Window
from annotations.predictions import Prediction, named_predictions


@dataclasses.dataclass(frozen=True)
class SearchHit:
    window_id: int
    recording_id: int
    filename: str
    deployment_id: int
    deployment_name: str
    site: str
    start_s: float
    end_s: float
    score: float  # cosine similarity, 1.0 for the same direction (less any push from negatives)
    labels: list[dict]
    # Wall-clock start of the window in the deployment's time zone, when the recording's start is known.
    started_at: dt.datetime | None = None
    predictions: list[Prediction] = dataclasses.field(default_factory=list)  # the model's own top classes


def hits_for(scored: list[tuple[int, float]]) -> list[SearchHit]:
    """Search hits (window, recording, site, time, labels, predictions) for [(window_id, score)], in that order."""
    windows = Window.objects.defer("embedding").select_related("recording__deployment").in_bulk([w for w, _ in scored])
    labels = labels_by_window(list(windows))
    predictions = named_predictions(windows.values())
    hits = []
    for window_id, score in scored:
        if (window := windows.get(window_id)) is None:
            continue  # deleted since (with its deployment)
        recording = window.recording
        hits.append(
            SearchHit(
                window_id=window_id,
                recording_id=recording.pk,
                filename=recording.filename,
                deployment_id=recording.deployment_id,
                deployment_name=recording.deployment.name,
                site=recording.deployment.site,
                start_s=window.start_s,
                end_s=window.end_s,
                score=float(score),
                labels=labels.get(window_id, []),
                started_at=window_start_time(window),
                predictions=predictions.get(window_id, []),
            )
        )
    return hits


def window_start_time(window: Window) -> dt.datetime | None:
    """When the window's audio was recorded, in its deployment's time zone."""
    recording = window.recording
    if recording.started_at is None:
        return None
    try:
        zone = zoneinfo.ZoneInfo(recording.deployment.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = dt.UTC
    return (recording.started_at + dt.timedelta(seconds=window.start_s)).astimezone(zone)
