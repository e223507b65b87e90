"""A map of a project's embedding space: where its windows lie, seen from above.

A worker draws a bounded sample of the project's windows (MAP_SAMPLE, however many the
project holds), lays their unit embeddings out on a plane (UMAP over their leading
principal axes), and stores each window's place (``MapPoint``). The page colours the
points by label, site, hour of day or a classifier's score, shows a window's spectrogram on hover, plays it on
a click, and sends a lassoed group to the search as examples or to a list for labeling.
Nothing here runs in a request but reading the stored points (bounded by MAP_SAMPLE).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from annotations.embedding_store import copy_rows, sample_window_ids, window_matrix
from annotations.errors import InputError
from annotations.models import (
    ClassifierLabel,
    EmbeddingMap,
    EmbeddingModel,
    Label,
    MapPoint,
    Project,
    TaskStatus,
    Window,
    WindowScore,
)
from annotations.probes import unit_rows
from annotations.queueing import BUILD_EMBEDDING_MAP, enqueue_on_commit
from annotations.search_index import newest_window_id

# Points on one map: enough to show a season's structure and its rarer sounds, few enough
# for a browser to draw and hit-test at once (about 0.7 MB of points to fetch).
MAP_SAMPLE = 20_000
READ_CHUNK = 2_000  # windows read per query while a map is drawn (progress between them)
# Of a drawing's progress, the share that reading the sample takes; the layout takes the
# rest (bench.embedding_map at 1M: about 2 s of reading, the rest UMAP's).
READING_SHARE = 0.1
BUILD_TIME_LIMIT = dt.timedelta(hours=1)

COLOUR_BY = ("label", "site", "hour", "score")
LABEL_STATES = ("not labeled", "positive", "negative", "unsure", "annotators disagree")
SCORE_BANDS = 10  # colours of a classifier's score: 0-0.1, ..., 0.9-1


# The principal axes that UMAP lays out: most of a season's variety, and far cheaper for
# its nearest-neighbour graph than 1,024-1,536 dimensions.
PCA_AXES = 50
# Fewer points than this (a first deployment's few files) are drawn on their two leading
# principal axes: UMAP needs neighbourhoods to lay out.
UMAP_MIN_POINTS = 100
UMAP_NEIGHBOURS = 15


@dataclasses.dataclass(frozen=True)
class Projection:
    """points: float32 [N, 2] in [-1, 1]; explained: the share of the variance of the unit
    embeddings that the principal axes it started from hold; method: "umap" or "pca"."""

    points: np.ndarray
    explained: float
    method: str


def project_to_plane(embeddings: np.ndarray) -> Projection:
    """Embeddings float32 [N, D] (N >= 1) onto a plane: their unit rows on their PCA_AXES
    leading principal axes, laid out by UMAP (neighbours in the embedding space stay
    neighbours on the map), or for fewer than UMAP_MIN_POINTS the two leading axes alone.
    Scaled into [-1, 1] (one scale for both axes, so that distances keep their
    proportions). The same windows, in the same order, draw the same map."""
    unit = unit_rows(np.asarray(embeddings, dtype=np.float32)).astype(np.float64)
    centred = unit - unit.mean(axis=0)
    # The D x D scatter matrix: its eigenvectors are the principal axes, and it costs one
    # pass over the rows whatever their number.
    values, vectors = np.linalg.eigh(centred.T @ centred)
    values, vectors = values[::-1].clip(min=0), vectors[:, ::-1]
    # Each axis points the way most of the weight lies: eigenvectors' signs are arbitrary.
    vectors = vectors * np.where(vectors.sum(axis=0) < 0, -1.0, 1.0)
    total = float(values.sum()) or 1.0
    if len(unit) < UMAP_MIN_POINTS:
        points, explained, method = centred @ vectors[:, :2], float(values[:2].sum() / total), "pca"
    else:
        import umap  # its numba compiles on first use: imported by the worker that draws

        axes = min(PCA_AXES, len(unit) - 1)
        reduced = centred @ vectors[:, :axes]
        # A fixed seed runs it in one thread: the same map for the same windows.
        layout = umap.UMAP(n_components=2, n_neighbors=UMAP_NEIGHBOURS, min_dist=0.1, random_state=0)
        points, explained, method = layout.fit_transform(reduced), float(values[:axes].sum() / total), "umap"
    points = points - points.mean(axis=0)  # UMAP's layout lies anywhere; PCA's is centred already
    extent = float(np.abs(points).max()) or 1.0
    return Projection((points / extent).astype(np.float32), explained, method)


def request_map_build(project: Project, model: EmbeddingModel) -> EmbeddingMap:
    """Queue a (re)drawing of the project's map for ``model`` unless one is queued or running."""
    if newest_window_id(project, model) is None:
        raise InputError(f"the project has no windows of {model} to draw a map of yet")
    with transaction.atomic():
        row, _ = EmbeddingMap.objects.select_for_update().get_or_create(project=project, model=model)
        lost = row.build_started_at is None or timezone.now() - row.build_started_at > BUILD_TIME_LIMIT
        if row.status in (TaskStatus.QUEUED, TaskStatus.RUNNING) and not lost:
            return row
        row.status, row.error, row.progress, row.build_started_at = TaskStatus.QUEUED, "", 0.0, timezone.now()
        row.save(update_fields=["status", "error", "progress", "build_started_at"])
        enqueue_on_commit(
            BUILD_EMBEDDING_MAP,
            row.pk,
            on_failure=lambda why: EmbeddingMap.objects.filter(pk=row.pk).update(status=TaskStatus.FAILED, error=why),
        )
    return row


