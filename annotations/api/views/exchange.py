"""Exchange with perch-hoplite: importing its databases, exporting projects as one."""

from __future__ import annotations

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from annotations import hoplite_exchange
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.parsers import BoundedJSONParser
from annotations.api.views.base import ERRORS, ProjectView, as_attachment, too_large, validated
from annotations.models import Deployment, HopliteExport, HopliteImport, TaskStatus


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
        if refusal := too_large(request):
            return refusal
        data = validated(s.HopliteImportRequestSerializer, request.data)
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
        data = validated(s.HopliteExportRequestSerializer, request.data)
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
        return as_attachment(response, hoplite_exchange.export_file_name(export))
