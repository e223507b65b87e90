"""Who belongs to a project, and in which role."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction

from annotations.errors import InputError
from annotations.models import Invitation, Membership, Project, Role


def invite(project: Project, username: str, role: str, invited_by) -> Invitation:
    """Offer ``role`` in ``project`` to ``username``, whether or not such an account exists
    (the answer is the same); inviting a name again changes the role offered."""
    username = username.strip()
    if not username:
        raise InputError("give the user name to invite")
    if project.memberships.filter(user__username=username).exists():
        raise InputError(f"{username} is already a member; change the role instead")
    invitation, _ = Invitation.objects.update_or_create(
        project=project, username=username, defaults={"role": role, "invited_by": invited_by}
    )
    return invitation


def invitations_for(user):
    """The invitations waiting for ``user``, with their projects."""
    return Invitation.objects.filter(username=user.username).select_related("project", "invited_by")


def answer_invitation(invitation: Invitation, user, accept: bool) -> Membership | None:
    """Accept (become a member in the offered role) or decline ``user``'s invitation."""
    if invitation.username != user.username:
        raise InputError("this invitation is for someone else")
    with transaction.atomic():
        membership = None
        if accept:
            membership, _ = Membership.objects.get_or_create(
                project=invitation.project, user=user, defaults={"role": invitation.role}
            )
        invitation.delete()
    return membership


def add_member(project: Project, username: str, role: str) -> Membership:
    """Make an existing account a member at once (site staff, the demo and tests)."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise InputError(f"there is no user {username!r}; site staff create accounts in the admin")
    membership, created = Membership.objects.get_or_create(project=project, user=user, defaults={"role": role})
    if not created:
        raise InputError(f"{username} is already a member ({membership.role}); change the role instead")
    return membership


def change_role(membership: Membership, role: str) -> Membership:
    with transaction.atomic():
        _keep_an_admin(membership, leaving=role != Role.ADMIN)
        membership.role = role
        membership.save(update_fields=["role"])
    return membership


def remove_member(membership: Membership) -> None:
    with transaction.atomic():
        _keep_an_admin(membership, leaving=True)
        membership.delete()


def _keep_an_admin(membership: Membership, leaving: bool) -> None:
    """A project must keep at least one admin, or nobody could manage it."""
    if not leaving or membership.role != Role.ADMIN:
        return
    admins = Membership.objects.select_for_update().filter(project=membership.project_id, role=Role.ADMIN)
    if admins.count() <= 1:
        raise InputError("a project needs at least one admin: make someone else admin first")
