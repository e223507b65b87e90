"""Tables people upload (label tables, deployment metadata): their text, or a clear refusal."""

from __future__ import annotations

from django.core.files.uploadedfile import UploadedFile

from annotations.errors import InputError


def read_text_table(upload: UploadedFile, max_bytes: int, what: str) -> str:
    """The UTF-8 text of an uploaded table of at most ``max_bytes``; the byte-order mark
    spreadsheets write is dropped. ``what`` names the table in the refusal."""
    if upload.size > max_bytes:
        raise InputError(f"{what} must be under {max_bytes // (1024 * 1024)} MB")
    try:
        return upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("the table is not UTF-8 text") from None