def build_embedding_map(map_id: int) -> EmbeddingMap:
    """Draw the map: sample, read, project, and replace its points (in one transaction, so
    that the page shows the old map until the new one is whole)."""
    row = EmbeddingMap.objects.select_related("project", "model").get(pk=map_id)
    started = time.monotonic()
    EmbeddingMap.objects.filter(pk=row.pk).update(status=TaskStatus.RUNNING, progress=0.0)
    newest = newest_window_id(row.project, row.model) or 0
    window_ids = sample_window_ids(row.project, row.model, MAP_SAMPLE, newest)
    embeddings = np.zeros((len(window_ids), row.model.embedding_dim), np.float32)
    for start in range(0, len(window_ids), READ_CHUNK):
        chunk = window_ids[start : start + READ_CHUNK]
        embeddings[start : start + len(chunk)] = window_matrix(chunk.tolist(), row.model.embedding_dim)[1]
        EmbeddingMap.objects.filter(pk=row.pk).update(progress=READING_SHARE * (start + len(chunk)) / len(window_ids))
    empty = Projection(np.zeros((0, 2), np.float32), 0.0, "pca")
    projection = project_to_plane(embeddings) if len(window_ids) else empty
    with transaction.atomic():
        MapPoint.objects.filter(map=row).delete()
        rows = ((row.pk, int(w), float(x), float(y)) for w, (x, y) in zip(window_ids, projection.points, strict=True))
        copy_rows(
            MapPoint._meta.db_table, ["map_id", "window_id", "x", "y"], ["bigint", "bigint", "float8", "float8"], rows
        )
        EmbeddingMap.objects.filter(pk=row.pk).update(
            status=TaskStatus.DONE,
            error="",
            progress=1.0,
            windows_total=Window.objects.filter(project=row.project, model=row.model).count(),
            explained_variance=projection.explained,
            method=projection.method,
            build_seconds=time.monotonic() - started,
        )
    if not connection.in_atomic_block:
        # The old points are dead rows now: left to autovacuum, every drawing again slowed
        # the reading of the new ones (bench.embedding_map: 140 ms, then 290 after two more).
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM (ANALYZE) {MapPoint._meta.db_table}")
    row.refresh_from_db()
    return row


def record_failure(map_id: int, error: str) -> None:
    EmbeddingMap.objects.filter(pk=map_id).update(status=TaskStatus.FAILED, error=error)


@dataclasses.dataclass(frozen=True)
class MapPoints:
    """A map's points as the page draws them, in parallel lists: each point's window, place
    and category (an index into ``categories``)."""

    window_ids: list[int]
    x: list[float]
    y: list[float]
    category: list[int]
    categories: list[str]
    source: str = ""  # what the categories come from, where it is not plain: a classifier's version


