"""Projects, deployments and their recordings: creating them, adding audio, progress."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, Q, Sum

from annotations.errors import InputError
from annotations.models import Deployment, Label, Membership, Project, Recording, RecordingStatus, Role, Window

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
            )
        )
    return Recording.objects.bulk_create(new)


def safe_filename(name: str) -> str:
    """A file name that cannot climb out of its folder or confuse a shell."""
    base = Path(name.replace("\\", "/")).name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "audio"
    return cleaned[:200]


def add_uploaded_files(deployment: Deployment, files: list[UploadedFile]) -> list[Recording]:
    """Store uploads under MEDIA_ROOT (streamed in chunks) and register them as recordings."""
    if not files:
        raise InputError("No files were sent.")
    for upload in files:
        if Path(upload.name).suffix.lower() not in AUDIO_EXTENSIONS:
            raise InputError(
                f"{upload.name}: unsupported file type; expected one of {', '.join(sorted(AUDIO_EXTENSIONS))}."
            )
        if upload.size > settings.PERCH_AGILE_MAX_UPLOAD_BYTES:
            raise InputError(
                f"{upload.name} is {upload.size / 1e9:.1f} GB; the limit is "
                f"{settings.PERCH_AGILE_MAX_UPLOAD_BYTES / 1e9:.1f} GB per file."
            )
    folder = Path(settings.MEDIA_ROOT) / "deployments" / str(deployment.pk)
    folder.mkdir(parents=True, exist_ok=True)
    recordings = []
    for upload in files:
        target = _unused_path(folder, safe_filename(upload.name))
        with open(target, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        recordings.append(
            Recording.objects.create(
                deployment=deployment, path=str(target), filename=target.name, size_bytes=upload.size
            )
        )
    return recordings


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
    for recording_id in pending:
        transaction.on_commit(lambda rid=recording_id: ingest_recording.delay(rid))
    return len(pending)


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
    counts = deployment.recordings.aggregate(
        total=Count("id"),
        queued=Count("id", filter=Q(status=RecordingStatus.QUEUED)),
        embedding=Count("id", filter=Q(status=RecordingStatus.EMBEDDING)),
        done=Count("id", filter=Q(status=RecordingStatus.DONE)),
        failed=Count("id", filter=Q(status=RecordingStatus.FAILED)),
        seconds=Sum("duration_s", filter=Q(status=RecordingStatus.DONE)),
        in_progress=Sum("windows_done", filter=Q(status=RecordingStatus.EMBEDDING)),
        expected=Sum("windows_expected", filter=Q(status=RecordingStatus.EMBEDDING)),
    )
    return DeploymentProgress(
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
