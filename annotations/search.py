"""Query by example: the windows nearest a query embedding by cosine similarity.

The query runs on the model's partial HNSW index (``annotations.embedding_store``).
pgvector's ``hnsw.ef_search`` defaults to 40, which would silently cap a top-50 at 40
rows, so it is raised to at least twice k; ``iterative_scan`` keeps filtered queries
(this project only, excluded windows) from coming back short.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db import transaction

from annotations.deployments import AUDIO_EXTENSIONS, safe_filename
from annotations.embedding_store import raw_connection, window_embeddings
from annotations.errors import InputError
from annotations.models import Annotation, ClipQuery, EmbeddingModel, Project, RecordingStatus, Window
from annotations.queueing import enqueue_on_commit

MAX_K = 500
MAX_CLIP_BYTES = 50 * 1024 * 1024


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
    score: float  # cosine similarity, 1.0 for the same direction
    labels: list[dict]


def nearest_windows(
    project: Project,
    model: EmbeddingModel,
    query: np.ndarray,
    k: int = 50,
    exclude_window_ids: Sequence[int] = (),
) -> list[SearchHit]:
    """The k windows of ``project`` nearest ``query`` (float32 [model.embedding_dim])."""
    query = np.asarray(query, dtype=np.float32)
    if query.shape != (model.embedding_dim,):
        raise InputError(f"query has shape {query.shape}, {model} needs ({model.embedding_dim},)")
    if not np.any(query):
        raise InputError("the query embedding is all zeros: cosine similarity is undefined")
    k = max(1, min(int(k), MAX_K))
    with transaction.atomic(), raw_connection().cursor() as cursor:
        cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(100, 2 * k))])
        cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")
        cursor.execute(
            nearest_sql(model), {"query": query, "project": project.pk, "exclude": list(exclude_window_ids), "k": k}
        )
        scored = sorted(cursor.fetchall(), key=lambda row: -row[1])
    return hits_for(scored)


def nearest_sql(model: EmbeddingModel) -> str:
    """The k-nearest query on ``model``'s partial HNSW index.

    Parameters: query (vector), project (id), exclude (ids), k.
    """
    dim = int(model.embedding_dim)
    distance = f"w.embedding::vector({dim}) <=> %(query)s::vector({dim})"
    return (
        f"SELECT w.id, 1 - ({distance}) AS score FROM annotations_window w "
        "JOIN annotations_recording r ON r.id = w.recording_id "
        "JOIN annotations_deployment d ON d.id = r.deployment_id "
        # The model id is a literal so the planner can match the partial index.
        f"WHERE w.model_id = {int(model.pk)} AND d.project_id = %(project)s "
        "AND NOT (w.id = ANY(%(exclude)s)) "
        f"ORDER BY {distance} LIMIT %(k)s"
    )


def hits_for(scored: list[tuple[int, float]]) -> list[SearchHit]:
    """Search hits (window, recording, site, labels) for [(window_id, score)], in that order."""
    windows = Window.objects.defer("embedding").select_related("recording__deployment").in_bulk([w for w, _ in scored])
    labels: dict[int, list[dict]] = {}
    for annotation in Annotation.objects.filter(window_id__in=windows).select_related("label", "annotator"):
        labels.setdefault(annotation.window_id, []).append(
            {"label": annotation.label.name, "value": annotation.value, "annotator": annotation.annotator.username}
        )
    hits = []
    for window_id, score in scored:
        window = windows[window_id]
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
            )
        )
    return hits


@dataclasses.dataclass(frozen=True)
class Query:
    """A query embedding (float32 [dim]) of one model, and windows to leave out of the results."""

    model: EmbeddingModel
    embedding: np.ndarray
    exclude_window_ids: tuple[int, ...] = ()


def query_from_window(project: Project, window_id: int) -> Query:
    """Search with a window's own embedding; the window itself is left out of the hits."""
    window = Window.objects.defer("embedding").filter(pk=window_id, recording__deployment__project=project).first()
    if window is None:
        raise InputError(f"window {window_id} is not part of this project")
    return Query(window.model, window_embeddings([window_id])[window_id], (window_id,))


def query_from_clip(project: Project, clip_query_id: int) -> Query:
    clip = ClipQuery.objects.filter(pk=clip_query_id, project=project).select_related("embedding_model").first()
    if clip is None:
        raise InputError(f"clip query {clip_query_id} is not part of this project")
    if clip.status != RecordingStatus.DONE:
        raise InputError(
            f"clip {clip.filename} is not embedded yet ({clip.status}{': ' + clip.error if clip.error else ''})"
        )
    return Query(clip.embedding_model, np.asarray(clip.embedding, dtype=np.float32))


def request_clip_query(project: Project, user, upload) -> ClipQuery:
    """Store an uploaded example clip and queue its embedding."""
    from workers.tasks import embed_clip_query

    name = safe_filename(upload.name)
    if not any(name.lower().endswith(ext) for ext in AUDIO_EXTENSIONS):
        raise InputError(f"{upload.name}: unsupported file type; expected {', '.join(sorted(AUDIO_EXTENSIONS))}")
    if upload.size > MAX_CLIP_BYTES:
        raise InputError("an example clip must be under 50 MB; trim it to the sound of interest")
    with transaction.atomic():
        query = ClipQuery.objects.create(project=project, created_by=user, filename=name, path="")
        folder = settings.MEDIA_ROOT / "clip_queries"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{query.pk}-{name}"
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        query.path = str(path)
        query.save(update_fields=["path"])
        enqueue_on_commit(
            embed_clip_query,
            query.pk,
            on_failure=lambda why: ClipQuery.objects.filter(pk=query.pk).update(
                status=RecordingStatus.FAILED, error=why
            ),
        )
    return query
