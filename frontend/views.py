"""Browser pages. Reads render on the server from the domain modules; actions (labels,
uploads, training) go through the REST API from ``static/frontend/app.js``, so pages and
scripts share one implementation and one permission check."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from annotations import deployments, labeling, review_queues, scoring
from annotations import detections as detections_service
from annotations import search as search_service
from annotations.access import Action, project_for, role_in, visible_projects
from annotations.errors import InputError
from annotations.models import Classifier, Deployment, InferenceRun, ProbeType, Recording, Role, TaskStatus, Window
from annotations.probes import MIN_HELD_OUT
from frontend import charts


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
        "probe_types": ProbeType.choices,
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


def _output_panel(output, previous_outputs: dict) -> dict:
    """What the classifier page shows for one label: quality, pictures, the previous version."""
    targets, scores = scoring.held_out_arrays(output)
    curve = scoring.held_out_curve(output)
    precision, recall = curve.at(output.threshold) if curve else (None, None)
    panel = {
        "output": output,
        "pr_curve": charts.pr_curve(curve, output.threshold),
        "histogram": charts.score_histogram(targets, scores, output.threshold),
        "precision": precision,
        "recall": recall,
        "too_small": min(output.eval_positives, output.eval_negatives) < MIN_HELD_OUT,
        "previous": previous_outputs.get(output.label_id),
    }
    if output.prototypes is not None:
        panel["prototype_examples"] = scoring.prototype_examples(output)
    return panel


@login_required
def classifier(request, project_id, classifier_id):
    project = project_for(request.user, project_id)
    classifier = get_object_or_404(
        Classifier.objects.select_related("embedding_model"), pk=classifier_id, project=project
    )
    previous = (
        project.classifiers.filter(version__lt=classifier.version, status=TaskStatus.DONE)
        .prefetch_related("outputs")
        .first()
    )
    previous_outputs = {o.label_id: o for o in previous.outputs.all()} if previous else {}
    outputs = classifier.outputs.select_related("label", "classifier__embedding_model")
    done = classifier.status == TaskStatus.DONE
    context = {
        "project": project,
        "classifier": classifier,
        "previous": previous,
        "panels": [_output_panel(o, previous_outputs) for o in outputs] if done else [],
        "outputs": outputs,
        "queue_kinds": review_queues.KINDS,
        "runs": classifier.runs.select_related("deployment"),
        "deployments": project.deployments.all(),
        "can_annotate": role_in(project, request.user) in Action.ANNOTATE.value,
    }
    return render(request, "frontend/classifier.html", context)


@login_required
def review(request, project_id, classifier_id):
    """An active-learning queue opened in the labeling view."""
    project = project_for(request.user, project_id)
    classifier = get_object_or_404(Classifier, pk=classifier_id, project=project)
    context = {"project": project, "classifier": classifier, "labels": project.labels.all(), "hits": None}
    try:
        label_id = int(request.GET.get("label", ""))
        kind = request.GET.get("kind", "top")
        context["hits"] = search_service.hits_for(review_queues.review_queue(classifier, label_id, kind, size=50))
        context["kind"] = kind
        context["labels"] = project.labels.filter(pk=label_id)
    except (InputError, ValueError) as error:
        context["error"] = str(error)
    return render(request, "frontend/review.html", context)


@login_required
def run(request, project_id, run_id):
    project = project_for(request.user, project_id)
    run = get_object_or_404(
        InferenceRun.objects.select_related("classifier", "deployment"), pk=run_id, classifier__project=project
    )
    detections = run.detections.select_related("window__recording", "label").defer("window__embedding")[:200]
    per_day = detections_service.detections_per_site_and_day(run)
    context = {
        "project": project,
        "run": run,
        "detections": detections,
        "labels": project.labels.all(),
        "per_day": per_day,
        "per_day_chart": charts.bar_chart(
            "Detections per site and day",
            [f"{row['label']} · {row['site'] or 'no site'} · {row['day'] or 'no date'}" for row in per_day],
            [row["detections"] for row in per_day],
        ),
    }
    return render(request, "frontend/run.html", context)
