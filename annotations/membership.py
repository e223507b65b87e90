"""Who belongs to a project, and in which role."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import smtplib

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from annotations.errors import InputError
from annotations.models import Invitation, InvitationLink, Membership, Project, Role

log = logging.getLogger(__name__)

# An invitation link's life by default, and at most: long enough for a colleague on
# fieldwork to find it, short enough that a forwarded link goes stale.
INVITATION_LINK_DAYS = 7
MAX_INVITATION_LINK_DAYS = 30

# What each role may do, in a sentence, for the people choosing and accepting one.
ROLE_EXPLAINED = {
    Role.ADMIN: "admins manage deployments, members and labels, and do all annotators do.",
    Role.ANNOTATOR: "annotators search, label, train, run classifiers and export.",
    Role.VIEWER: "viewers read everything and change nothing.",
}


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


@dataclasses.dataclass(frozen=True)
class IssuedLink:
    """A new invitation link and its token, which exists only here: the database keeps its
    SHA-256, so the link can be shown (and mailed) once and never read back."""

    link: InvitationLink
    token: str
    mail_error: str = ""  # why the mail could not be sent, where one was asked for


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invitation_link(
    project: Project, role: str, created_by, email: str = "", valid_days: int = INVITATION_LINK_DAYS
) -> IssuedLink:
    """A one-time link to join ``project`` as ``role`` within ``valid_days`` days."""
    if role not in Role.values:
        raise InputError(f"role must be one of {', '.join(Role.values)}")
    if not 1 <= valid_days <= MAX_INVITATION_LINK_DAYS:
        raise InputError(f"a link lasts 1 to {MAX_INVITATION_LINK_DAYS} days, not {valid_days}")
    token = secrets.token_urlsafe(32)
    link = InvitationLink.objects.create(
        project=project,
        role=role,
        token_sha256=_digest(token),
        email=email.strip(),
        created_by=created_by,
        expires_at=timezone.now() + dt.timedelta(days=valid_days),
    )
    return IssuedLink(link, token)


def mail_invitation_link(issued: IssuedLink, url: str) -> IssuedLink:
    """Mail ``url`` to the link's address; on failure the link still works and the answer
    says why the mail did not go, so that the admin copies the link instead."""
    link = issued.link
    if not link.email:
        return issued
    inviter = link.created_by.username if link.created_by else "An admin"
    body = (
        f"{inviter} invites you to the project {link.project.name} on Perch Agile as {link.get_role_display()}.\n\n"
        f"Open this link to join (and create an account if you have none): {url}\n\n"
        f"It works once, until {link.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    try:
        send_mail(f"Join {link.project.name} on Perch Agile", body, None, [link.email])
    except (smtplib.SMTPException, OSError) as error:
        log.warning("invitation mail to %s not sent: %s", link.email, error)
        return dataclasses.replace(issued, mail_error=f"the mail to {link.email} could not be sent ({error})")
    return issued


def open_invitation_links(project: Project):
    """The project's links that can still be used."""
    return project.invitation_links.filter(used_at__isnull=True, expires_at__gt=timezone.now()).select_related(
        "created_by"
    )


def usable_invitation_link(token: str, lock: bool = False) -> InvitationLink:
    """The link of ``token`` if it can still be used, else a clear refusal."""
    links = InvitationLink.objects.select_related("project")
    link = (links.select_for_update() if lock else links).filter(token_sha256=_digest(token)).first()
    if link is None:
        raise InputError("this invitation link is not valid: it may have been withdrawn; ask for a new one")
    if link.used_at is not None:
        raise InputError("this invitation link was already used: each link lets one person in; ask for a new one")
    if link.expires_at <= timezone.now():
        raise InputError(f"this invitation link expired on {link.expires_at:%Y-%m-%d}; ask for a new one")
    return link


def join_with_link(token: str, user) -> Membership:
    """``user`` joins the link's project in its role; the link is used up."""
    with transaction.atomic():
        link = usable_invitation_link(token, lock=True)
        if link.project.memberships.filter(user=user).exists():
            raise InputError(f"you are already a member of {link.project.name}: the link stays unused")
        return _use(link, user)


def sign_up_with_link(token: str, username: str, password: str, password_again: str):
    """A new account that joins the link's project: the way in for someone with no
    account, checked by Django's user name and password rules."""
    user_model = get_user_model()
    username = username.strip()
    if not username:
        raise InputError("choose a user name")
    if password != password_again:
        raise InputError("the two passwords differ")
    try:
        user_model.username_validator(username)
    except ValidationError as error:
        raise InputError(" ".join(error.messages)) from None
    with transaction.atomic():
        link = usable_invitation_link(token, lock=True)
        if user_model.objects.filter(username__iexact=username).exists():
            raise InputError(f"the user name {username!r} is taken: choose another, or log in if it is yours")
        user = user_model(username=username, email=link.email)
        try:
            validate_password(password, user)
        except ValidationError as error:
            raise InputError(" ".join(error.messages)) from None
        user.set_password(password)
        user.save()
        _use(link, user)
    return user


def _use(link: InvitationLink, user) -> Membership:
    membership = Membership.objects.create(project=link.project, user=user, role=link.role)
    # An invitation by name for the same person is answered too.
    Invitation.objects.filter(project=link.project, username=user.username).delete()
    link.used_by, link.used_at = user, timezone.now()
    link.save(update_fields=["used_by", "used_at"])
    return membership
