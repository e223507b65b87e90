"""One hit per call: where windows overlap (a hop shorter than the window), the windows
of one call are near-copies of each other, and would fill a page with the same sound.
A search keeps the best window of each group of overlapping windows (non-maximum
suppression in time); ``SearchFilters.all_overlapping`` keeps them all."""

from __future__ import annotations

import math
from collections import defaultdict

from django.db import connections, router

from annotations.models import Deployment, EmbeddingModel, Project, Recording, Window

# Windows whose starts are closer than the window length less this share overlap.
OVERLAP_TOLERANCE_S = 1e-3


def windows_per_instant(project: Project, model: EmbeddingModel) -> int:
    """How many of the project's windows (of ``model``) can hold one moment: 1 where no
    deployment overlaps its windows, window / hop for the shortest hop otherwise (both in
    the audio as played to the model: a time-expanded recording's hop is its own seconds)."""
    # Every search from a window asks: plain SQL costs it 0.3 ms where the ORM took 0.8.
    with connections[router.db_for_read(Recording)].cursor() as cursor:
        cursor.execute(
            f"SELECT min(r.hop_s / r.speed_factor) FROM {Recording._meta.db_table} r "
            f"JOIN {Deployment._meta.db_table} d "
            "ON d.id = r.deployment_id WHERE d.project_id = %s AND r.embedding_model_id = %s",
            [project.pk, model.pk],
        )
        (shortest,) = cursor.fetchone()
    hop = min(shortest or model.hop_s, model.hop_s)
    return max(1, math.ceil(model.window_s / hop - OVERLAP_TOLERANCE_S))


def one_per_call(scored: list[tuple[int, float]], window_s: float, k: int, depth: int) -> list[tuple[int, float]]:
    """The best ``k`` of ``scored`` (window id, score; best first) whose windows overlap no
    better one in time: each call's best window. ``window_s``: the model's window, which
    lasts its recording's speed times that in the file. ``depth``: ``windows_per_instant``,
    or 1 where every overlapping window is wanted (then simply the first ``k``)."""
    if depth <= 1:
        return scored[:k]
    spans = {pk: (recording, start, speed) for pk, recording, start, speed in _spans([pk for pk, _ in scored])}
    kept: dict[int, list[float]] = defaultdict(list)
    chosen = []
    for window_id, score in scored:
        recording, start, speed = spans[window_id]
        if any(abs(start - other) < (window_s - OVERLAP_TOLERANCE_S) * speed for other in kept[recording]):
            continue
        kept[recording].append(start)
        chosen.append((window_id, score))
        if len(chosen) == k:
            break
    return chosen


def _spans(window_ids: list[int]) -> list[tuple[int, int, float, float]]:
    windows = Window.objects.filter(pk__in=window_ids)
    return list(windows.values_list("pk", "recording_id", "start_s", "recording__speed_factor"))