def map_points(embedding_map: EmbeddingMap, colour_by: str, label: Label | None = None) -> MapPoints:
    """The map's points whose windows are still there, each with its category: for
    ``label``, whether annotators called it positive, negative, unsure, disagree or nobody
    labeled it; its deployment's site (or name); the local hour it began at; or, for
    ``label``, its score's tenth in the newest classifier scored for it."""
    if colour_by not in COLOUR_BY:
        raise InputError(f"colour_by must be one of {', '.join(COLOUR_BY)}")
    if colour_by in ("label", "score") and label is None:
        raise InputError(f"name the label to colour the map by its {colour_by}")
    source, params = "", {"map": embedding_map.pk, "label": label.pk if label else None}
    if colour_by == "score":
        output = _newest_scored_output(embedding_map, label)
        source = f"scores of classifier version {output.classifier.version}"
        params.update(classifier=output.classifier_id, output=output.index)
        # least() passes over a null: an unscored window's null is kept by the CASE.
        tenth = f"least(width_bucket(s.score, 0, 1, {SCORE_BANDS}), {SCORE_BANDS}) - 1"
        category = f"CASE WHEN s.score IS NOT NULL THEN {tenth} END"
        labels = (
            f"LEFT JOIN {WindowScore._meta.db_table} s ON s.classifier_id = %(classifier)s "
            "AND s.output_index = %(output)s AND s.window_id = p.window_id"
        )
    elif colour_by == "label":
        category = (
            "CASE WHEN a.positive AND a.negative THEN 4 WHEN a.positive THEN 1 WHEN a.negative THEN 2 "
            "WHEN a.unsure THEN 3 ELSE 0 END"
        )
        labels = (
            "LEFT JOIN (SELECT window_id, bool_or(value = 'positive') AS positive, "
            "bool_or(value = 'negative') AS negative, bool_or(value = 'unsure') AS unsure "
            "FROM annotations_annotation WHERE label_id = %(label)s GROUP BY window_id) a ON a.window_id = p.window_id"
        )
    elif colour_by == "site":
        category, labels = "coalesce(nullif(d.site, ''), d.name)", ""
    else:
        category, labels = "extract(hour FROM w.started_at AT TIME ZONE d.timezone)::int", ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.window_id, p.x, p.y, {category} FROM annotations_mappoint p "
            "JOIN annotations_window w ON w.id = p.window_id "
            f"JOIN annotations_deployment d ON d.id = w.deployment_id {labels} "
            "WHERE p.map_id = %(map)s ORDER BY p.id",
            params,
        )
        rows = cursor.fetchall()
    if colour_by == "label":
        categories, indices = list(LABEL_STATES), [row[3] for row in rows]
    elif colour_by == "score":
        # Windows scored after the drawing began, or not at all: the last category.
        categories = [f"score {i / SCORE_BANDS:.1f}–{(i + 1) / SCORE_BANDS:.1f}" for i in range(SCORE_BANDS)]
        categories.append("not scored")
        indices = [SCORE_BANDS if row[3] is None else row[3] for row in rows]
    elif colour_by == "hour":
        # Windows whose start is unknown have no hour: the 25th category.
        categories = [f"{hour:02d}:00" for hour in range(24)] + ["time unknown"]
        indices = [24 if row[3] is None else row[3] for row in rows]
    else:
        categories = sorted({row[3] for row in rows})
        position = {name: i for i, name in enumerate(categories)}
        indices = [position[row[3]] for row in rows]
    return MapPoints(
        window_ids=[row[0] for row in rows],
        x=[round(row[1], 4) for row in rows],
        y=[round(row[2], 4) for row in rows],
        category=indices,
        categories=categories,
        source=source,
    )


def _newest_scored_output(embedding_map: EmbeddingMap, label: Label) -> ClassifierLabel:
    """The label's output of the project's newest classifier (of the map's model) whose
    scores of every window are stored; InputError where none is."""
    output = (
        ClassifierLabel.objects.select_related("classifier")
        .filter(
            label=label,
            classifier__project_id=embedding_map.project_id,
            classifier__embedding_model_id=embedding_map.model_id,
            classifier__status=TaskStatus.DONE,
            classifier__scoring_status=TaskStatus.DONE,
        )
        .order_by("-classifier__version")
        .first()
    )
    if output is None:
        raise InputError(f"no classifier has scored the windows for {label.name!r} yet: train one on its labels first")
    return output
