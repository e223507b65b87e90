"""Recordings and windows: listing, listening, spectrograms."""

from __future__ import annotations

import zoneinfo

from django.http import FileResponse, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response

from annotations import deployments, predictions, spectrograms
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.views.base import ERRORS, ProjectView, optional_seconds, validated
from annotations.errors import InputError
from annotations.models import Deployment
from annotations.playback import MAX_STRETCH_S, recording_wav, window_wav
from perch_agile.params import whole_number


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
            started_at = validated(s.RecordingStartSerializer, request.data)["started_at"]
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
        context_s = optional_seconds(request.query_params.get("context"), "context") or 0.0
        return HttpResponse(window_wav(window, context_s), content_type="audio/wav")


class RecordingAudioView(ProjectView):
    @extend_schema(
        parameters=[
            OpenApiParameter("start", float, required=True, description="seconds from the recording's start"),
            OpenApiParameter(
                "end", float, required=True, description=f"seconds; at most {MAX_STRETCH_S:g} s after start"
            ),
        ],
        responses={(200, "audio/wav"): OpenApiTypes.BINARY, **ERRORS},
        description="A stretch of the recording at its own rate: the recording view plays a file as a chain of them.",
    )
    def get(self, request, project_id, recording_id):
        recording = self.recording(recording_id)
        start = optional_seconds(request.query_params.get("start"), "start")
        end = optional_seconds(request.query_params.get("end"), "end")
        if start is None or end is None:
            raise InputError("give the stretch to play: start and end, in seconds")
        response = HttpResponse(recording_wav(recording, start, end), content_type="audio/wav")
        response["Cache-Control"] = "private, max-age=86400"  # a file's audio does not change
        return response


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
        context_s = optional_seconds(request.query_params.get("context"), "context") or 0.0
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
        start = optional_seconds(request.query_params.get("start"), "start") or 0.0
        end = optional_seconds(request.query_params.get("end"), "end")
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
