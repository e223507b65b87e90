"""Labels on windows: giving, undoing, settling, history, and label tables from other tools."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from annotations import label_import, labeling
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.parsers import BoundedJSONParser
from annotations.api.views.base import ERRORS, ProjectView, validated
from annotations.errors import InputError
from annotations.models import Annotation, Deployment, ImportStatus, LabelImport, Window
from annotations.text_uploads import read_text_table
from perch_agile.params import whole_number


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
        data = validated(s.AnnotationRequestSerializer, request.data)
        annotation = labeling.set_label(
            self.project, request.user, data["window"], data["label"], data["value"], s.band_of(data)
        )
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
        data = validated(s.BulkAnnotationSerializer, request.data)
        changed = labeling.set_labels(self.project, request.user, data["windows"], data["label"], data["value"])
        return Response({"changed": changed})


class AnnotationRestoreView(ProjectView):
    """Undo: put a page's labels back as they were, in one request and one transaction."""

    parser_classes = [BoundedJSONParser]

    @extend_schema(request=s.RestoreAnnotationsSerializer, responses={200: s.BulkAnnotationResultSerializer, **ERRORS})
    def post(self, request, project_id):
        data = validated(s.RestoreAnnotationsSerializer, request.data)
        previous = {
            change["window"]: (change["value"], s.band_of(change)) if change.get("value") else None
            for change in data["changes"]
        }
        changed = labeling.restore_labels(self.project, request.user, data["label"], previous)
        return Response({"changed": changed})


class ConflictResolveView(ProjectView):
    """Admins settle annotators' disagreements on a window."""

    write_action = Action.MANAGE
    parser_classes = [BoundedJSONParser]

    @extend_schema(request=s.AnnotationRequestSerializer, responses={200: s.ResolvedConflictSerializer, **ERRORS})
    def post(self, request, project_id):
        data = validated(s.AnnotationRequestSerializer, request.data)
        removed = labeling.resolve_conflict(self.project, request.user, data["window"], data["label"], data["value"])
        return Response({"removed": removed})


class WindowHistoryView(ProjectView):
    """The audit trail of one window's labels: who gave, changed or removed what, when."""

    @extend_schema(responses={200: s.LabelChangeSerializer(many=True), **ERRORS})
    def get(self, request, project_id, window_id):
        get_object_or_404(Window.objects.defer("embedding"), pk=window_id, recording__deployment__project=self.project)
        return Response(s.LabelChangeSerializer(labeling.label_history(self.project, window_id), many=True).data)


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
        mode = validated(s.ImportDecisionSerializer, request.data)["mode"]
        decided = label_import.decide_import(self.label_import(import_id), mode)
        queued = decided.status == ImportStatus.QUEUED
        return Response(s.LabelImportSerializer(decided).data, status=202 if queued else 200)
