"""REST API. Every view resolves its project through ``annotations.access`` first, so
objects of projects the user is not a member of answer 404."""

from __future__ import annotations

import dataclasses
import json
import zoneinfo

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import (
    call_density,
    clips,
    deployment_metadata,
    deployments,
    detection_filters,
    detections,
    exports,
    hoplite_exchange,
    label_import,
    labeling,
    membership,
    predictions,
    review_queues,
    scoring,
    search,
    spectrograms,
    training,
    vocabulary,
)
from annotations.access import Action, project_for, visible_projects
from annotations.api import serializers as s
from annotations.api.parsers import BoundedJSONParser
from annotations.errors import InputError
from annotations.models import (
    Annotation,
    Classifier,
    ClipQuery,
    Deployment,
    HopliteExport,
    HopliteImport,
    ImportStatus,
    InferenceRun,
    Invitation,
    InvitationLink,
    Label,
    LabelImport,
    Membership,
    Recording,
    Role,
    TaskStatus,
    Window,
)
from annotations.playback import window_wav
from annotations.search_index import index_summaries
from annotations.text_uploads import read_text_table
from perch_agile.headers import API_DOCS_CONTENT_SECURITY_POLICY
from perch_agile.params import seconds, whole_number

ERRORS = {400: s.ErrorSerializer, 403: s.ErrorSerializer, 404: s.ErrorSerializer}
CONFIRM = OpenApiParameter("confirm", str, description="the exact name of what is deleted, as confirmation")


class TokenView(ObtainAuthToken):
    """Exchange a user name and password for an API token (limited by perch_agile.login_limits)."""


class ProjectListView(APIView):
    @extend_schema(responses=s.ProjectSerializer(many=True))
    def get(self, request):
        return Response(s.ProjectSerializer(visible_projects(request.user), many=True).data)

    @extend_schema(request=s.ProjectSerializer, responses={201: s.ProjectSerializer, **ERRORS})
    def post(self, request):
        data = _valid(s.ProjectSerializer, request.data)
        project = deployments.create_project(request.user, data["name"], data.get("description", ""), data["labels"])
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectView(APIView):
    """Base for everything inside a project: ``self.project`` is resolved and checked.

    Reads need ``read_action`` (any role by default); writes need ``write_action``
    (annotator by default).
    """

    read_action = Action.READ
    write_action = Action.ANNOTATE

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        action = self.read_action if request.method in ("GET", "HEAD", "OPTIONS") else self.write_action
        self.project = project_for(request.user, kwargs["project_id"], action)

    def recording(self, recording_id: int) -> Recording:
        """A recording of this project, with its deployment; 404 otherwise."""
        return get_object_or_404(
            Recording.objects.select_related("deployment"), pk=recording_id, deployment__project=self.project
        )

    def window(self, window_id: int) -> Window:
        """A window of this project, with its recording and deployment; 404 otherwise."""
        return get_object_or_404(
            Window.objects.defer("embedding").select_related("recording__deployment"),
            pk=window_id,
            recording__deployment__project=self.project,
        )


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _as_attachment(response: HttpResponse, name: str) -> HttpResponse:
    """Make the browser save the response as a file of this (sanitised) name."""
    response["Content-Disposition"] = f'attachment; filename="{deployments.safe_filename(name)}"'
    return response


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
        data = _valid(s.MemberSerializer, request.data)
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
        data = _valid(s.InvitationLinkRequestSerializer, request.data)
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
        answer = _valid(s.InvitationAnswerSerializer, request.data)
        invitation = get_object_or_404(membership.invitations_for(request.user), pk=invitation_id)
        membership.answer_invitation(invitation, request.user, answer["accept"])
        return Response(answer)


class MemberDetailView(ProjectView):
    write_action = Action.MANAGE

    def _member(self, member_id) -> Membership:
        return get_object_or_404(Membership.objects.select_related("user"), pk=member_id, project=self.project)

    @extend_schema(request=s.RoleSerializer, responses={200: s.MemberSerializer, **ERRORS})
    def patch(self, request, project_id, member_id):
        member = membership.change_role(self._member(member_id), _valid(s.RoleSerializer, request.data)["role"])
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
        data = _valid(s.LabelSerializer, request.data)
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


