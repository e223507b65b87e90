"""A project's label vocabulary, each label with the key that makes it the active one.

The labeling pages' own keys (``PAGE_KEYS``, also in ``frontend/static/frontend/app.js``)
can never be a label's shortcut, or a key would mean two things.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from annotations.errors import InputError
from annotations.models import Label, Project

# j/k move, space plays, 1/2/3 label, u undoes, n marks the page negative, s slows,
# c adds context, m finds similar windows, a adds an example, x pushes away,
# +/=/- brighten or darken the spectrograms, [/] zoom a recording's spectrogram, ? helps.
PAGE_KEYS = frozenset("jk0123456789unscmax?+=-[] ")
# Handed out in this order to labels created without a shortcut of their own.
FREE_KEYS = "qwertyiopdfghlzvb"


def next_free_shortcut(project: Project) -> str:
    """The first of FREE_KEYS that no label of the project uses, or "" when all are taken."""
    used = set(project.labels.values_list("shortcut", flat=True))
    return next((key for key in FREE_KEYS if key not in used), "")


def _checked_shortcut(project: Project, shortcut: str, label: Label | None = None) -> str:
    shortcut = shortcut.strip().lower()
    if not shortcut:
        return ""
    if len(shortcut) != 1 or not shortcut.isprintable():
        raise InputError("a shortcut is a single key")
    if shortcut in PAGE_KEYS:
        raise InputError(f"{shortcut!r} is a key of the labeling pages; choose another, e.g. one of {FREE_KEYS}")
    clash = project.labels.filter(shortcut=shortcut).exclude(pk=label.pk if label else None).first()
    if clash is not None:
        raise InputError(f"{shortcut!r} is already the shortcut of label {clash.name!r}")
    return shortcut


def _checked_name(project: Project, name: str, label: Label | None = None) -> str:
    name = name.strip()
    if not name:
        raise InputError("a label needs a name")
    if project.labels.filter(name=name).exclude(pk=label.pk if label else None).exists():
        raise InputError(f"label {name!r} already exists in this project")
    return name


def add_label(
    project: Project, name: str, description: str = "", shortcut: str = "", position: int | None = None
) -> Label:
    """A new label, by default last in the vocabulary's order; without a shortcut it gets
    the next free one."""
    with transaction.atomic():
        name = _checked_name(project, name)
        shortcut = _checked_shortcut(project, shortcut) or next_free_shortcut(project)
        if position is None:
            last = project.labels.aggregate(last=Max("position"))["last"]
            position = 0 if last is None else last + 1
        return Label.objects.create(
            project=project, name=name, description=description, shortcut=shortcut, position=position
        )


def update_label(
    label: Label,
    name: str | None = None,
    description: str | None = None,
    shortcut: str | None = None,
    position: int | None = None,
):
    """Rename a label, change its description or shortcut ("" removes the shortcut), or
    move it in the vocabulary's order (labels of one position are in name order)."""
    if name is not None:
        label.name = _checked_name(label.project, name, label)
    if description is not None:
        label.description = description
    if shortcut is not None:
        label.shortcut = _checked_shortcut(label.project, shortcut, label)
    if position is not None:
        label.position = position
    label.save()
    return label
