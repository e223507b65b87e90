"""Labels given to windows: one value per (window, label, annotator), saved at once."""

from __future__ import annotations

from annotations.errors import InputError
from annotations.models import Annotation, Label, Project, Window


def set_label(project: Project, user, window_id: int, label_id: int, value: str) -> Annotation:
    """Give (or change) ``user``'s value for a label on a window of ``project``."""
    if not Window.objects.filter(pk=window_id, recording__deployment__project=project).exists():
        raise InputError(f"window {window_id} is not part of this project")
    if not Label.objects.filter(pk=label_id, project=project).exists():
        raise InputError(f"label {label_id} is not in this project's vocabulary")
    annotation, _ = Annotation.objects.update_or_create(
        window_id=window_id, label_id=label_id, annotator=user, defaults={"value": value}
    )
    return annotation


def clear_label(project: Project, user, window_id: int, label_id: int) -> bool:
    """Remove ``user``'s value (undo). Returns whether there was one."""
    deleted, _ = Annotation.objects.filter(
        window_id=window_id, label_id=label_id, annotator=user, window__recording__deployment__project=project
    ).delete()
    return bool(deleted)
