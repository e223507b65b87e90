"""Who may see and do what in a project. Every view and API endpoint goes through here.

Someone who is not a member of a project gets 404 for it and everything in it (not
403: a stranger should not learn that the project exists). A member whose role does
not allow an action gets 403.
"""

from __future__ import annotations

import enum

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404

from annotations.models import Membership, Project, Role


class Action(enum.Enum):
    READ = (Role.VIEWER, Role.ANNOTATOR, Role.ADMIN)
    ANNOTATE = (Role.ANNOTATOR, Role.ADMIN)  # search, label, train, run, export
    MANAGE = (Role.ADMIN,)  # deployments, members, vocabulary, deletion


def visible_projects(user) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    if user.is_superuser:
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user)


def role_in(project: Project, user) -> str | None:
    if user.is_superuser:
        return Role.ADMIN
    membership = Membership.objects.filter(project=project, user=user).first()
    return membership.role if membership else None


def project_for(user, project_id, action: Action = Action.READ) -> Project:
    """The project, if ``user`` may do ``action`` in it; else Http404 or PermissionDenied."""
    try:
        project = visible_projects(user).get(pk=int(project_id))
    except (Project.DoesNotExist, ValueError, TypeError):
        raise Http404("No such project.") from None
    if role_in(project, user) not in action.value:
        raise PermissionDenied(f"Your role in this project does not allow this ({action.name.lower()}).")
    return project
