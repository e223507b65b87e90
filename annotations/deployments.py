"""Projects, deployments and their recordings: creating them, adding audio, progress."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from annotations.errors import InputError
from annotations.models import (
    Annotation,
    Classifier,
    Deployment,
    Detection,
    Label,
    LabelChange,
    Membership,
    Project,
    Recording,
    RecordingStatus,
    Role,
    Window,
)
from annotations.queueing import enqueue_on_commit
from annotations.recording_time import start_time_from_filename
from workers.audio import sniff_format

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus"}


def create_project(user, name: str, description: str = "", labels: list[str] = ()) -> Project:
    with transaction.atomic():
        project = Project.objects.create(name=name, description=description, created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.ADMIN)
        for label in labels:
            Label.objects.create(project=project, name=label)
    return project


def create_deployment(
    project: Project,
    name: str,
    site: str = "",
    latitude: float | None = None,
    longitude: float | None = None,
    server_folder: str = "",
) -> Deployment:
    """Create a deployment; with ``server_folder``, register the audio files found there."""
    folder = confined_folder(server_folder) if server_folder else None
    with transaction.atomic():
        deployment = Deployment.objects.create(
            project=project,
            name=name,
            site=site,
            latitude=latitude,
            longitude=longitude,
            server_folder=str(folder or ""),
        )
        if folder:
            register_folder_files(deployment, folder)
    return deployment


def confined_folder(folder: str) -> Path:
    """Resolve a server folder and check that it lies inside a configured audio root."""
    resolved = Path(folder).resolve()  # follows symlinks, so a link cannot escape
    roots = settings.PERCH_AGILE_AUDIO_ROOTS
    if not any(resolved == root or root in resolved.parents for root in roots):
        allowed = ", ".join(str(root) for root in roots)
        raise InputError(f"{folder} is outside the allowed audio folders ({allowed}).")
    if not resolved.is_dir():
        raise InputError(f"{folder} is not a folder on the server.")
    return resolved


def register_folder_files(deployment: Deployment, folder: Path) -> list[Recording]:
    """Add every audio file under ``folder`` (recursively) that is not yet registered."""
    known = set(deployment.recordings.values_list("path", flat=True))
    new = []
    for path in sorted(folder.rglob("*")):
        # resolve(): a symlink inside the folder must not lead outside it.
        if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file() or str(path) in known:
            continue
        if folder not in path.resolve().parents:
            continue
        new.append(
            Recording(
                deployment=deployment,
                path=str(path),
                filename=str(path.relative_to(folder)),
                size_bytes=path.stat().st_size,
                started_at=start_time_from_filename(path.name),
            )
        )
    return Recording.objects.bulk_create(new)


def safe_filename(name: str) -> str:
    """A file name that cannot climb out of its folder or confuse a shell."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "audio"
    return cleaned[:200]


@dataclasses.dataclass(frozen=True)
class UploadResult:
    recordings: list[Recording]
    rejected: list[tuple[str, str]]  # (file name, reason)


def upload_rejection(upload: UploadedFile) -> str:
    """Why an uploaded file cannot be a recording, or "" when it may be one.

    The content decides, not the name: the first bytes must announce an audio format.
    """
    if Path(upload.name).suffix.lower() not in AUDIO_EXTENSIONS:
        return f"unsupported file type; expected one of {', '.join(sorted(AUDIO_EXTENSIONS))}"
    if upload.size > settings.PERCH_AGILE_MAX_UPLOAD_BYTES:
        return (
            f"{upload.size / 1e9:.1f} GB is over the limit of "
            f"{settings.PERCH_AGILE_MAX_UPLOAD_BYTES / 1e9:.1f} GB per file"
        )
    if upload.size == 0:
        return "the file is empty (0 bytes)"
    upload.seek(0)
    head = upload.read(16)
    upload.seek(0)
    if sniff_format(head) is None:
        return "the content is not WAV, FLAC, OGG or MP3 audio, whatever its name says"
    return ""


