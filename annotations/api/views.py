"""REST API. Every view resolves its project through ``annotations.access`` first, so
objects of projects the user is not a member of answer 404."""

from __future__ import annotations

import json

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from annotations import deployments, detections, exports, labeling, search, training
from annotations.access import Action, project_for, visible_projects
from annotations.api import serializers as s
from annotations.errors import InputError
from annotations.models import Annotation, Classifier, ClipQuery, Deployment, InferenceRun, Label, Recording, Window
from annotations.playback import window_wav


class ProjectListView(APIView):
    def get(self, request):
        return Response(s.ProjectSerializer(visible_projects(request.user), many=True).data)

    def post(self, request):
        data = _valid(s.ProjectSerializer, request.data)
        project = deployments.create_project(request.user, data["name"], data.get("description", ""), data["labels"])
        return Response(s.ProjectSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectView(APIView):
    """Base for everything inside a project: ``self.project`` is resolved and checked.

    Reads need any role; writes need ``write_action`` (annotator by default).
    """

    write_action = Action.ANNOTATE

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        action = Action.READ if request.method in ("GET", "HEAD", "OPTIONS") else self.write_action
        self.project = project_for(request.user, kwargs["project_id"], action)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class ProjectDetailView(ProjectView):
    def get(self, request, project_id):
        return Response(s.ProjectSerializer(self.project).data)


class LabelListView(ProjectView):
    write_action = Action.MANAGE

    def get(self, request, project_id):
        return Response(s.LabelSerializer(self.project.labels.all(), many=True).data)

    def post(self, request, project_id):
        data = _valid(s.LabelSerializer, request.data)
        if self.project.labels.filter(name=data["name"]).exists():
            raise InputError(f"label {data['name']!r} already exists in this project")
        label = Label.objects.create(project=self.project, **data)
        return Response(s.LabelSerializer(label).data, status=status.HTTP_201_CREATED)


class DeploymentListView(ProjectView):
    write_action = Action.MANAGE

    def get(self, request, project_id):
        return Response(s.DeploymentSerializer(self.project.deployments.all(), many=True).data)

    def post(self, request, project_id):
        data = _valid(s.DeploymentSerializer, request.data)
        deployment = deployments.create_deployment(self.project, **data)
        return Response(_deployment_data(deployment), status=status.HTTP_201_CREATED)


def _deployment_data(deployment: Deployment) -> dict:
    progress = deployments.deployment_progress(deployment)
    data = dict(s.DeploymentSerializer(deployment).data)
    data["progress"] = s.ProgressSerializer(progress).data
    return data


class DeploymentDetailView(ProjectView):
    def get(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response(_deployment_data(deployment))


class DeploymentFilesView(ProjectView):
    write_action = Action.MANAGE
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        recordings = deployments.add_uploaded_files(deployment, request.FILES.getlist("files"))
        return Response(s.RecordingSerializer(recordings, many=True).data, status=status.HTTP_201_CREATED)


class DeploymentIngestView(ProjectView):
    write_action = Action.MANAGE

    def post(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response({"queued": deployments.queue_ingest(deployment)}, status=status.HTTP_202_ACCEPTED)


class RecordingListView(ProjectView):
    def get(self, request, project_id, deployment_id):
        deployment = get_object_or_404(Deployment, pk=deployment_id, project=self.project)
        return Response(s.RecordingSerializer(deployment.recordings.all(), many=True).data)


class WindowListView(ProjectView):
    def get(self, request, project_id, recording_id):
        recording = get_object_or_404(Recording, pk=recording_id, deployment__project=self.project)
        windows = recording.windows.defer("embedding").values("id", "start_s", "end_s", "model_id")
        return Response(list(windows))


class WindowAudioView(ProjectView):
    def get(self, request, project_id, window_id):
        window = get_object_or_404(
            Window.objects.defer("embedding").select_related("recording"),
            pk=window_id,
            recording__deployment__project=self.project,
        )
        try:
            context_s = float(request.query_params.get("context", 0))
        except ValueError:
            raise InputError("context must be a number of seconds") from None
        return HttpResponse(window_wav(window, context_s), content_type="audio/wav")


class SearchView(ProjectView):
    def post(self, request, project_id):
        data = _valid(s.SearchRequestSerializer, request.data)
        if "window_id" in data:
            query = search.query_from_window(self.project, data["window_id"])
        else:
            query = search.query_from_clip(self.project, data["clip_query_id"])
        hits = search.nearest_windows(self.project, query.model, query.embedding, data["k"], query.exclude_window_ids)
        return Response({"model": str(query.model), "hits": s.SearchHitSerializer(hits, many=True).data})


class ClipQueryListView(ProjectView):
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request, project_id):
        upload = request.FILES.get("file")
        if upload is None:
            raise InputError("send the example clip as the multipart field 'file'")
        clip = search.request_clip_query(self.project, request.user, upload)
        return Response(s.ClipQuerySerializer(clip).data, status=status.HTTP_201_CREATED)


class ClipQueryDetailView(ProjectView):
    def get(self, request, project_id, clip_query_id):
        clip = get_object_or_404(ClipQuery, pk=clip_query_id, project=self.project)
        return Response(s.ClipQuerySerializer(clip).data)


class AnnotationListView(ProjectView):
    parser_classes = [JSONParser, FormParser]

    def get(self, request, project_id):
        annotations = Annotation.objects.filter(label__project=self.project).select_related("label", "annotator")
        if window := request.query_params.get("window"):
            annotations = annotations.filter(window_id=_int(window, "window"))
        return Response(s.AnnotationSerializer(annotations[:5000], many=True).data)

    def post(self, request, project_id):
        data = _valid(s.AnnotationRequestSerializer, request.data)
        annotation = labeling.set_label(self.project, request.user, data["window"], data["label"], data["value"])
        return Response(s.AnnotationSerializer(annotation).data, status=status.HTTP_201_CREATED)

    def delete(self, request, project_id):
        window = _int(request.query_params.get("window"), "window")
        label = _int(request.query_params.get("label"), "label")
        removed = labeling.clear_label(self.project, request.user, window, label)
        return Response(status=status.HTTP_204_NO_CONTENT if removed else status.HTTP_404_NOT_FOUND)


def _int(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an integer id") from None


def _classifier_data(classifier: Classifier) -> dict:
    data = {
        "id": classifier.pk,
        "version": classifier.version,
        "probe_type": classifier.probe_type,
        "status": classifier.status,
        "error": classifier.error,
        "embedding_model": str(classifier.embedding_model),
        "created_at": classifier.created_at,
        "outputs": classifier.outputs.select_related("label"),
    }
    return s.ClassifierSerializer(data).data


class ClassifierListView(ProjectView):
    def get(self, request, project_id):
        classifiers = self.project.classifiers.select_related("embedding_model")
        return Response([_classifier_data(c) for c in classifiers])

    def post(self, request, project_id):
        data = _valid(s.TrainRequestSerializer, request.data)
        classifier = training.request_training(self.project, request.user, data["labels"], data["regularization_c"])
        return Response(_classifier_data(classifier), status=status.HTTP_202_ACCEPTED)


class ClassifierDetailView(ProjectView):
    def get(self, request, project_id, classifier_id):
        return Response(_classifier_data(_classifier(self.project, classifier_id)))


def _classifier(project, classifier_id) -> Classifier:
    return get_object_or_404(Classifier.objects.select_related("embedding_model"), pk=classifier_id, project=project)


class ClassifierExportView(ProjectView):
    FORMATS = {"perch-agile": exports.perch_agile_classifier, "hoplite": exports.hoplite_linear_classifier}

    def get(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        export_format = request.query_params.get("export_format", "perch-agile")
        if export_format not in self.FORMATS:
            raise InputError(f"export_format must be one of {', '.join(self.FORMATS)}")
        if classifier.weights is None:
            raise InputError(f"classifier v{classifier.version} is not trained ({classifier.status})")
        body = json.dumps(self.FORMATS[export_format](classifier), indent=1)
        response = HttpResponse(body, content_type="application/json")
        name = f"{self.project.name}-classifier-v{classifier.version}-{export_format}.json"
        response["Content-Disposition"] = f'attachment; filename="{deployments.safe_filename(name)}"'
        return response


class InferenceRunListView(ProjectView):
    def get(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        return Response(s.InferenceRunSerializer(classifier.runs.select_related("classifier"), many=True).data)

    def post(self, request, project_id, classifier_id):
        classifier = _classifier(self.project, classifier_id)
        data = _valid(s.RunRequestSerializer, request.data)
        run = detections.request_inference(classifier, data["deployment"], data["threshold"], request.user)
        return Response(s.InferenceRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


def _run(project, run_id) -> InferenceRun:
    return get_object_or_404(
        InferenceRun.objects.select_related("classifier", "deployment"), pk=run_id, classifier__project=project
    )


class InferenceRunDetailView(ProjectView):
    def get(self, request, project_id, run_id):
        return Response(s.InferenceRunSerializer(_run(self.project, run_id)).data)


class DetectionListView(ProjectView):
    def get(self, request, project_id, run_id):
        run = _run(self.project, run_id)
        limit = min(max(_int(request.query_params.get("limit", 100), "limit"), 1), 1000)
        rows = run.detections.select_related("window__recording", "label").defer("window__embedding")[:limit]
        return Response({"count": run.detections.count(), "detections": s.DetectionSerializer(rows, many=True).data})


class DetectionCsvView(ProjectView):
    def get(self, request, project_id, run_id):
        run = _run(self.project, run_id)
        response = StreamingHttpResponse(exports.detections_csv(run), content_type="text/csv")
        name = f"detections-run-{run.pk}-{run.deployment.name}.csv"
        response["Content-Disposition"] = f'attachment; filename="{deployments.safe_filename(name)}"'
        return response
