"""Resumable browser uploads of large audio files, chunk by chunk.

A browser cannot send a multi-GB file in one request and hope nothing breaks on the way,
so it opens an ``UploadSession`` and appends chunks at the offset the server confirms.
The session records what arrived: after an interruption (network, page reload, server
restart) the client asks again and continues from there. Chunks are streamed to disk
through a small buffer; nothing holds a whole chunk, let alone a file, in memory.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path
from typing import BinaryIO

from django.db import transaction
from django.db.models import QuerySet
from django.http import UnreadablePostError
from django.utils import timezone

from annotations import deployments
from annotations.errors import InputError
from annotations.models import Deployment, UploadSession

MAX_CHUNK_BYTES = 16 * 1024**2  # per request; the browser sends 8 MiB
BUFFER_BYTES = 1024**2


class OffsetMismatch(InputError):
    """A chunk that does not continue the file where it stopped; the client should resume
    at ``session.received_bytes`` (the API answers 409 with the session's state)."""

    def __init__(self, session: UploadSession, offset: int):
        self.session = session
        if session.recording_id:
            message = f"{session.filename} is already complete"
        else:
            message = f"{session.filename}: this chunk starts at byte {offset}; resume at byte {session.received_bytes}"
        super().__init__(message)


def start_upload(deployment: Deployment, user, filename: str, size_bytes: int) -> UploadSession:
    """Open an upload of one file, or find the unfinished one of the same file.

    The same user uploading a file of the same name and size to the same deployment gets
    the existing session back, so a reloaded page continues from ``received_bytes``
    instead of sending gigabytes again.
    """
    if reason := deployments.name_and_size_rejection(filename, size_bytes):
        raise InputError(f"{filename}: {reason}")
    with transaction.atomic():
        session = (
            unfinished_uploads(deployment, user)
            .select_for_update()
            .filter(filename=filename, size_bytes=size_bytes)
            .last()
        )
        if session:
            _sync_received_bytes(session)
            return session
        _check_free_space(deployment, filename, size_bytes)
        session = UploadSession.objects.create(
            deployment=deployment, created_by=user, filename=filename, size_bytes=size_bytes
        )
        partial = deployments.upload_folder(deployment.pk) / ".partial" / str(session.pk)
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.touch()
        session.partial_path = str(partial)
        session.save(update_fields=["partial_path"])
    return session


def unfinished_uploads(deployment: Deployment, user) -> QuerySet[UploadSession]:
    """The user's uploads to ``deployment`` that have not become recordings yet."""
    return UploadSession.objects.filter(deployment=deployment, created_by=user, recording__isnull=True)


def append_chunk(
    session: UploadSession, offset: int, stream: BinaryIO, length: int, keep_duplicate: bool = False
) -> UploadSession:
    """Write ``length`` bytes read from ``stream`` at ``offset`` and return the new state;
    the last byte turns the file into a recording, unless the deployment already holds a
    recording of the same content (``file_fingerprint``) and ``keep_duplicate`` is false:
    then the file is refused and deleted, so its windows never come back twice in a search.

    ``offset`` must be where the file stopped (else ``OffsetMismatch``): a retried or
    duplicated chunk can never leave a gap or a doubled piece in the file. The row lock
    makes two concurrent requests for one session take turns. A chunk cut short (the
    client went away) keeps what arrived; the client resumes after it. The content is
    checked as soon as its first bytes are in, so a file that is not audio is refused
    (and deleted) after one chunk rather than after gigabytes.
    """
    if length <= 0:
        raise InputError("send the chunk's bytes as the request body, with its Content-Length")
    if length > MAX_CHUNK_BYTES:
        raise InputError(f"a chunk may be at most {MAX_CHUNK_BYTES // 1024**2} MiB; this one is {length} bytes")
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().select_related("deployment").get(pk=session.pk)
        _sync_received_bytes(session)
        if session.recording_id or offset != session.received_bytes:
            raise OffsetMismatch(session, offset)
        if offset + length > session.size_bytes:
            raise InputError(
                f"{session.filename}: this chunk ends at byte {offset + length}, "
                f"past the declared size of {session.size_bytes} bytes"
            )
        with open(session.partial_path, "ab") as out:
            _copy(stream, out, length)
        session.received_bytes = os.path.getsize(session.partial_path)
        head_complete = session.received_bytes >= min(deployments.SNIFF_BYTES, session.size_bytes)
        rejection = _content_rejection(session) if offset < deployments.SNIFF_BYTES and head_complete else ""
        if not rejection and session.received_bytes == session.size_bytes:
            fingerprint = deployments.file_fingerprint(Path(session.partial_path))
            rejection = "" if keep_duplicate else deployments.duplicate_rejection(session.deployment, fingerprint)
            if not rejection:
                _make_recording(session, fingerprint)
        if rejection:
            session.delete()
            Path(session.partial_path).unlink(missing_ok=True)
        else:
            session.save()
    if rejection:
        # Raised after the commit, which deletes the session for good.
        raise InputError(f"{session.filename}: {rejection}")
    return session


def abandon_upload(session: UploadSession) -> None:
    """Forget an upload: what arrived of an unfinished one is deleted; a finished one's
    recording stays."""
    with transaction.atomic():
        session = UploadSession.objects.select_for_update().get(pk=session.pk)
        session.delete()
        if not session.recording_id:
            Path(session.partial_path).unlink(missing_ok=True)


def purge_abandoned_uploads(idle_for: dt.timedelta) -> int:
    """Delete unfinished uploads nobody has added to for ``idle_for`` (and their partial
    files), so that forgotten multi-GB halves do not fill the disk. Returns how many."""
    stale = UploadSession.objects.filter(recording__isnull=True, updated_at__lt=timezone.now() - idle_for)
    count = 0
    for session in stale:
        abandon_upload(session)
        count += 1
    return count


def _sync_received_bytes(session: UploadSession) -> None:
    """Make the row and the partial file agree on what arrived. Bytes past the row's count
    come from a request that died before it could record them: cut, the client sends them
    again. A shorter or missing file (deleted by hand) counts for what it holds."""
    if session.recording_id:
        return
    path = Path(session.partial_path)
    path.touch()
    session.received_bytes = min(session.received_bytes, path.stat().st_size)
    os.truncate(path, session.received_bytes)


def _check_free_space(deployment: Deployment, filename: str, size_bytes: int) -> None:
    """Refuse a file the disk cannot hold now, rather than failing gigabytes later."""
    folder = deployments.upload_folder(deployment.pk)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if size_bytes > free:
        raise InputError(f"{filename}: the server has {free / 1e9:.1f} GB free, too little for this file")


def _copy(stream: BinaryIO, out: BinaryIO, length: int) -> None:
    """Copy up to ``length`` bytes through a bounded buffer; stop early if the body ends."""
    remaining = length
    while remaining:
        try:
            piece = stream.read(min(remaining, BUFFER_BYTES))
        except UnreadablePostError:
            return  # the client went away; keep what arrived
        if not piece:
            return
        out.write(piece)
        remaining -= len(piece)


def _content_rejection(session: UploadSession) -> str:
    with open(session.partial_path, "rb") as file:
        return deployments.content_rejection(file.read(deployments.SNIFF_BYTES))


def _make_recording(session: UploadSession, fingerprint: str) -> None:
    """Move the complete file to its final name and register it as a recording."""
    target = deployments.claim_upload_path(session.deployment, session.filename)
    os.replace(session.partial_path, target)
    session.recording = deployments.register_upload(session.deployment, target, session.filename, fingerprint)
