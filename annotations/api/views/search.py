"""Query by example: searches, regions and example clips."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers as drf_serializers
from rest_framework import status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from annotations import clips, search
from annotations.access import Action
from annotations.api import serializers as s
from annotations.api.views.base import ERRORS, ProjectView, optional_seconds, validated
from annotations.errors import InputError
from annotations.models import ClipQuery
from perch_agile.replicas import standby_reads


class SearchView(ProjectView):
    write_action = Action.READ  # a POST for its body, but it changes nothing: viewers search too

    @extend_schema(request=s.SearchRequestSerializer, responses={200: s.SearchResultSerializer, **ERRORS})
    def post(self, request, project_id):
        data = validated(s.SearchRequestSerializer, request.data)
        with standby_reads(request.user) as source:
            page = search.run_search(self.project, data["spec"], data["k"], data["offset"])
        return Response(
            {
                "model": str(page.model),
                "path": page.path,
                "rescued": page.rescued,
                "standby": source.standby,
                "standby_lag_s": source.lag_s,
                "hits": s.SearchHitSerializer(page.hits, many=True).data,
            }
        )


class RegionQueryView(ProjectView):
    @extend_schema(request=s.RegionQuerySerializer, responses={201: s.ClipQuerySerializer, **ERRORS})
    def post(self, request, project_id):
        data = validated(s.RegionQuerySerializer, request.data)
        clip = search.request_region_query(
            self.project, request.user, data["recording_id"], data["start_s"], data["end_s"], s.band_of(data)
        )
        return Response(s.ClipQuerySerializer(clip).data, status=status.HTTP_201_CREATED)


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
        start_s = optional_seconds(request.data.get("start_s"), "start_s")
        end_s = optional_seconds(request.data.get("end_s"), "end_s")
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
