"""Labels given to windows: one value per (window, label, annotator), saved at once, with
every change kept in the audit trail (``LabelChange``) in the same transaction."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from annotations.bands import checked_band
from annotations.errors import InputError
from annotations.models import Annotation, Label, LabelChange, LabelValue, Project, Window


def _check_in_project(project: Project, window_ids: list[int], label_id: int) -> None:
    """Refuse windows or a label of another project (or of none)."""
    found = set(
        Window.objects.filter(pk__in=window_ids, recording__deployment__project=project).values_list("pk", flat=True)
    )
    if missing := [w for w in window_ids if w not in found]:
        raise InputError(f"window {missing[0]} is not part of this project")
    if not Label.objects.filter(pk=label_id, project=project).exists():
        raise InputError(f"label {label_id} is not in this project's vocabulary")


# A label's band, (low, high) Hz, where it was given to a box; None for the whole window.
Band = tuple[float, float] | None


def set_label(project: Project, user, window_id: int, label_id: int, value: str, band_hz: Band = None) -> Annotation:
    """Give (or change) ``user``'s value for a label on a window of ``project``; with
    ``band_hz``, to a box on it: the band is kept with the label."""
    _check_in_project(project, [window_id], label_id)
    _write_values(user, [window_id], label_id, value, _checked_band([window_id], band_hz))
    return Annotation.objects.get(window_id=window_id, label_id=label_id, annotator=user)


def _checked_band(window_ids: list[int], band_hz: Band) -> Band:
    """``band_hz`` as ``bands.checked_band`` takes it, for the windows' recordings (the
    lowest of their sample rates)."""
    if band_hz is None:
        return None
    rates = Window.objects.filter(pk__in=window_ids).values_list("recording__sample_rate", flat=True)
    return checked_band(band_hz, min((rate for rate in rates if rate), default=None))


def set_labels(project: Project, user, window_ids: list[int], label_id: int, value: str) -> int:
    """Give one value for a label to many windows at once, in one transaction (e.g. "mark
    everything else on this page negative"). Returns how many labels changed."""
    window_ids = list(dict.fromkeys(window_ids))
    _check_in_project(project, window_ids, label_id)
    return _write_values(user, window_ids, label_id, value)


def _write_values(user, window_ids: list[int], label_id: int, value: str, band_hz: Band = None) -> int:
    """``set_labels`` once its windows and label are known to be the project's: the value,
    and the band (none: the whole window). The audit trail records changes of either."""
    low_hz, high_hz = band_hz or (None, None)
    with transaction.atomic():
        existing = {
            a.window_id: a
            for a in Annotation.objects.select_for_update().filter(
                window_id__in=window_ids, label_id=label_id, annotator=user
            )
        }
        changed = [
            w
            for w in window_ids
            if w not in existing
            or (existing[w].value, existing[w].low_hz, existing[w].high_hz) != (value, low_hz, high_hz)
        ]
        # update() skips auto_now: updated_at is set here, as save() would.
        Annotation.objects.filter(pk__in=[existing[w].pk for w in changed if w in existing]).update(
            value=value, low_hz=low_hz, high_hz=high_hz, updated_at=timezone.now()
        )
        Annotation.objects.bulk_create(
            Annotation(window_id=w, label_id=label_id, annotator=user, value=value, low_hz=low_hz, high_hz=high_hz)
            for w in changed
            if w not in existing
        )
        LabelChange.objects.bulk_create(
            LabelChange(
                window_id=w,
                label_id=label_id,
                annotator=user,
                old_value=existing[w].value if w in existing else "",
                old_low_hz=existing[w].low_hz if w in existing else None,
                old_high_hz=existing[w].high_hz if w in existing else None,
                new_value=value,
                new_low_hz=low_hz,
                new_high_hz=high_hz,
            )
            for w in changed
        )
    return len(changed)


def _removal(annotation: Annotation, user) -> LabelChange:
    """The audit trail's entry for ``user`` removing ``annotation``."""
    return LabelChange(
        window_id=annotation.window_id,
        label_id=annotation.label_id,
        annotator=user,
        old_value=annotation.value,
        old_low_hz=annotation.low_hz,
        old_high_hz=annotation.high_hz,
        new_value="",
    )


def restore_labels(project: Project, user, label_id: int, previous: dict[int, tuple[str, Band] | None]) -> int:
    """Put ``user``'s labels for ``label_id`` back to ``previous`` ({window_id: (value,
    band), or None for no label}) in one transaction: the undo of a label or of a
    page-wide action. Returns how many labels changed."""
    window_ids = list(previous)
    _check_in_project(project, window_ids, label_id)
    with transaction.atomic():
        changed = 0
        for value, band in {v for v in previous.values() if v is not None}:
            windows = [w for w, v in previous.items() if v == (value, band)]
            changed += _write_values(user, windows, label_id, value, _checked_band(windows, band))
        removed = list(
            Annotation.objects.select_for_update().filter(
                window_id__in=[w for w, v in previous.items() if v is None], label_id=label_id, annotator=user
            )
        )
        LabelChange.objects.bulk_create(_removal(a, user) for a in removed)
        Annotation.objects.filter(pk__in=[a.pk for a in removed]).delete()
    return changed + len(removed)


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
        _removal(annotation, user).save()
        annotation.delete()
    return True


def labels_by_window(window_ids: list[int]) -> dict[int, list[dict]]:
    """Every annotator's labels on the windows: {window_id: [{label_id, label, value, annotator}]}."""
    labels: dict[int, list[dict]] = {}
    for annotation in Annotation.objects.filter(window_id__in=window_ids).select_related("label", "annotator"):
        labels.setdefault(annotation.window_id, []).append(
            {
                "label_id": annotation.label_id,
                "label": annotation.label.name,
                "value": annotation.value,
                "annotator": annotation.annotator.username,
                "low_hz": annotation.low_hz,
                "high_hz": annotation.high_hz,
            }
        )
    return labels


def label_history(project: Project, window_id: int):
    """A window's label changes, newest first."""
    return LabelChange.objects.filter(window_id=window_id, label__project=project).select_related("label", "annotator")


def labeled_window_ids(
    label: Label, annotator_id: int | None = None, value: str = "", conflicts_only: bool = False
) -> list[int]:
    """Windows labeled for ``label`` (by one annotator, with one value, or where annotators
    disagree), most recently labeled first."""
    annotations = Annotation.objects.filter(label=label)
    if annotator_id is not None:
        annotations = annotations.filter(annotator_id=annotator_id)
    if value:
        annotations = annotations.filter(value=value)
    if conflicts_only:
        annotations = annotations.filter(window_id__in=conflicting_window_ids(label))
    latest = annotations.order_by("window_id", "-updated_at").distinct("window_id").values("window_id", "updated_at")
    return [row["window_id"] for row in sorted(latest, key=lambda row: row["updated_at"], reverse=True)]


def conflicting_window_ids(label: Label):
    """A query of the windows one annotator marked positive and another negative for ``label``."""
    return (
        Annotation.objects.filter(label=label, value__in=[LabelValue.POSITIVE, LabelValue.NEGATIVE])
        .values("window_id")
        .annotate(values=Count("value", distinct=True))
        .filter(values=2)
        .values("window_id")
    )


def resolve_conflict(project: Project, user, window_id: int, label_id: int, value: str) -> int:
    """Settle a disagreement: ``user``'s value becomes ``value`` and every other annotator's
    differing label on the window is removed (each change in the audit trail, by ``user``).
    Returns how many labels were removed."""
    with transaction.atomic():
        set_label(project, user, window_id, label_id, value)
        others = list(
            Annotation.objects.select_for_update()
            .filter(window_id=window_id, label_id=label_id)
            .exclude(annotator=user)
            .exclude(value=value)
        )
        LabelChange.objects.bulk_create(_removal(a, user) for a in others)
        Annotation.objects.filter(pk__in=[a.pk for a in others]).delete()
    return len(others)


def label_counts(project: Project):
    """The project's labels, each with ``positives``, ``negatives`` and ``unsure``: how many
    windows carry each value (from any annotator), to see when there is enough to train."""
    values = {"positives": LabelValue.POSITIVE, "negatives": LabelValue.NEGATIVE, "unsure": LabelValue.UNSURE}
    return project.labels.annotate(
        **{
            name: Count("annotations__window", filter=Q(annotations__value=value), distinct=True)
            for name, value in values.items()
        }
    )
