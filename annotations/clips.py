"""Example clips' files: stored under ``MEDIA_ROOT/clip_queries``, owned by their project.

An uploaded clip's file goes when the clip or its project is deleted, and after some
days (``purge_old_clip_files``: its embedding stays, so searches with it still run).
Each user keeps at most ``PERCH_AGILE_CLIP_QUOTA_BYTES`` of clip files. A region of a
recording has no file of its own: its audio is the recording's, never deleted here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from annotations.access import role_in
from annotations.errors import InputError
from annotations.models import ClipQuery, Project, Role


def clip_folder() -> Path:
    return Path(settings.MEDIA_ROOT) / "clip_queries"


def _stored_files(clips: QuerySet[ClipQuery]) -> list[Path]:
    """The files the app stored for ``clips`` (uploads, not regions of recordings)."""
    folder = clip_folder()
    paths = clips.filter(recording__isnull=True).exclude(path="").values_list("path", flat=True)
    return [Path(path) for path in paths if folder in Path(path).parents]


def _unlink_on_commit(paths: list[Path]) -> None:
    transaction.on_commit(lambda: [path.unlink(missing_ok=True) for path in paths])


def check_quota(user, size_bytes: int) -> None:
    """Refuse a clip of ``size_bytes`` that would take ``user`` over their quota."""
    quota = settings.PERCH_AGILE_CLIP_QUOTA_BYTES
    stored = _stored_files(ClipQuery.objects.filter(created_by=user))
    used = sum(path.stat().st_size for path in stored if path.exists())
    if used + size_bytes > quota:
        raise InputError(
            f"your example clips take {used / 1e6:.1f} MB of your {quota / 1e6:.1f} MB; this one "
            f"({size_bytes / 1e6:.1f} MB) does not fit. Delete clips you no longer need, or trim this one"
        )


def delete_clip(project: Project, user, clip_id: int) -> None:
    """Delete a clip and its file: one's own, or any as the project's admin."""
    clip = get_object_or_404(ClipQuery, pk=clip_id, project=project)
    if clip.created_by_id != user.pk and role_in(project, user) != Role.ADMIN:
        raise PermissionDenied("only its uploader or a project admin may delete a clip")
    delete_clips(ClipQuery.objects.filter(pk=clip.pk))


def delete_clips(clips: QuerySet[ClipQuery]) -> None:
    """Delete ``clips`` with their files (once the transaction commits)."""
    with transaction.atomic():
        _unlink_on_commit(_stored_files(clips))
        clips.delete()


def purge_old_clip_files(older_than: dt.timedelta) -> int:
    """Delete the files of clips uploaded more than ``older_than`` ago; returns how many."""
    old = ClipQuery.objects.filter(created_at__lt=timezone.now() - older_than)
    with transaction.atomic():
        paths = _stored_files(old)
        old.filter(path__in=[str(path) for path in paths]).update(path="")
        _unlink_on_commit(paths)
    return len(paths)
