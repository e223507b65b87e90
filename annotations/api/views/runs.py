"""Inference runs and their detections: lists, summaries, call density and exports."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from annotations import call_density, detection_filters, detections, exports
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.views.base import ERRORS, SUN_FILTERS, ProjectView, as_attachment, classifier_of, validated
from annotations.models import InferenceRun
from perch_agile.params import whole_number


class InferenceRunListView(ProjectView):
    @extend_schema(responses={200: s.InferenceRunSerializer(many=True), **ERRORS})
    def get(self, request, project_id, classifier_id):
        classifier = classifier_of(self.project, classifier_id)
        return Response(s.InferenceRunSerializer(classifier.runs.select_related("classifier"), many=True).data)

    @extend_schema(request=s.RunRequestSerializer, responses={202: s.InferenceRunSerializer, **ERRORS})
    def post(self, request, project_id, classifier_id):
        classifier = classifier_of(self.project, classifier_id)
        data = validated(s.RunRequestSerializer, request.data)
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
    *SUN_FILTERS,
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
        return as_attachment(response, name)


class DetectionCsvView(ProjectView):
    read_action = Action.ANNOTATE  # exporting is an annotator's right

    @extend_schema(parameters=DETECTION_FILTERS, responses={(200, "text/csv"): OpenApiTypes.STR, **ERRORS})
    def get(self, request, project_id, run_id):
        run = _run(self.project, run_id)
        filters = detection_filters.detection_filters_from_params(request.query_params)
        response = StreamingHttpResponse(exports.detections_csv(run, filters), content_type="text/csv")
        name = f"detections-run-{run.pk}-{run.deployment.name}.csv"
        return as_attachment(response, name)
