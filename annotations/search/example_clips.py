"""Example clips: uploaded files and dragged regions, embedded by a worker."""

from __future__ import annotations

from django.db import transaction

from annotations.bands import checked_band
from annotations.clips import check_quota, clip_folder
from annotations.deployments import AUDIO_EXTENSIONS, safe_filename
from annotations.errors import InputError
from annotations.models import ClipQuery, Project, Recording, RecordingStatus
from annotations.queueing import EMBED_CLIP_QUERY, enqueue_on_commit

MAX_CLIP_BYTES = 50 * 1024 * 1024
MAX_REGION_S = 60.0


def _checked_span(start_s: float | None, end_s: float | None) -> tuple[float | None, float | None]:
    if start_s is None and end_s is None:
        return None, None
    start_s = 0.0 if start_s is None else float(start_s)
    if not (start_s >= 0 and (end_s is None or end_s > start_s)):
        raise InputError("a trimmed clip needs 0 <= start < end (seconds)")
    if end_s is not None and end_s - start_s > MAX_REGION_S:
        raise InputError(f"an example is at most {MAX_REGION_S:g} s long; trim it to the sound of interest")
    return start_s, end_s


def request_clip_query(
    project: Project, user, upload, start_s: float | None = None, end_s: float | None = None
) -> ClipQuery:
    """Store an uploaded example clip, optionally trimmed to [start_s, end_s), and queue its
    embedding; within the user's clip quota (``clips``)."""
    name = safe_filename(upload.name)
    if not any(name.lower().endswith(ext) for ext in AUDIO_EXTENSIONS):
        raise InputError(f"{upload.name}: unsupported file type; expected {', '.join(sorted(AUDIO_EXTENSIONS))}")
    if upload.size > MAX_CLIP_BYTES:
        raise InputError("an example clip must be under 50 MB; trim it to the sound of interest")
    start_s, end_s = _checked_span(start_s, end_s)
    check_quota(user, upload.size)
    with transaction.atomic():
        query = ClipQuery.objects.create(
            project=project, created_by=user, filename=name, path="", start_s=start_s, end_s=end_s
        )
        folder = clip_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{query.pk}-{name}"
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        query.path = str(path)
        query.save(update_fields=["path"])
        _queue_clip_embedding(query)
    return query


def request_region_query(
    project: Project,
    user,
    recording_id: int,
    start_s: float,
    end_s: float,
    band_hz: tuple[float, float] | None = None,
) -> ClipQuery:
    """Queue the embedding of a region dragged on a recording's spectrogram, as an example;
    with ``band_hz`` (low, high), a box: the region's audio outside the band is filtered
    out before it is embedded, so that what else sounds then (wind, another bird) does
    not steer the search."""
    recording = Recording.objects.filter(pk=recording_id, deployment__project=project).first()
    if recording is None:
        raise InputError(f"recording {recording_id} is not part of this project")
    start_s, end_s = _checked_span(start_s, end_s)
    if end_s is None or (recording.duration_s and start_s >= recording.duration_s):
        raise InputError(f"the region must lie inside the recording (0 to {recording.duration_s or 0:.1f} s)")
    low_hz, high_hz = checked_band(band_hz, recording.sample_rate) if band_hz else (None, None)
    with transaction.atomic():
        query = ClipQuery.objects.create(
            project=project,
            created_by=user,
            recording=recording,
            path=recording.path,
            filename=f"{recording.filename} {start_s:.2f}-{end_s:.2f} s",
            start_s=start_s,
            end_s=end_s,
            low_hz=low_hz,
            high_hz=high_hz,
        )
        _queue_clip_embedding(query)
    return query


def _queue_clip_embedding(query: ClipQuery) -> None:
    enqueue_on_commit(
        EMBED_CLIP_QUERY,
        query.pk,
        on_failure=lambda why: ClipQuery.objects.filter(pk=query.pk).update(status=RecordingStatus.FAILED, error=why),
    )
