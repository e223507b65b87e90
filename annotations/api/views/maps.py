"""The embedding map of a project: drawn by a worker, read by the map page."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response

from annotations import embedding_map
from annotations.api import serializers as s
from annotations.api.views.base import ERRORS, ProjectView, validated
from annotations.models import EmbeddingMap
from perch_agile.params import whole_number


class EmbeddingMapListView(ProjectView):
    @extend_schema(responses={200: s.EmbeddingMapSerializer(many=True), **ERRORS})
    def get(self, request, project_id):
        maps = self.project.embedding_maps.select_related("model").order_by("pk")
        return Response(s.EmbeddingMapSerializer(maps, many=True).data)

    @extend_schema(
        request=s.EmbeddingMapRequestSerializer,
        responses={202: s.EmbeddingMapSerializer, **ERRORS},
        description="Draw (or draw again) the project's map for a model: a worker samples and projects its windows.",
    )
    def post(self, request, project_id):
        model = validated(s.EmbeddingMapRequestSerializer, request.data)["model"]
        row = embedding_map.request_map_build(self.project, model)
        return Response(s.EmbeddingMapSerializer(row).data, status=status.HTTP_202_ACCEPTED)


class EmbeddingMapDetailView(ProjectView):
    @extend_schema(responses={200: s.EmbeddingMapSerializer, **ERRORS})
    def get(self, request, project_id, map_id):
        row = get_object_or_404(EmbeddingMap.objects.select_related("model"), pk=map_id, project=self.project)
        return Response(s.EmbeddingMapSerializer(row).data)


class MapPointsView(ProjectView):
    @extend_schema(
        parameters=[
            OpenApiParameter("colour_by", str, enum=list(embedding_map.COLOUR_BY), description="default site"),
            OpenApiParameter("label", int, description="the label, to colour by label or by its score"),
        ],
        responses={200: s.MapPointsSerializer, **ERRORS},
    )
    def get(self, request, project_id, map_id):
        row = get_object_or_404(EmbeddingMap, pk=map_id, project=self.project)
        label_id = request.query_params.get("label")
        label = None if label_id is None else get_object_or_404(self.project.labels, pk=whole_number(label_id, "label"))
        points = embedding_map.map_points(row, request.query_params.get("colour_by", "site"), label)
        # Plain lists (the serializer documents them): a field per number for 20,000 points
        # took most of the request's time.
        return Response(vars(points))
