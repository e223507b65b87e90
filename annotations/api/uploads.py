"""REST API for resumable uploads (see ``annotations.uploads``): open or resume an upload,
send its chunks with ``PUT`` at the offset the server confirmed, or abandon it.

Uploads are personal: a user sees and continues only their own.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from annotations import uploads
from annotations.access import Action
from annotations.api.views.base import ERRORS, ProjectView, validated
from annotations.api.views.deployments import KEEP_DUPLICATE
from annotations.models import Deployment, UploadSession
from perch_agile.params import MAX_ID, whole_number

UPLOAD_OFFSET = OpenApiParameter(
    "Upload-Offset",
    int,
    OpenApiParameter.HEADER,
    required=True,
    description="the byte of the file this chunk starts at: the session's received_bytes",
)


class UploadSessionSerializer(serializers.ModelSerializer):
    size_bytes = serializers.IntegerField(min_value=0, max_value=MAX_ID)

    class Meta:
        model = UploadSession
        fields = ["id", "filename", "size_bytes", "received_bytes", "recording", "created_at", "updated_at"]
        read_only_fields = ["id", "received_bytes", "recording", "created_at", "updated_at"]


class UploadConflictSerializer(UploadSessionSerializer):
    """A chunk at the wrong offset: the error and the state to resume from."""

    error = serializers.CharField()

    class Meta(UploadSessionSerializer.Meta):
        fields = [*UploadSessionSerializer.Meta.fields, "error"]


class UploadListView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: UploadSessionSerializer(many=True), **ERRORS})
    def get(self, request, project_id, deployment_id):
        """Your unfinished uploads to this deployment."""
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response(UploadSessionSerializer(uploads.unfinished_uploads(deployment, request.user), many=True).data)

    @extend_schema(request=UploadSessionSerializer, responses={200: UploadSessionSerializer, **ERRORS})
    def post(self, request, project_id, deployment_id):
        """Open an upload, or get back your unfinished one of the same file (name and size)
        to continue at its received_bytes."""
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        data = validated(UploadSessionSerializer, request.data)
        session = uploads.start_upload(deployment, request.user, data["filename"], data["size_bytes"])
        return Response(UploadSessionSerializer(session).data)


class UploadDetailView(ProjectView):
    write_action = Action.MANAGE

    def _session(self, deployment_id, upload_id) -> UploadSession:
        return get_object_or_404(
            UploadSession,
            pk=upload_id,
            deployment_id=deployment_id,
            deployment__project=self.project,
            created_by=self.request.user,
        )

    @extend_schema(responses={200: UploadSessionSerializer, **ERRORS})
    def get(self, request, project_id, deployment_id, upload_id):
        return Response(UploadSessionSerializer(self._session(deployment_id, upload_id)).data)

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[UPLOAD_OFFSET, KEEP_DUPLICATE],
        responses={200: UploadSessionSerializer, 409: UploadConflictSerializer, **ERRORS},
    )
    def put(self, request, project_id, deployment_id, upload_id):
        """Append the request body (at most 16 MiB) at Upload-Offset. The body is streamed to
        disk, never read whole; the last chunk makes the file a recording."""
        session = self._session(deployment_id, upload_id)
        offset = whole_number(request.headers.get("Upload-Offset"), "the Upload-Offset header")
        length = whole_number(request.headers.get("Content-Length") or "0", "the Content-Length header")
        try:
            keep = request.query_params.get("keep_duplicate") == "1"
            session = uploads.append_chunk(session, offset, request.stream, length, keep_duplicate=keep)
        except uploads.OffsetMismatch as conflict:
            body = {**UploadSessionSerializer(conflict.session).data, "error": str(conflict)}
            return Response(body, status=status.HTTP_409_CONFLICT)
        return Response(UploadSessionSerializer(session).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, project_id, deployment_id, upload_id):
        """Abandon an upload; what arrived of it is deleted."""
        uploads.abandon_upload(self._session(deployment_id, upload_id))
        return Response(status=status.HTTP_204_NO_CONTENT)