class DeploymentListView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.DeploymentSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.DeploymentSerializer(self.project.deployments.all(), many=True).data)

    @extend_schema(request=s.DeploymentSerializer, responses={201: s.DeploymentDetailSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.DeploymentSerializer, request.data)
        deployment = deployments.create_deployment(self.project, **data)
        return Response(_deployment_data(deployment), status=status.HTTP_201_CREATED)


def _deployment_data(deployment: Deployment) -> dict:
    progress = deployments.deployment_progress(deployment)
    data = dict(s.DeploymentSerializer(deployment).data)
    data["progress"] = s.ProgressSerializer(progress).data
    data["start_time_warnings"] = deployments.start_time_problems(deployment)
    data["search_indexes"] = s.SearchIndexSerializer(index_summaries(deployment.project), many=True).data
    return data


class DeploymentDetailView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.DeploymentDetailSerializer, **ERRORS})
    def get(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response(_deployment_data(deployment))

    @extend_schema(request=s.DeploymentSerializer, responses={200: s.DeploymentDetailSerializer, **ERRORS})
    def patch(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        serializer = s.DeploymentSerializer(deployment, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if (folder := data.pop("server_folder", deployment.server_folder)) != deployment.server_folder:
            deployments.move_server_folder(deployment, folder)
        deployments.update_deployment(deployment, **data)
        return Response(_deployment_data(deployment))

    @extend_schema(parameters=[CONFIRM], responses={200: s.DeletionSummarySerializer, **ERRORS})
    def delete(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        summary = deployments.delete_with_confirmation(deployment, request.query_params.get("confirm", ""))
        return Response(s.DeletionSummarySerializer(summary).data)


class DeploymentMetadataImportView(ProjectView):
    """Create or update deployments from a CSV table (see annotations.deployment_metadata)."""

    write_action = Action.MANAGE
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": inline_serializer("MetadataTable", {"file": drf_serializers.FileField()})},
        responses={200: s.MetadataImportSerializer, **ERRORS},
    )
    def post(self, request, project_id):
        upload = request.FILES.get("file")
        if upload is None:
            raise InputError("send the table as the multipart field 'file'")
        text = read_text_table(upload, deployment_metadata.MAX_BYTES, "a metadata table")
        result = deployment_metadata.import_deployment_metadata(self.project, text)
        return Response(s.MetadataImportSerializer(result).data)


def _too_large(request) -> Response | None:
    """A 413 for a request over the server's limit, refused before Django reads (and spools) any of it."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length <= settings.PERCH_AGILE_MAX_REQUEST_BYTES:
        return None
    limit_gb = settings.PERCH_AGILE_MAX_REQUEST_BYTES / 1e9
    return Response(
        {"error": f"this upload is {length / 1e9:.1f} GB; send at most {limit_gb:.1f} GB per request"},
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


KEEP_DUPLICATE = OpenApiParameter(
    "keep_duplicate", int, enum=[0, 1], description="1 stores a file whose audio the deployment already holds"
)


class DeploymentFilesView(ProjectView):
    write_action = Action.MANAGE
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "Upload", {"files": drf_serializers.ListField(child=drf_serializers.FileField())}
            )
        },
        parameters=[KEEP_DUPLICATE],
        responses={201: s.UploadResultSerializer, 400: s.UploadResultSerializer, 413: s.ErrorSerializer},
    )
    def post(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        if too_large := _too_large(request):
            return too_large
        keep = request.query_params.get("keep_duplicate") == "1"
        result = deployments.add_uploaded_files(deployment, request.FILES.getlist("files"), keep_duplicates=keep)
        body = {
            "recordings": s.RecordingSerializer(result.recordings, many=True).data,
            "rejected": [{"filename": name, "reason": reason} for name, reason in result.rejected],
        }
        if not result.recordings:
            body["error"] = "; ".join(f"{name}: {reason}" for name, reason in result.rejected)
        return Response(body, status=status.HTTP_201_CREATED if result.recordings else status.HTTP_400_BAD_REQUEST)


class DeploymentIngestView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(request=None, responses={202: s.QueuedSerializer, **ERRORS})
    def post(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response({"queued": deployments.queue_ingest(deployment)}, status=status.HTTP_202_ACCEPTED)


class DeploymentReembedView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(
        request=s.ReembedRequestSerializer, responses={200: s.ReembedSerializer, 202: s.ReembedSerializer, **ERRORS}
    )
    def post(self, request, project_id, deployment_id):
        """Embed the deployment again with windows every ``hop_s`` seconds. Without
        ``confirm``, only says what that would do to its windows, labels and detections."""
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        data = _valid(s.ReembedRequestSerializer, request.data)
        plan = deployments.reembed_plan(deployment, data["hop_s"])
        answer = {**dataclasses.asdict(plan), "message": plan.told, "queued": 0}
        if not data["confirm"]:
            return Response(answer)
        answer["queued"] = deployments.reembed(deployment, data["hop_s"])
        answer["message"] = f"{answer['queued']} recordings queued to be embedded every {data['hop_s']:g} s."
        return Response(answer, status=status.HTTP_202_ACCEPTED)


class RecordingListView(ProjectView):
    @extend_schema(responses={200: s.RecordingSerializer(many=True), **ERRORS})
    def get(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response(s.RecordingSerializer(deployment.recordings.all(), many=True).data)


class RecordingDetailView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.RecordingSerializer, **ERRORS})
    def get(self, request, project_id, recording_id):
        return Response(s.RecordingSerializer(self.recording(recording_id)).data)

    @extend_schema(request=s.RecordingStartSerializer, responses={200: s.RecordingSerializer, **ERRORS})
    def patch(self, request, project_id, recording_id):
        """Correct a recording's start time (its source becomes "edited")."""
        recording = self.recording(recording_id)
        # A time without a UTC offset is local time at the deployment's site.
        with timezone.override(zoneinfo.ZoneInfo(recording.deployment.timezone)):
            started_at = _valid(s.RecordingStartSerializer, request.data)["started_at"]
        deployments.edit_start_time(recording, started_at)
        return Response(s.RecordingSerializer(recording).data)


class WindowListView(ProjectView):
    @extend_schema(responses={200: s.WindowSerializer(many=True), **ERRORS})
    def get(self, request, project_id, recording_id):
        recording = self.recording(recording_id)
        windows = list(
            recording.windows.only(
                "start_s", "end_s", "model_id", "deployment_id", "started_at", "top_classes", "top_logits"
            )
        )
        named = predictions.named_predictions(windows)
        rows = [
            {"id": w.pk, "start_s": w.start_s, "end_s": w.end_s, "model_id": w.model_id, "predictions": named[w.pk]}
            for w in windows
        ]
        return Response(s.WindowSerializer(rows, many=True).data)


class WindowAudioView(ProjectView):
    @extend_schema(
        parameters=[OpenApiParameter("context", float, description="seconds of audio either side (0-10)")],
        responses={(200, "audio/wav"): OpenApiTypes.BINARY, **ERRORS},
    )
    def get(self, request, project_id, window_id):
        window = self.window(window_id)
        context_s = _optional_seconds(request.query_params.get("context"), "context") or 0.0
        return HttpResponse(window_wav(window, context_s), content_type="audio/wav")


class SearchView(ProjectView):
    write_action = Action.READ  # a POST for its body, but it changes nothing: viewers search too

    @extend_schema(request=s.SearchRequestSerializer, responses={200: s.SearchResultSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.SearchRequestSerializer, request.data)
        page = search.run_search(self.project, data["spec"], data["k"], data["offset"])
        return Response(
            {
                "model": str(page.model),
                "path": page.path,
                "rescued": page.rescued,
                "hits": s.SearchHitSerializer(page.hits, many=True).data,
            }
        )


def _optional_seconds(value, name: str) -> float | None:
    return None if value in (None, "") else seconds(value, name)


class RegionQueryView(ProjectView):
    @extend_schema(request=s.RegionQuerySerializer, responses={201: s.ClipQuerySerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.RegionQuerySerializer, request.data)
        clip = search.request_region_query(
            self.project, request.user, data["recording_id"], data["start_s"], data["end_s"]
        )
        return Response(s.ClipQuerySerializer(clip).data, status=status.HTTP_201_CREATED)


SPECTROGRAM_STYLE = [
    OpenApiParameter("scale", str, enum=list(spectrograms.SCALES), description="frequency axis (default mel)"),
    OpenApiParameter("gain", int, enum=list(spectrograms.GAINS_DB), description="dB of brightening for faint calls"),
    OpenApiParameter("px_per_s", int, enum=list(spectrograms.PX_PER_S), description="time scale (default 50)"),
]


def _spectrogram_style(params) -> spectrograms.SpectrogramStyle:
    gain = whole_number(params.get("gain", "0"), "gain (dB)", maximum=max(spectrograms.GAINS_DB))
    px_per_s = whole_number(params.get("px_per_s", "50"), "px_per_s", maximum=max(spectrograms.PX_PER_S))
    return spectrograms.SpectrogramStyle(scale=params.get("scale", "mel"), gain_db=gain, px_per_s=px_per_s)


def _png(path) -> FileResponse:
    response = FileResponse(open(path, "rb"), content_type="image/png")  # noqa: SIM115 (FileResponse closes it)
    # A picture of a stretch of a recording does not change: browsers may keep it for a day.
    response["Cache-Control"] = "private, max-age=86400"
    return response


class WindowSpectrogramView(ProjectView):
    @extend_schema(
        parameters=[*SPECTROGRAM_STYLE, OpenApiParameter("context", float, description="seconds either side (0-10)")],
        responses={(200, "image/png"): OpenApiTypes.BINARY, **ERRORS},
    )
    def get(self, request, project_id, window_id):
        window = self.window(window_id)
        style = _spectrogram_style(request.query_params)
        context_s = _optional_seconds(request.query_params.get("context"), "context") or 0.0
        return _png(spectrograms.window_spectrogram(window, style, context_s))


class RecordingSpectrogramView(ProjectView):
    @extend_schema(
        parameters=[
            *SPECTROGRAM_STYLE,
            OpenApiParameter("start", float, description="seconds from the recording's start"),
            OpenApiParameter("end", float, description=f"seconds; at most {spectrograms.MAX_SPAN_S:g} s after start"),
        ],
        responses={(200, "image/png"): OpenApiTypes.BINARY, 302: None, **ERRORS},
        description="A span that is not a tile redirects to the tile that covers it (see spectrograms.covering_tile).",
    )
    def get(self, request, project_id, recording_id):
        recording = self.recording(recording_id)
        start = _optional_seconds(request.query_params.get("start"), "start") or 0.0
        end = _optional_seconds(request.query_params.get("end"), "end")
        if end is None:
            end = min(start + 30.0, recording.duration_s or start + 30.0)
        style = _spectrogram_style(request.query_params)
        tile = spectrograms.covering_tile(recording, start, end)
        if (tile.start_s, tile.end_s) != (start, end):
            query = request.query_params.copy()
            query["start"], query["end"] = str(tile.start_s), str(tile.end_s)
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return _png(spectrograms.recording_spectrogram(recording, tile, style))


class RecordingOverviewView(ProjectView):
    @extend_schema(
        parameters=SPECTROGRAM_STYLE,
        responses={(200, "image/png"): OpenApiTypes.BINARY, **ERRORS},
        description=f"The whole recording in at most {spectrograms.OVERVIEW_COLUMNS} columns, each the loudest "
        f"of {spectrograms.OVERVIEW_FRAMES} short frames spread over its stretch.",
    )
    def get(self, request, project_id, recording_id):
        recording = self.recording(recording_id)
        return _png(spectrograms.recording_overview(recording, _spectrogram_style(request.query_params)))


class ClipQueryListView(ProjectView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "Clip",
                {
                    "file": drf_serializers.FileField(),
                    "start_s": drf_serializers.FloatField(required=False, help_text="trim: first second used"),
                    "end_s": drf_serializers.FloatField(required=False, help_text="trim: end of the part used"),
                },
            )
        },
        responses={201: s.ClipQuerySerializer, **ERRORS},
    )
    def post(self, request, project_id):
        upload = request.FILES.get("file")
        if upload is None:
            raise InputError("send the example clip as the multipart field 'file'")
        start_s = _optional_seconds(request.data.get("start_s"), "start_s")
        end_s = _optional_seconds(request.data.get("end_s"), "end_s")
        clip = search.request_clip_query(self.project, request.user, upload, start_s, end_s)
        return Response(s.ClipQuerySerializer(clip).data, status=status.HTTP_201_CREATED)


class ClipQueryDetailView(ProjectView):
    @extend_schema(responses={200: s.ClipQuerySerializer, **ERRORS})
    def get(self, request, project_id, clip_query_id):
        clip = get_object_or_404(ClipQuery, pk=clip_query_id, project=self.project)
        return Response(s.ClipQuerySerializer(clip).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id, clip_query_id):
        clips.delete_clip(self.project, request.user, clip_query_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AnnotationListView(ProjectView):
    parser_classes = [BoundedJSONParser, FormParser]
    WINDOW = OpenApiParameter("window", int)
    LABEL = OpenApiParameter("label", int)

    @extend_schema(parameters=[WINDOW], responses={200: s.AnnotationSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        annotations = Annotation.objects.filter(label__project=self.project).select_related("label", "annotator")
        if window := request.query_params.get("window"):
            annotations = annotations.filter(window_id=whole_number(window, "window"))
        return Response(s.AnnotationSerializer(annotations[:5000], many=True).data)

    @extend_schema(request=s.AnnotationRequestSerializer, responses={201: s.AnnotationSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.AnnotationRequestSerializer, request.data)
        annotation = labeling.set_label(self.project, request.user, data["window"], data["label"], data["value"])
        return Response(s.AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[WINDOW, LABEL], responses={204: None, **ERRORS})
    def delete(self, request, project_id):
        window = whole_number(request.query_params.get("window"), "window")
        label = whole_number(request.query_params.get("label"), "label")
        removed = labeling.clear_label(self.project, request.user, window, label)
        return Response(status=status.HTTP_204_NO_CONTENT if removed else status.HTTP_404_NOT_FOUND)


class AnnotationBulkView(ProjectView):
    parser_classes = [BoundedJSONParser]

    @extend_schema(request=s.BulkAnnotationSerializer, responses={200: s.BulkAnnotationResultSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.BulkAnnotationSerializer, request.data)
        changed = labeling.set_labels(self.project, request.user, data["windows"], data["label"], data["value"])
        return Response({"changed": changed})


class AnnotationRestoreView(ProjectView):
    """Undo: put a page's labels back as they were, in one request and one transaction."""

    parser_classes = [BoundedJSONParser]

    @extend_schema(request=s.RestoreAnnotationsSerializer, responses={200: s.BulkAnnotationResultSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.RestoreAnnotationsSerializer, request.data)
        previous = {change["window"]: change.get("value") or None for change in data["changes"]}
        changed = labeling.restore_labels(self.project, request.user, data["label"], previous)
        return Response({"changed": changed})


class ConflictResolveView(ProjectView):
    """Admins settle annotators' disagreements on a window."""

    write_action = Action.MANAGE
    parser_classes = [BoundedJSONParser]

    @extend_schema(request=s.AnnotationRequestSerializer, responses={200: s.ResolvedConflictSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.AnnotationRequestSerializer, request.data)
        removed = labeling.resolve_conflict(self.project, request.user, data["window"], data["label"], data["value"])
        return Response({"removed": removed})


class WindowHistoryView(ProjectView):
    """The audit trail of one window's labels: who gave, changed or removed what, when."""

    @extend_schema(responses={200: s.LabelChangeSerializer(many=True), **ERRORS})
    def get(self, request, project_id, window_id):
        get_object_or_404(Window.objects.defer("embedding"), pk=window_id, recording__deployment__project=self.project)
        return Response(s.LabelChangeSerializer(labeling.label_history(self.project, window_id), many=True).data)


def _classifier_data(classifier: Classifier) -> dict:
    data = {
        "id": classifier.pk,
        "version": classifier.version,
        "probe_type": classifier.probe_type,
        "status": classifier.status,
        "error": classifier.error,
        "embedding_model": str(classifier.embedding_model),
        "created_at": classifier.created_at,
        "scoring_status": classifier.scoring_status,
        "windows_to_score": classifier.windows_to_score,
        "windows_scored": classifier.windows_scored,
        "outputs": classifier.outputs.select_related("label"),
    }
    return s.ClassifierSerializer(data).data


class ClassifierListView(ProjectView):
    @extend_schema(responses={200: s.ClassifierSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        classifiers = self.project.classifiers.select_related("embedding_model")
        return Response([_classifier_data(c) for c in classifiers])

    @extend_schema(request=s.TrainRequestSerializer, responses={202: s.ClassifierSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.TrainRequestSerializer, request.data)
        classifier = training.request_training(
            self.project,
            request.user,
            data["labels"],
            probe_type=data["probe_type"],
            regularization_c=data.get("regularization_c"),
            prototypes_per_label=data["prototypes_per_label"],
            weak_negatives=data.get("weak_negatives"),
        )
        return Response(_classifier_data(classifier), status=status.HTTP_202_ACCEPTED)


class ClassifierDetailView(ProjectView):
    @extend_schema(responses={200: s.ClassifierSerializer, **ERRORS})
    def get(self, request, project_id, classifier_id):
        return Response(_classifier_data(_classifier(self.project, classifier_id)))


def _classifier(project, classifier_id) -> Classifier:
    return get_object_or_404(Classifier.objects.select_related("embedding_model"), pk=classifier_id, project=project)


class ClassifierExportView(ProjectView):
    read_action = Action.ANNOTATE  # exporting is an annotator's right
    FORMATS = {"perch-agile": exports.perch_agile_classifier, "hoplite": exports.hoplite_linear_classifier}

    @extend_schema(
        parameters=[OpenApiParameter("export_format", str, enum=list(FORMATS))],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        export_format = request.query_params.get("export_format", "perch-agile")
        if export_format not in self.FORMATS:
            raise InputError(f"export_format must be one of {', '.join(self.FORMATS)}")
        body = json.dumps(self.FORMATS[export_format](classifier), indent=1)
        response = HttpResponse(body, content_type="application/json")
        name = f"{self.project.name}-classifier-v{classifier.version}-{export_format}.json"
        return _as_attachment(response, name)


class ClassifierThresholdView(ProjectView):
    """Choose a label's threshold, directly or as the lowest reaching a precision on the held-out PR curve."""

    @extend_schema(request=s.ThresholdRequestSerializer, responses={200: s.ClassifierOutputSerializer, **ERRORS})
    def post(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        data = _valid(s.ThresholdRequestSerializer, request.data)
        output = get_object_or_404(classifier.outputs.select_related("label"), label_id=data["label"])
        scoring.choose_threshold(output, data.get("threshold"), data.get("min_precision"))
        return Response(s.ClassifierOutputSerializer(output).data)


QUEUE_FILTERS = [
    OpenApiParameter("deployment", int),
    OpenApiParameter("site", str),
    OpenApiParameter("date_from", OpenApiTypes.DATE, description="local to each deployment's time zone"),
    OpenApiParameter("date_to", OpenApiTypes.DATE),
    OpenApiParameter(
        "hour_from", str, description='local time of day "05:30" (or a whole hour), [from, to), may wrap midnight'
    ),
    OpenApiParameter("hour_to", str),
    OpenApiParameter(
        "all_overlapping", str, description="1: every overlapping window of a call (by default each call once)"
    ),
]


class ReviewQueueView(ProjectView):
    """Unlabeled windows to review next (see annotations.review_queues): the suggested
    queue, or top, margin, bins or diverse; in a deployment, site, dates or hours, never
    in a deployment held out for evaluation."""

    @extend_schema(
        parameters=[
            OpenApiParameter("label", int, required=True),
            OpenApiParameter("kind", str, enum=list(review_queues.KINDS), description="default: suggested"),
            OpenApiParameter("size", int),
            *QUEUE_FILTERS,
        ],
        responses={200: s.QueueItemSerializer(many=True), **ERRORS},
    )
    def get(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        label = whole_number(request.query_params.get("label"), "label")
        size = whole_number(request.query_params.get("size", "50"), "size", 1, 500)
        kind = request.query_params.get("kind", review_queues.SUGGESTED)
        filters = search.filters_from_params(request.query_params)
        queue = review_queues.review_queue(classifier, label, kind, size, filters)
        return Response([{"window_id": w, "score": score} for w, score in queue])


class QueueSuggestionView(ProjectView):
    """Which queue the label's labels so far call for, and why."""

    @extend_schema(
        parameters=[OpenApiParameter("label", int, required=True)],
        responses={200: s.QueueSuggestionSerializer, **ERRORS},
    )
    def get(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        label = whole_number(request.query_params.get("label"), "label")
        return Response(s.QueueSuggestionSerializer(review_queues.suggestion(classifier, label)).data)


class InferenceRunListView(ProjectView):
    @extend_schema(responses={200: s.InferenceRunSerializer(many=True), **ERRORS})
    def get(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        return Response(s.InferenceRunSerializer(classifier.runs.select_related("classifier"), many=True).data)

    @extend_schema(request=s.RunRequestSerializer, responses={202: s.InferenceRunSerializer, **ERRORS})
    def post(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        data = _valid(s.RunRequestSerializer, request.data)
        run = detections.request_inference(classifier, data["deployment"], data["threshold"], request.user)
        return Response(s.InferenceRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _run(project, run_id) -> InferenceRun:
    return get_object_or_404(
        InferenceRun.objects.select_related("classifier", "deployment"), pk=run_id, classifier__project=project
    )


class InferenceRunDetailView(ProjectView):
    @extend_schema(responses={200: s.InferenceRunSerializer, **ERRORS})
    def get(self, request, project_id, run_id):
        return Response(s.InferenceRunSerializer(_run(self.project, run_id)).data)


DETECTION_FILTERS = [
    OpenApiParameter("label", int),
    OpenApiParameter("min_score", float),
    OpenApiParameter("review", str, enum=list(detection_filters.REVIEWS)),
    OpenApiParameter("date_from", OpenApiTypes.DATE, description="local to the deployment's time zone"),
    OpenApiParameter("date_to", OpenApiTypes.DATE),
    OpenApiParameter("order", str, enum=list(detection_filters.ORDERS), description="default: score, best first"),
    OpenApiParameter(
        "unit",
        str,
        enum=list(detection_filters.UNITS),
        description="windows (default): each window at or above the threshold; events: consecutive ones in a "
        "recording merged, with their peak score (filters apply to the peak)",
    ),
]


class DetectionListView(ProjectView):
    @extend_schema(
        parameters=[OpenApiParameter("limit", int), *DETECTION_FILTERS],
        responses={200: s.DetectionPageSerializer, **ERRORS},
    )
    def get(self, request, project_id, run_id):
        run = _run(self.project, run_id)
        limit = whole_number(request.query_params.get("limit", "100"), "limit", 1, 1000)
        filters = detection_filters.detection_filters_from_params(request.query_params)
        chosen = detection_filters.listed(run, filters)
        serializer = s.DetectionEventSerializer if filters.unit == "events" else s.DetectionSerializer
        return Response({"count": chosen.count(), "detections": serializer(chosen[:limit], many=True).data})


class RunSummaryView(ProjectView):
    @extend_schema(responses={200: s.SiteDaySerializer(many=True), **ERRORS})
    def get(self, request, project_id, run_id):
        return Response(
            s.SiteDaySerializer(detections.detections_per_site_and_day(_run(self.project, run_id)), many=True).data
        )


class RunDensityView(ProjectView):
    @extend_schema(responses={200: s.DensityRowSerializer(many=True), **ERRORS})
    def get(self, request, project_id, run_id):
        """Call density per label and local day (and ``total`` over the deployment), with
        90% intervals from the validated random sample of each score bin."""
        return Response(s.DensityRowSerializer(call_density.run_densities(_run(self.project, run_id)), many=True).data)


class RavenExportView(ProjectView):
    read_action = Action.ANNOTATE  # exporting is an annotator's right

    @extend_schema(parameters=DETECTION_FILTERS, responses={(200, "application/zip"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, project_id, run_id):
        run = _run(self.project, run_id)
        filters = detection_filters.detection_filters_from_params(request.query_params)
        response = HttpResponse(exports.raven_tables_zip(run, filters), content_type="application/zip")
        name = f"raven-run-{run.pk}-{run.deployment.name}.zip"
        return _as_attachment(response, name)


class LabelImportView(ProjectView):
    """Label windows from a Raven selection table, an Audacity label track or a CSV."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "LabelImportUpload",
                {
                    "file": drf_serializers.FileField(),
                    "label": drf_serializers.CharField(required=False),
                    "recording": drf_serializers.CharField(required=False),
                },
            )
        },
        responses={200: s.LabelImportSerializer, 202: s.LabelImportSerializer, **ERRORS},
    )
    def post(self, request, project_id, deployment_id):
        """Planned first: written at once unless it would change the importer's labels
        (then ``status`` is ``planned`` until a decision); large tables answer 202, queued."""
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        upload = request.FILES.get("file")
        if upload is None:
            raise InputError("send the table as the multipart field 'file'")
        text = read_text_table(upload, label_import.MAX_BYTES, "a label table")
        started = label_import.start_import(
            deployment,
            request.user,
            text,
            label=request.data.get("label", ""),
            recording_name=request.data.get("recording", ""),
            upload_name=upload.name or "",
            mode=request.data.get("mode", ""),
        )
        queued = started.status == ImportStatus.QUEUED
        return Response(s.LabelImportSerializer(started).data, status=202 if queued else 200)


class LabelImportDetailView(ProjectView):
    """One of the user's own label imports: its plan, and the decision it may wait for."""

    def label_import(self, import_id) -> LabelImport:
        return get_object_or_404(LabelImport, pk=import_id, project=self.project, user=self.request.user)

    @extend_schema(responses={200: s.LabelImportSerializer, **ERRORS})
    def get(self, request, project_id, import_id):
        return Response(s.LabelImportSerializer(self.label_import(import_id)).data)

    @extend_schema(request=s.ImportDecisionSerializer, responses={200: s.LabelImportSerializer, **ERRORS})
    def post(self, request, project_id, import_id):
        """Decide a planned import: ``keep`` the labels you gave, or ``overwrite`` them."""
        mode = _valid(s.ImportDecisionSerializer, request.data)["mode"]
        decided = label_import.decide_import(self.label_import(import_id), mode)
        queued = decided.status == ImportStatus.QUEUED
        return Response(s.LabelImportSerializer(decided).data, status=202 if queued else 200)


class DetectionCsvView(ProjectView):
    read_action = Action.ANNOTATE  # exporting is an annotator's right

    @extend_schema(parameters=DETECTION_FILTERS, responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS})
    def get(self, request, project_id, run_id):
        run = _run(self.project, run_id)
        filters = detection_filters.detection_filters_from_params(request.query_params)
        response = StreamingHttpResponse(exports.detections_csv(run, filters), content_type="text/csv")
        name = f"detections-run-{run.pk}-{run.deployment.name}.csv"
        return _as_attachment(response, name)


class HopliteImportListView(ProjectView):
    """Bring a perch-hoplite database into the project (annotations.hoplite_exchange)."""

    write_action = Action.MANAGE
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]

    @extend_schema(responses={200: s.HopliteImportSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.HopliteImportSerializer(self.project.hoplite_imports.all(), many=True).data)

    @extend_schema(
        request={"multipart/form-data": s.HopliteImportRequestSerializer},
        responses={202: s.HopliteImportSerializer, 413: s.ErrorSerializer, **ERRORS},
    )
    def post(self, request, project_id):
        """A zip of the database's folder (multipart "file"), or a granted server "folder"
        holding it; "audio_folder": a granted server folder where its recordings are."""
        if too_large := _too_large(request):
            return too_large
        data = _valid(s.HopliteImportRequestSerializer, request.data)
        started = hoplite_exchange.start_import(
            self.project,
            request.user,
            upload=data.get("file"),
            folder=data.get("folder", ""),
            audio_folder=data.get("audio_folder", ""),
        )
        return Response(s.HopliteImportSerializer(started).data, status=status.HTTP_202_ACCEPTED)


class HopliteImportDetailView(ProjectView):
    write_action = Action.MANAGE

    def hoplite_import(self, import_id) -> HopliteImport:
        return get_object_or_404(HopliteImport, pk=import_id, project=self.project)

    @extend_schema(responses={200: s.HopliteImportSerializer, **ERRORS})
    def get(self, request, project_id, hoplite_import_id):
        return Response(s.HopliteImportSerializer(self.hoplite_import(hoplite_import_id)).data)

    @extend_schema(
        operation_id="projects_hoplite_imports_resume",
        request=None,
        responses={202: s.HopliteImportSerializer, **ERRORS},
    )
    def post(self, request, project_id, hoplite_import_id):
        """Resume a failed import after the deployments it wrote."""
        resumed = hoplite_exchange.resume_import(self.hoplite_import(hoplite_import_id))
        return Response(s.HopliteImportSerializer(resumed).data, status=status.HTTP_202_ACCEPTED)


class HopliteExportListView(ProjectView):
    """Write the project, or one deployment, as a zipped perch-hoplite database."""

    read_action = Action.ANNOTATE  # exporting is an annotator's right

    @extend_schema(responses={200: s.HopliteExportSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.HopliteExportSerializer(self.project.hoplite_exports.all(), many=True).data)

    @extend_schema(request=s.HopliteExportRequestSerializer, responses={202: s.HopliteExportSerializer, **ERRORS})
    def post(self, request, project_id):
        data = _valid(s.HopliteExportRequestSerializer, request.data)
        deployment = None
        if "deployment" in data:
            deployment = get_object_or_404(Deployment, pk=data["deployment"], project=self.project)
        started = hoplite_exchange.start_export(self.project, request.user, deployment, data.get("model"))
        return Response(s.HopliteExportSerializer(started).data, status=status.HTTP_202_ACCEPTED)


def _hoplite_export(project, export_id) -> HopliteExport:
    return get_object_or_404(
        HopliteExport.objects.select_related("deployment", "embedding_model"), pk=export_id, project=project
    )


class HopliteExportDetailView(ProjectView):
    read_action = Action.ANNOTATE

    @extend_schema(responses={200: s.HopliteExportSerializer, **ERRORS})
    def get(self, request, project_id, hoplite_export_id):
        return Response(s.HopliteExportSerializer(_hoplite_export(self.project, hoplite_export_id)).data)


class HopliteExportDownloadView(ProjectView):
    read_action = Action.ANNOTATE

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, project_id, hoplite_export_id):
        export = _hoplite_export(self.project, hoplite_export_id)
        if export.status != TaskStatus.DONE or not export.path:
            raise Http404("this export is not finished")
        response = FileResponse(open(export.path, "rb"), content_type="application/zip")  # noqa: SIM115 (FileResponse closes it)
        return _as_attachment(response, hoplite_exchange.export_file_name(export))


class ApiDocsView(SpectacularSwaggerSplitView):
    """The API reference (Swagger UI from drf-spectacular-sidecar's files) under the app's
    Content-Security-Policy: its script is a separate request, its page styles a file."""

    template_name = "frontend/api_docs.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response.headers["Content-Security-Policy"] = API_DOCS_CONTENT_SECURITY_POLICY
        return response
