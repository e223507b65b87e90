"""The API's common ground: the project check every view inherits, errors, helpers."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework import status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import deployments
from annotations.access import Action, project_for
from annotations.api import serializers as s
from annotations.models import Classifier, Recording, Window
from annotations.sun import DEFAULT_SUN_FROM_MIN, DEFAULT_SUN_TO_MIN, SUN_EVENTS
from perch_agile.headers import API_DOCS_CONTENT_SECURITY_POLICY
from perch_agile.params import seconds

ERRORS = {400: s.ErrorSerializer, 403: s.ErrorSerializer, 404: s.ErrorSerializer}


CONFIRM = OpenApiParameter("confirm", str, description="the exact name of what is deleted, as confirmation")
# Minutes from the day's sunrise or sunset at each deployment (annotations.sun), for queues and detections.
SUN_FILTERS = [
    OpenApiParameter(
        "sun", str, enum=list(SUN_EVENTS), description="minutes from the day's sunrise or sunset instead of hours"
    ),
    OpenApiParameter(
        "sun_from", float, description=f"minutes from the event, [from, to); default {DEFAULT_SUN_FROM_MIN:g}"
    ),
    OpenApiParameter("sun_to", float, description=f"default {DEFAULT_SUN_TO_MIN:g}"),
]


class TokenView(ObtainAuthToken):
    """Exchange a user name and password for an API token (limited by perch_agile.login_limits)."""


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


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def as_attachment(response: HttpResponse, name: str) -> HttpResponse:
    """Make the browser save the response as a file of this (sanitised) name."""
    response["Content-Disposition"] = f'attachment; filename="{deployments.safe_filename(name)}"'
    return response


class ApiDocsView(SpectacularSwaggerSplitView):
    """The API reference (Swagger UI from drf-spectacular-sidecar's files) under the app's
    Content-Security-Policy: its script is a separate request, its page styles a file."""

    template_name = "frontend/api_docs.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response.headers["Content-Security-Policy"] = API_DOCS_CONTENT_SECURITY_POLICY
        return response


def too_large(request) -> Response | None:
    """A 413 for a request over the server's limit, refused before Django reads (and spools) any of it."""
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length <= settings.PERCH_AGILE_MAX_REQUEST_BYTES:
        return None
    limit_gb = settings.PERCH_AGILE_MAX_REQUEST_BYTES / 1e9
    return Response(
        {"error": f"this upload is {length / 1e9:.1f} GB; send at most {limit_gb:.1f} GB per request"},
        status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def optional_seconds(value, name: str) -> float | None:
    return None if value in (None, "") else seconds(value, name)


def classifier_of(project, classifier_id) -> Classifier:
    return get_object_or_404(Classifier.objects.select_related("embedding_model"), pk=classifier_id, project=project)
