"""Labels given to windows: one value per (window, label, annotator), saved at once, with
every change kept in the audit trail (``LabelChange``) in the same transaction."""

from __future__ import annotations

from django.db import transaction

from annotations.errors import InputError
from annotations.models import Annotation, Label, LabelChange, Project, Window


def set_label(project: Project, user, window_id: int, label_id: int, value: str) -> Annotation:
    """Give (or change) ``user``'s value for a label on a window of ``project``."""
    if not Window.objects.filter(pk=window_id, recording__deployment__project=project).exists():
        raise InputError(f"window {window_id} is not part of this project")
    if not Label.objects.filter(pk=label_id, project=project).exists():
        raise InputError(f"label {label_id} is not in this project's vocabulary")
    with transaction.atomic():
        annotation, created = Annotation.objects.select_for_update().get_or_create(
            window_id=window_id, label_id=label_id, annotator=user, defaults={"value": value}
        )
        old_value = "" if created else annotation.value
        if old_value != value:
            annotation.value = value
            annotation.save(update_fields=["value", "updated_at"])
            LabelChange.objects.create(
                window_id=window_id, label_id=label_id, annotator=user, old_value=old_value, new_value=value
            )
    return annotation


def clear_label(project: Project, user, window_id: int, label_id: int) -> bool:
    """Remove ``user``'s value (undo). Returns whether there was one."""
    with transaction.atomic():
        annotation = (
            Annotation.objects.select_for_update()
            .filter(window_id=window_id, label_id=label_id, annotator=user, label__project=project)
            .first()
        )
        if annotation is None:
            return False
        LabelChange.objects.create(
            window_id=window_id, label_id=label_id, annotator=user, old_value=annotation.value, new_value=""
        )
        annotation.delete()
    return True


def label_history(project: Project, window_id: int):
    """A window's label changes, newest first."""
    return LabelChange.objects.filter(window_id=window_id, label__project=project).select_related("label", "annotator")
