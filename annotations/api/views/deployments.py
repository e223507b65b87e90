"""Deployments: their metadata, files, ingest and re-embedding."""

from __future__ import annotations

import dataclasses

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from annotations import deployment_metadata, deployments
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.views.base import CONFIRM, ERRORS, ProjectView, too_large, validated
from annotations.errors import InputError
from annotations.models import Deployment
from annotations.search_index import index_summaries
from annotations.text_uploads import read_text_table


class DeploymentListView(ProjectView):
    write_action = Action.MANAGE

    @extend_schema(responses={200: s.DeploymentSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        return Response(s.DeploymentSerializer(self.project.deployments.all(), many=True).data)

    @extend_schema(request=s.DeploymentSerializer, responses={201: s.DeploymentDetailSerializer, **ERRORS})
    def post(self, request, project_id):
        data = validated(s.DeploymentSerializer, request.data)
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
        if refusal := too_large(request):
            return refusal
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
        data = validated(s.ReembedRequestSerializer, request.data)
        plan = deployments.reembed_plan(deployment, data["hop_s"])
        answer = {**dataclasses.asdict(plan), "message": plan.told, "queued": 0}
        if not data["confirm"]:
            return Response(answer)
        answer["queued"] = deployments.reembed(deployment, data["hop_s"])
        answer["message"] = f"{answer['queued']} recordings queued to be embedded every {data['hop_s']:g} s."
        return Response(answer, status=status.HTTP_202_ACCEPTED)
