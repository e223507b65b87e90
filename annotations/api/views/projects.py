"""Projects, their members and invitations, and their vocabularies."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import deployments, membership, vocabulary
from annotations.access import Action, visible_projects
from annotations.api import serializers as s
from annotations.api.views.base import CONFIRM, ERRORS, ProjectView, validated
from annotations.errors import InputError
from annotations.models import Classifier, Invitation, InvitationLink, Label, Membership, Role


class ProjectListView(APIView):
    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        return Response(s.ProjectSerializer(visible_projects(request.user), many=True).data)

    @extend_schema(request=s.ProjectSerializer, responses={201: s.ProjectSerializer, **ERRORS})
    def post(self, request):
        data = validated(s.ProjectSerializer, request.data)
        project = deployments.create_project(request.user, data["name"], data.get("description", ""), data["labels"])
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.ProjectSerializer, **ERRORS})
    def get(self, request, project_id):
        return Response(s.ProjectSerializer(self.project).data)

    @extend_schema(request=s.ProjectSerializer, responses={200: s.ProjectSerializer, **ERRORS})
    def patch(self, request, project_id):
        """Change the name, description, or whether the labels are exclusive."""
        serializer = s.ProjectSerializer(self.project, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if k in ("name", "description", "exclusive_labels")}
        return Response(s.ProjectSerializer(deployments.update_project(self.project, **data)).data)

    @extend_schema(parameters=[CONFIRM], responses={200: s.DeletionSummarySerializer, **ERRORS})
    def delete(self, request, project_id):
        summary = deployments.delete_with_confirmation(self.project, request.query_params.get("confirm", ""))
        return Response(s.DeletionSummarySerializer(summary).data)


class MemberListView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.MemberSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.MemberSerializer(self.project.memberships.select_related("user"), many=True).data)

    @extend_schema(request=s.MemberSerializer, responses={202: s.InvitationSerializer, **ERRORS})
    def post(self, request, project_id):
        """Invite a user name: it becomes a member on accepting. Known and unknown names
        get the same answer."""
        data = validated(s.MemberSerializer, request.data)
        invitation = membership.invite(
            self.project, data["user"]["username"], data.get("role", Role.ANNOTATOR), request.user
        )
        return Response(s.InvitationSerializer(invitation).data, status=status.HTTP_202_ACCEPTED)


class ProjectInvitationListView(ProjectView):
    """The project's open invitations (admins)."""

    read_action = Action.MANAGE

    @extend_schema(responses={200: s.InvitationSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.InvitationSerializer(self.project.invitations.all(), many=True).data)


class ProjectInvitationDetailView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id, invitation_id):
        """Withdraw an invitation not yet answered."""
        get_object_or_404(Invitation, pk=invitation_id, project=self.project).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProjectInvitationLinkListView(ProjectView):
    """One-time links that let a new collaborator join in a role, creating an account if
    they have none (admins)."""

    read_action = write_action = Action.MANAGE

    @extend_schema(responses={200: s.InvitationLinkSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        """The links not yet used or expired (their addresses are not kept)."""
        return Response(s.InvitationLinkSerializer(membership.open_invitation_links(self.project), many=True).data)

    @extend_schema(
        request=s.InvitationLinkRequestSerializer, responses={201: s.IssuedInvitationLinkSerializer, **ERRORS}
    )
    def post(self, request, project_id):
        """A new link, shown in this answer only; mailed too where an email is given and
        the server can send mail (``mail_error`` says why not)."""
        data = validated(s.InvitationLinkRequestSerializer, request.data)
        issued = membership.create_invitation_link(
            self.project, data["role"], request.user, data.get("email", ""), data["valid_days"]
        )
        url = request.build_absolute_uri(reverse("frontend:join", args=[issued.token]))
        issued = membership.mail_invitation_link(issued, url)
        answer = {
            **s.InvitationLinkSerializer(issued.link).data,
            "url": url,
            "mail_sent": bool(issued.link.email) and not issued.mail_error,
            "mail_error": issued.mail_error,
        }
        return Response(answer, status=status.HTTP_201_CREATED)


class ProjectInvitationLinkDetailView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id, link_id):
        """Withdraw a link: it stops working at once."""
        get_object_or_404(InvitationLink, pk=link_id, project=self.project).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyInvitationListView(APIView):
    @extend_schema(responses={200: s.InvitationSerializer(many=True)})
    def get(self, request):
        """The invitations waiting for you."""
        return Response(s.InvitationSerializer(membership.invitations_for(request.user), many=True).data)


class MyInvitationDetailView(APIView):
    @extend_schema(request=s.InvitationAnswerSerializer, responses={200: s.InvitationAnswerSerializer, **ERRORS})
    def post(self, request, invitation_id):
        """Accept or decline an invitation of yours."""
        answer = validated(s.InvitationAnswerSerializer, request.data)
        invitation = get_object_or_404(membership.invitations_for(request.user), pk=invitation_id)
        membership.answer_invitation(invitation, request.user, answer["accept"])
        return Response(answer)


class MemberDetailView(ProjectView):
    write_action = Action.MANAGE

    def _member(self, member_id) -> Membership:
        return get_object_or_404(Membership.objects.select_related("user"), pk=member_id, project=self.project)

    @extend_schema(request=s.RoleSerializer, responses={200: s.MemberSerializer, **ERRORS})
    def patch(self, request, project_id, member_id):
        member = membership.change_role(self._member(member_id), validated(s.RoleSerializer, request.data)["role"])
        return Response(s.MemberSerializer(member).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id, member_id):
        membership.remove_member(self._member(member_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class LabelListView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.LabelSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.LabelSerializer(self.project.labels.all(), many=True).data)

    @extend_schema(request=s.LabelSerializer, responses={201: s.LabelSerializer, **ERRORS})
    def post(self, request, project_id):
        data = validated(s.LabelSerializer, request.data)
        label = vocabulary.add_label(self.project, **data)
        return Response(s.LabelSerializer(label).data, status=status.HTTP_201_CREATED)


class LabelDetailView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(request=s.LabelSerializer, responses={200: s.LabelSerializer, **ERRORS})
    def patch(self, request, project_id, label_id):
        label = get_object_or_404(Label, pk=label_id, project=self.project)
        serializer = s.LabelSerializer(label, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        vocabulary.update_label(label, **serializer.validated_data)
        return Response(s.LabelSerializer(label).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id, label_id):
        label = get_object_or_404(Label, pk=label_id, project=self.project)
        used = label.annotations.count()
        if used:
            raise InputError(f"label {label.name!r} is on {used} windows; it cannot be deleted (rename it instead)")
        if Classifier.objects.filter(outputs__label=label).exists():
            raise InputError(f"label {label.name!r} belongs to trained classifiers; it cannot be deleted")
        label.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
