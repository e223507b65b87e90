"""Classifiers: training, export, thresholds and review queues."""

from __future__ import annotations

import json

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from annotations import exports, review_queues, scoring, search, training
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.views.base import ERRORS, SUN_FILTERS, ProjectView, as_attachment, classifier_of, validated
from annotations.errors import InputError
from annotations.models import Classifier
from perch_agile.params import whole_number
from perch_agile.replicas import standby_reads


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
        data = validated(s.TrainRequestSerializer, request.data)
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
        return Response(_classifier_data(classifier_of(self.project, classifier_id)))


class ClassifierExportView(ProjectView):
    read_action = Action.ANNOTATE  # exporting is an annotator's right
    FORMATS = {"perch-agile": exports.perch_agile_classifier, "hoplite": exports.hoplite_linear_classifier}

    @extend_schema(
        parameters=[OpenApiParameter("export_format", str, enum=list(FORMATS))],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request, project_id, classifier_id):
        classifier = classifier_of(self.project, classifier_id)
        export_format = request.query_params.get("export_format", "perch-agile")
        if export_format not in self.FORMATS:
            raise InputError(f"export_format must be one of {', '.join(self.FORMATS)}")
        body = json.dumps(self.FORMATS[export_format](classifier), indent=1)
        response = HttpResponse(body, content_type="application/json")
        name = f"{self.project.name}-classifier-v{classifier.version}-{export_format}.json"
        return as_attachment(response, name)


class ClassifierThresholdView(ProjectView):
    """Choose a label's threshold, directly or as the lowest reaching a precision on the held-out PR curve."""

    @extend_schema(request=s.ThresholdRequestSerializer, responses={200: s.ClassifierOutputSerializer, **ERRORS})
    def post(self, request, project_id, classifier_id):
        classifier = classifier_of(self.project, classifier_id)
        data = validated(s.ThresholdRequestSerializer, request.data)
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
    *SUN_FILTERS,
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
        classifier = classifier_of(self.project, classifier_id)
        label = whole_number(request.query_params.get("label"), "label")
        size = whole_number(request.query_params.get("size", "50"), "size", 1, 500)
        kind = request.query_params.get("kind", review_queues.SUGGESTED)
        filters = search.filters_from_params(request.query_params)
        with standby_reads(request.user):
            queue = review_queues.review_queue(classifier, label, kind, size, filters)
        return Response([{"window_id": w, "score": score} for w, score in queue])


class QueueSuggestionView(ProjectView):
    """Which queue the label's labels so far call for, and why."""

    @extend_schema(
        parameters=[OpenApiParameter("label", int, required=True)],
        responses={200: s.QueueSuggestionSerializer, **ERRORS},
    )
    def get(self, request, project_id, classifier_id):
        classifier = classifier_of(self.project, classifier_id)
        label = whole_number(request.query_params.get("label"), "label")
        return Response(s.QueueSuggestionSerializer(review_queues.suggestion(classifier, label)).data)