def add_uploaded_files(deployment: Deployment, files: list[UploadedFile]) -> UploadResult:
    """Store the uploads that are audio under MEDIA_ROOT (streamed in chunks) and register
    them as recordings; the others are reported with their reason."""
    if not files:
        raise InputError("No files were sent: use the multipart field 'files'.")
    folder = Path(settings.MEDIA_ROOT) / "deployments" / str(deployment.pk)
    folder.mkdir(parents=True, exist_ok=True)
    recordings, rejected = [], []
    for upload in files:
        if reason := upload_rejection(upload):
            rejected.append((upload.name, reason))
            continue
        target = _unused_path(folder, safe_filename(upload.name))
        with open(target, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        recordings.append(
            Recording.objects.create(
                deployment=deployment,
                path=str(target),
                filename=target.name,
                size_bytes=upload.size,
                started_at=start_time_from_filename(upload.name),
            )
        )
    return UploadResult(recordings, rejected)


def _unused_path(folder: Path, name: str) -> Path:
    target = folder / name
    counter = 1
    while target.exists():
        target = folder / f"{Path(name).stem}-{counter}{Path(name).suffix}"
        counter += 1
    return target


def queue_ingest(deployment: Deployment) -> int:
    """Queue every recording that is not done; returns how many were queued."""
    from workers.tasks import ingest_recording

    pending = list(deployment.recordings.exclude(status=RecordingStatus.DONE).values_list("pk", flat=True))
    Recording.objects.filter(pk__in=pending).update(status=RecordingStatus.QUEUED, error="")
    if pending:
        Deployment.objects.filter(pk=deployment.pk).update(ingest_started_at=timezone.now())
    for recording_id in pending:
        # Unsent recordings stay queued in the database; ingesting again sends them.
        enqueue_on_commit(ingest_recording, recording_id)
    return len(pending)


FINISHED = [RecordingStatus.DONE, RecordingStatus.FAILED]


@dataclasses.dataclass(frozen=True)
class DeploymentProgress:
    files_total: int
    files_queued: int
    files_embedding: int
    files_done: int
    files_failed: int
    audio_hours_done: float
    windows: int
    windows_in_progress: int
    windows_expected_in_progress: int
    # Since the latest ingest was queued: windows embedded per second, and the seconds
    # left at that pace (estimated from the bytes still to do); None until measurable.
    windows_per_s: float | None = None
    eta_s: float | None = None

    @property
    def fraction_done(self) -> float:
        finished = self.files_done + self.files_failed
        if not self.files_total:
            return 0.0
        partial = (
            self.windows_in_progress / self.windows_expected_in_progress if self.windows_expected_in_progress else 0
        )
        return min(1.0, (finished + partial * self.files_embedding) / self.files_total)


def deployment_progress(deployment: Deployment) -> DeploymentProgress:
    since = deployment.ingest_started_at or timezone.now()
    counts = deployment.recordings.aggregate(
        total=Count("id"),
        bytes_pending=Sum("size_bytes", filter=Q(status__in=[RecordingStatus.QUEUED, RecordingStatus.EMBEDDING])),
        bytes_finished=Sum("size_bytes", filter=Q(updated_at__gte=since, status__in=FINISHED)),
        windows_finished=Sum("windows_done", filter=Q(updated_at__gte=since, status=RecordingStatus.DONE)),
        queued=Count("id", filter=Q(status=RecordingStatus.QUEUED)),
        embedding=Count("id", filter=Q(status=RecordingStatus.EMBEDDING)),
        done=Count("id", filter=Q(status=RecordingStatus.DONE)),
        failed=Count("id", filter=Q(status=RecordingStatus.FAILED)),
        seconds=Sum("duration_s", filter=Q(status=RecordingStatus.DONE)),
        in_progress=Sum("windows_done", filter=Q(status=RecordingStatus.EMBEDDING)),
        expected=Sum("windows_expected", filter=Q(status=RecordingStatus.EMBEDDING)),
    )
    elapsed = (timezone.now() - since).total_seconds()
    windows_since = (counts["windows_finished"] or 0) + (counts["in_progress"] or 0)
    windows_per_s = windows_since / elapsed if elapsed > 0 and windows_since else None
    bytes_finished = counts["bytes_finished"] or 0
    eta_s = (counts["bytes_pending"] or 0) / (bytes_finished / elapsed) if bytes_finished and elapsed > 0 else None
    return DeploymentProgress(
        windows_per_s=windows_per_s,
        eta_s=eta_s,
        files_total=counts["total"],
        files_queued=counts["queued"],
        files_embedding=counts["embedding"],
        files_done=counts["done"],
        files_failed=counts["failed"],
        audio_hours_done=(counts["seconds"] or 0.0) / 3600,
        windows=Window.objects.filter(recording__deployment=deployment).count(),
        windows_in_progress=counts["in_progress"] or 0,
        windows_expected_in_progress=counts["expected"] or 0,
    )


@dataclasses.dataclass(frozen=True)
class DeletionSummary:
    """What deleting a project or deployment takes with it; said before anything is deleted."""

    name: str
    deployments: int
    recordings: int
    audio_hours: float
    windows: int
    annotations: int
    classifiers: int
    detections: int
    uploaded_files: int  # files the app stored; files in server folders are never deleted


def deletion_summary(target: Project | Deployment) -> DeletionSummary:
    if isinstance(target, Project):
        deployments = target.deployments.all()
        classifiers = Classifier.objects.filter(project=target).count()
    else:
        deployments = Deployment.objects.filter(pk=target.pk)
        classifiers = 0
    recordings = Recording.objects.filter(deployment__in=deployments)
    return DeletionSummary(
        name=target.name,
        deployments=deployments.count(),
        recordings=recordings.count(),
        audio_hours=(recordings.aggregate(s=Sum("duration_s"))["s"] or 0.0) / 3600,
        windows=Window.objects.filter(recording__in=recordings).count(),
        annotations=Annotation.objects.filter(window__recording__in=recordings).count(),
        classifiers=classifiers,
        detections=Detection.objects.filter(window__recording__in=recordings).count(),
        uploaded_files=recordings.filter(deployment__server_folder="").count(),
    )


def delete_with_confirmation(target: Project | Deployment, confirm_name: str) -> DeletionSummary:
    """Delete a project or deployment, with its uploaded audio, once ``confirm_name``
    repeats its name exactly."""
    summary = deletion_summary(target)
    if confirm_name != target.name:
        raise InputError(
            f"to delete {target.name!r}, repeat its name exactly as confirmation; this deletes "
            f"{summary.recordings} recordings ({summary.audio_hours:.1f} h), {summary.windows} windows, "
            f"{summary.annotations} labels, {summary.classifiers} classifiers and {summary.detections} detections"
        )
    deployment_ids = (
        [target.pk] if isinstance(target, Deployment) else list(target.deployments.values_list("pk", flat=True))
    )
    with transaction.atomic():
        _delete_windows(deployment_ids)
        target.delete()
        transaction.on_commit(lambda: _delete_uploads(deployment_ids))
    return summary


def _delete_windows(deployment_ids: list[int]) -> None:
    """Delete windows and what hangs on them in bulk: the ORM's cascade would first load
    every window (embedding included) into memory."""
    window_ids = (
        "SELECT w.id FROM annotations_window w JOIN annotations_recording r ON r.id = w.recording_id "
        "WHERE r.deployment_id = ANY(%s)"
    )
    with connection.cursor() as cursor:
        for model in (Detection, LabelChange, Annotation, Window):
            column = "id" if model is Window else "window_id"
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE {column} IN ({window_ids})", [deployment_ids])


def _delete_uploads(deployment_ids: list[int]) -> None:
    for deployment_id in deployment_ids:
        shutil.rmtree(Path(settings.MEDIA_ROOT) / "deployments" / str(deployment_id), ignore_errors=True)
