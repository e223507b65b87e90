"""Browser pages. Reads render on the server from the domain modules; actions (labels,
uploads, training) go through the REST API from ``static/frontend/app.js``, so pages and
scripts share one implementation and one permission check."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from annotations import deployments, labeling
from annotations import search as search_service
from annotations.access import Action, project_for, role_in, visible_projects
from annotations.errors import InputError
from annotations.models import Classifier, Deployment, InferenceRun, Recording, Role, Window


@login_required
@require_http_methods(["GET", "POST"])
def projects(request):
    error = ""
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        labels = [label.strip() for label in request.POST.get("labels", "").split(",") if label.strip()]
        if name:
            project = deployments.create_project(request.user, name[:200], labels=[label[:100] for label in labels])
            return redirect("frontend:project", project_id=project.pk)
        error = "Give the project a name."
    return render(request, "frontend/projects.html", {"projects": visible_projects(request.user), "error": error})


@login_required
def project(request, project_id):
    project = project_for(request.user, project_id)
    context = {
        "project": project,
        "role": role_in(project, request.user),
        "deployments": [(d, deployments.deployment_progress(d)) for d in project.deployments.all()],
        "labels": project.labels.all(),
        "classifiers": project.classifiers.select_related("embedding_model").prefetch_related("outputs__label"),
    }
    return render(request, "frontend/project.html", context)


@login_required
def project_settings(request, project_id):
    """Members and roles, and deleting deployments or the project (admins only)."""
    project = project_for(request.user, project_id, Action.MANAGE)
    context = {
        "project": project,
        "members": project.memberships.select_related("user").order_by("user__username"),
        "roles": Role.choices,
        "summary": deployments.deletion_summary(project),
        "deployments": [(d, deployments.deletion_summary(d)) for d in project.deployments.all()],
    }
    return render(request, "frontend/project_settings.html", context)


@login_required
def window(request, project_id, window_id):
    """One window: listen to it, see its labels and their history."""
    project = project_for(request.user, project_id)
    window = get_object_or_404(
        Window.objects.defer("embedding").select_related("recording__deployment"),
        pk=window_id,
        recording__deployment__project=project,
    )
    context = {
        "project": project,
        "window": window,
        "labels": project.labels.all(),
        "annotations": window.annotations.select_related("label", "annotator"),
        "history": labeling.label_history(project, window.pk),
    }
    return render(request, "frontend/window.html", context)


@login_required
def deployment(request, project_id, deployment_id):
    project = project_for(request.user, project_id)
    deployment = get_object_or_404(Deployment, pk=deployment_id, project=project)
    context = {
        "project": project,
        "deployment": deployment,
        "progress": deployments.deployment_progress(deployment),
        "recordings": deployment.recordings.all(),
    }
    return render(request, "frontend/deployment.html", context)


@login_required
def recording(request, project_id, recording_id):
    project = project_for(request.user, project_id)
    recording = get_object_or_404(
        Recording.objects.select_related("deployment"), pk=recording_id, deployment__project=project
    )
    windows = recording.windows.defer("embedding")
    return render(request, "frontend/recording.html", {"project": project, "recording": recording, "windows": windows})


@login_required
def search(request, project_id):
    project = project_for(request.user, project_id)
    context = {"project": project, "labels": project.labels.all(), "hits": None, "error": ""}
    try:
        k = min(max(int(request.GET.get("k", 50)), 1), search_service.MAX_K)
        if window_id := request.GET.get("window"):
            query = search_service.query_from_window(project, int(window_id))
        elif clip_id := request.GET.get("clip"):
            query = search_service.query_from_clip(project, int(clip_id))
        else:
            query = None
        if query is not None:
            context["hits"] = search_service.nearest_windows(
                project, query.model, query.embedding, k, query.exclude_window_ids
            )
            context["query_model"] = query.model
    except (InputError, ValueError) as error:
        context["error"] = str(error)
    return render(request, "frontend/search.html", context)


@login_required
def classifier(request, project_id, classifier_id):
    project = project_for(request.user, project_id)
    classifier = get_object_or_404(
        Classifier.objects.select_related("embedding_model"), pk=classifier_id, project=project
    )
    context = {
        "project": project,
        "classifier": classifier,
        "outputs": classifier.outputs.select_related("label"),
        "runs": classifier.runs.select_related("deployment"),
        "deployments": project.deployments.all(),
        "can_annotate": role_in(project, request.user) in Action.ANNOTATE.value,
    }
    return render(request, "frontend/classifier.html", context)


@login_required
def run(request, project_id, run_id):
    project = project_for(request.user, project_id)
    run = get_object_or_404(
        InferenceRun.objects.select_related("classifier", "deployment"), pk=run_id, classifier__project=project
    )
    detections = run.detections.select_related("window__recording", "label").defer("window__embedding")[:200]
    context = {"project": project, "run": run, "detections": detections, "labels": project.labels.all()}
    return render(request, "frontend/run.html", context)
