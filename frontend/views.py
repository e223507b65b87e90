"""Browser pages. Reads render on the server from the domain modules; actions (labels,
uploads, training) go through the REST API from ``static/frontend/app.js``, so pages and
scripts share one implementation and one permission check."""

from __future__ import annotations

import math
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from annotations import (
    call_density,
    deployment_metadata,
    deployments,
    detection_filters,
    detection_rates,
    embedding_map,
    labeling,
    membership,
    review_queues,
    scoring,
    training,
)
from annotations import search as search_service
from annotations.access import Action, project_for, role_in, visible_projects
from annotations.errors import InputError
from annotations.first_steps import first_steps
from annotations.learning_curve import learning_curve
from annotations.models import (
    Classifier,
    Combine,
    Deployment,
    EmbeddingModel,
    EvaluationSource,
    InferenceRun,
    Label,
    LabeledFilter,
    LabelValue,
    ProbeType,
    Recording,
    Role,
    SearchRecord,
    TaskStatus,
    Window,
)
from annotations.probes import MIN_HELD_OUT
from annotations.search_index import index_summaries
from annotations.spectrograms import SpectrogramStyle
from annotations.stored_scores import windows_above
from annotations.sun import SUN_EVENTS
from annotations.text_uploads import read_text_table
from frontend import charts
from perch_agile.params import seconds, whole_number
from perch_agile.replicas import standby_reads


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
    context = {
        "projects": visible_projects(request.user),
        "invitations": membership.invitations_for(request.user),
        "error": error,
    }
    return render(request, "frontend/projects.html", context)


@login_required
def project(request, project_id):
    project = project_for(request.user, project_id)
    context = {
        "project": project,
        "role": role_in(project, request.user),
        "deployments": [(d, deployments.deployment_progress(d)) for d in project.deployments.all()],
        "labels": labeling.label_counts(project),
        "classifiers": project.classifiers.select_related("embedding_model", "created_by").prefetch_related(
            "outputs__label"
        ),
        "runs": InferenceRun.objects.filter(classifier__project=project).select_related("classifier", "deployment"),
        "probe_types": ProbeType.choices,
        "folder_grants": [deployments.folder_under_root(grant.folder) for grant in project.folder_grants.all()],
        "steps": first_steps(project, request.user),
        "next_reviews": review_queues.next_reviews(project),
    }
    needed = training.labels_needed_by_label(project)
    context["labels_needed"] = [(label, needed[label.pk]) for label in context["labels"] if label.pk in needed]
    return render(request, "frontend/project.html", context)


@never_cache  # the address holds a one-time secret
@require_http_methods(["GET", "POST"])
def join(request, token):
    """An invitation link: join its project, creating an account first if need be."""
    context = {"error": "", "username": ""}
    try:
        link = context["link"] = membership.usable_invitation_link(token)
    except InputError as error:
        context["error"] = str(error)
        return render(request, "frontend/join.html", context, status=410)
    context["role_explained"] = membership.ROLE_EXPLAINED[link.role]
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership.join_with_link(token, request.user)
            else:
                context["username"] = request.POST.get("username", "")[:150]
                user = membership.sign_up_with_link(
                    token, context["username"], request.POST.get("password", ""), request.POST.get("password_again", "")
                )
                auth.login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        except InputError as error:
            context["error"] = str(error)
        else:
            messages.success(
                request, f"Welcome to {link.project.name}: you joined as {link.get_role_display().lower()}."
            )
            return redirect("frontend:project", project_id=link.project_id)
    return render(request, "frontend/join.html", context, status=400 if context["error"] else 200)


@login_required
@require_POST
def deployment_metadata_import(request, project_id):
    """The project page's metadata table upload: a plain form, answered with a message."""
    project = project_for(request.user, project_id, Action.MANAGE)
    try:
        if "file" not in request.FILES:
            raise InputError("choose a CSV file")
        text = read_text_table(request.FILES["file"], deployment_metadata.MAX_BYTES, "a metadata table")
        result = deployment_metadata.import_deployment_metadata(project, text)
    except InputError as error:
        messages.error(request, f"Nothing was imported: {error}")
    else:
        messages.success(request, f"Created {len(result.created)} and updated {len(result.updated)} deployments.")
    return redirect("frontend:project", project_id=project.pk)


@login_required
def project_settings(request, project_id):
    """Members and roles, and deleting deployments or the project (admins only)."""
    project = project_for(request.user, project_id, Action.MANAGE)
    context = {
        "project": project,
        "members": project.memberships.select_related("user").order_by("user__username"),
        "invitations": project.invitations.all(),
        "invitation_links": membership.open_invitation_links(project),
        "link_days": membership.INVITATION_LINK_DAYS,
        "roles": Role.choices,
        "summary": deployments.deletion_summary(project),
        "deployments": [(d, deployments.deletion_summary(d)) for d in project.deployments.all()],
        "hoplite_imports": project.hoplite_imports.all()[:10],
        "hoplite_exports": project.hoplite_exports.select_related("deployment")[:10],
    }
    running = (TaskStatus.QUEUED, TaskStatus.RUNNING)
    context["hoplite_running"] = any(
        job.status in running for job in [*context["hoplite_imports"], *context["hoplite_exports"]]
    )
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
        "hit_labels": labeling.labels_by_window([window.pk]).get(window.pk, []),
        "history": labeling.label_history(project, window.pk),
    }
    return render(request, "frontend/window.html", context)


@login_required
def deployment(request, project_id, deployment_id):
    project = project_for(request.user, project_id)
    deployment = get_object_or_404(Deployment, pk=deployment_id, project=project)
    context = {
        "project": project,
        "role": role_in(project, request.user),
        "deployment": deployment,
        "hop_s": deployments.hop_of(deployment),
        "heard_window_s": deployments.window_in_file(deployment),
        "server_folder": deployments.folder_under_root(deployment.server_folder) if deployment.server_folder else "",
        "progress": deployments.deployment_progress(deployment),
        "recordings": deployment.recordings.all(),
        "start_time_problems": deployments.start_time_problems(deployment),
        "search_indexes": index_summaries(project),
    }
    return render(request, "frontend/deployment.html", context)


RECORDING_SPAN_S = 30.0


@login_required
def recording(request, project_id, recording_id):
    """A recording in 30 s spans: its spectrogram (zoomed in the page from 5 s to the whole
    file; drag a region to search with it) and the windows of the span as a labeling list
    (``m`` searches with the current window)."""
    project = project_for(request.user, project_id)
    recording = get_object_or_404(
        Recording.objects.select_related("deployment"), pk=recording_id, deployment__project=project
    )
    duration = recording.duration_s or 0.0
    try:
        start = seconds(request.GET.get("start", "0"), "start")
    except InputError:
        start = 0.0  # a page link, not an API: show the recording from its start
    start = min(start, max(0.0, duration - 1))
    span_s = RECORDING_SPAN_S * recording.speed_factor  # 30 s heard: 3 s of a bat recording slowed 10x
    start = span_s * math.floor(start / span_s + 1e-6)  # a link's start may be a hair under its span's
    end = min(start + span_s, duration) if duration else start + span_s
    windows = recording.windows.defer("embedding").filter(start_s__gte=start, start_s__lt=end)
    hits = search_service.hits_for([(w.pk, 1.0) for w in windows])
    context = {
        "project": project,
        "recording": recording,
        "hits": hits,
        "hide_score": True,  # hits of a recording are in time order, not scored
        "labels": project.labels.all(),
        "span_start": start,
        "span_end": end,
        "previous_start": start - span_s if start > 0 else None,
        "next_start": end if end < duration else None,
        "axis_px": SpectrogramStyle().axis_px,
    }
    return render(request, "frontend/recording.html", context)


@login_required
def label_review(request, project_id, label_id):
    """Every window labeled for one label, filtered by annotator, value or disagreement; editable."""
    project = project_for(request.user, project_id)
    label = get_object_or_404(Label, pk=label_id, project=project)
    annotators = project.memberships.select_related("user").order_by("user__username")
    annotator = request.GET.get("annotator", "")
    value = request.GET.get("value", "")
    conflicts = request.GET.get("conflicts") == "1"
    annotator_id = next((m.user_id for m in annotators if m.user.username == annotator), None)
    ids = labeling.labeled_window_ids(
        label, annotator_id, value if value in LabelValue.values else "", conflicts_only=conflicts
    )
    try:
        offset = whole_number(request.GET.get("offset", "0"), "offset")
    except InputError:
        offset = 0
    page_ids = ids[offset : offset + search_service.PAGE_SIZE]
    filters = urlencode({"annotator": annotator, "value": value, "conflicts": "1" if conflicts else ""})
    context = {
        "project": project,
        "label": label,
        "labels": [label, *project.labels.exclude(pk=label.pk)],  # this label is the active one
        "annotators": annotators,
        "annotator": annotator,
        "value": value,
        "values": LabelValue.choices,
        "conflicts": conflicts,
        "total": len(ids),
        "hits": search_service.hits_for([(w, 1.0) for w in page_ids]),
        "hide_score": True,
        "offset": offset,
        "can_resolve": role_in(project, request.user) == Role.ADMIN,
        "resolve_url": reverse("api:annotation-resolve", args=[project.pk]),
    }
    if offset + search_service.PAGE_SIZE < len(ids):
        context["next_page"] = f"?{filters}&offset={offset + search_service.PAGE_SIZE}"
    if request.GET.get("partial"):
        return render(request, "frontend/_hit_items.html", {**context, "partial": True})
    return render(request, "frontend/label_review.html", context)


@login_required
def search(request, project_id):
    """Query by example. A new query (examples and filters in the address) is saved to the
    user's history and redirected to, so that reloading or going back never runs it twice."""
    project = project_for(request.user, project_id)
    context = {
        "project": project,
        "labels": project.labels.all(),
        "deployments": project.deployments.all(),
        "sites": sorted({d.site for d in project.deployments.all() if d.site}),
        "combine_choices": Combine.choices,
        "sun_events": SUN_EVENTS,
        "labeled_choices": LabeledFilter.choices,
        "hits": None,
        "error": "",
    }
    try:
        if "history" in request.GET:
            record_id = whole_number(request.GET["history"], "history")
            record = get_object_or_404(SearchRecord, pk=record_id, project=project)
            offset = whole_number(request.GET.get("offset", "0"), "offset")
            context.update(_search_results(project, request.user, record, offset))
            if request.GET.get("partial"):
                return render(request, "frontend/_hit_items.html", {**context, "partial": True})
        else:
            spec = search_service.spec_from_params(request.GET)
            if spec.positive_windows or spec.positive_clips:
                record = search_service.save_search(project, request.user, spec)
                return redirect(f"{reverse('frontend:search', args=[project.pk])}?history={record.pk}")
    except InputError as error:
        context["error"] = str(error)
    context["history"] = search_service.search_history(project, request.user)
    return render(request, "frontend/search.html", context)


def _search_results(project, user, record: SearchRecord, offset: int) -> dict:
    """The search page's context for one page of a saved search's results."""
    spec = search_service.spec_of(record)
    context = {
        "record": record,
        "spec": spec,
        "spec_query": urlencode(search_service.spec_params(spec)),
        "examples": _example_windows(spec),
        "offset": offset,
    }
    with standby_reads(user) as source:
        page = search_service.saved_results_page(project, record, offset)
    path = search_service.SearchPath(page.path).label if page.path else ""
    context.update(
        hits=page.hits, query_model=page.model, search_path=path, search_rescued=page.rescued, read_source=source
    )
    next_offset = offset + search_service.PAGE_SIZE
    if next_offset < record.result_count:
        context["next_page"] = f"?history={record.pk}&offset={next_offset}"
    return context


def _example_windows(spec) -> list[tuple[str, Window]]:
    """(role, window) for the spec's example windows, positives first, for the query panel."""
    ids = spec.positive_windows + spec.negative_windows
    windows = Window.objects.defer("embedding").select_related("recording").in_bulk(ids)
    return [("positive", windows[w]) for w in spec.positive_windows if w in windows] + [
        ("negative", windows[w]) for w in spec.negative_windows if w in windows
    ]


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
        "cross_validated": scoring.cross_validated(output),
        "interval": scoring.held_out_interval(output),
        "previous": previous_outputs.get(output.label_id),
        "has_curve": curve is not None,
        "windows_above": windows_above(output, output.threshold),
        "learning_curve": charts.learning_curve(
            learning_curve(output.classifier.project_id, output.label_id, output.classifier.version),
            output.classifier.version,
        ),
        "suggestion": review_queues.suggestion_for(output),
    }
    previous = panel["previous"]
    # Two versions compare only on one evaluation set: the held-out deployments' labels.
    panel["comparable"] = previous is not None and output.evaluated_on == previous.evaluated_on == (
        EvaluationSource.HELD_OUT_DEPLOYMENTS
    )
    if output.prototypes is not None:
        positive, negative = scoring.prototype_examples(output)
        panel["prototype_examples"], panel["negative_prototype_examples"] = _windows_of(positive), _windows_of(negative)
        panel["coinciding_prototypes"] = scoring.coinciding_prototypes_of(output)
    return panel


def _windows_of(groups: list[list[int]]) -> list[list[Window]]:
    """The windows of each group of ids, in order, with their recording and deployment."""
    ids = [window_id for group in groups for window_id in group]
    windows = Window.objects.defer("embedding").select_related("recording", "deployment").in_bulk(ids)
    return [[windows[window_id] for window_id in group if window_id in windows] for group in groups]


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
    context = {
        "project": project,
        "classifier": classifier,
        "labels": project.labels.all(),
        "hits": None,
        "queue_kinds": review_queues.KINDS,
        "sun_events": SUN_EVENTS,
        "deployments": project.deployments.filter(held_out=False),
        "sites": sorted(set(project.deployments.exclude(site="").values_list("site", flat=True))),
        "query": request.GET,
    }
    try:
        label_id = whole_number(request.GET.get("label", ""), "label")
        kind = request.GET.get("kind", review_queues.SUGGESTED)
        filters = context["filters"] = search_service.filters_from_params(request.GET)
        if kind == review_queues.SUGGESTED:
            context["suggestion"] = review_queues.suggestion(classifier, label_id)
        with standby_reads(request.user) as context["read_source"]:
            queue = review_queues.review_queue(classifier, label_id, kind, 50, filters)
            context["hits"] = search_service.hits_for(queue)
        context["kind"] = kind
        context["output"] = classifier.outputs.select_related("label").get(label_id=label_id)
        context["labels"] = project.labels.filter(pk=label_id)
        context["can_annotate"] = role_in(project, request.user) in Action.ANNOTATE.value
    except (InputError, ValueError) as error:
        context["error"] = str(error)
    return render(request, "frontend/review.html", context)


@login_required
def run(request, project_id, run_id):
    project = project_for(request.user, project_id)
    run = get_object_or_404(
        InferenceRun.objects.select_related("classifier", "deployment"), pk=run_id, classifier__project=project
    )
    try:
        filters = detection_filters.detection_filters_from_params(request.GET)
        filter_error = ""
    except InputError as error:
        filters, filter_error = detection_filters.DetectionFilters(), str(error)
    chosen = detection_filters.listed(run, filters)
    detections = list(chosen[:200])
    labels_by_window = labeling.labels_by_window([d.window.pk for d in detections])
    for detection in detections:
        detection.existing_labels = labels_by_window.get(detection.window.pk, [])
    done = run.status == TaskStatus.DONE
    zone = run.deployment.timezone
    sites = detection_rates.site_rates(run) if done else []
    context = {
        "project": project,
        "run": run,
        "detections": detections,
        "detections_count": chosen.count(),
        "events": filters.unit == "events",
        "event_count": run.events.count() if done else None,
        "filters": filters,
        "filter_error": filter_error,
        "sun_events": SUN_EVENTS,
        "export_query": urlencode(filters.as_params()),
        "reviews": detection_filters.REVIEWS,
        "labels": project.labels.all(),
        "rates": [
            (
                rates,
                charts.daily_rate_chart(rates.label, rates.days, zone),
                charts.diel_chart(rates.label, rates.hours, zone),
            )
            for rates in (detection_rates.run_rates(run) if done else [])
        ],
        "sun_charts": [
            (f"{rates.label}-around-{rates.event}", charts.sun_chart(rates))
            for rates in (detection_rates.run_sun_rates(run) if done else [])
        ],
        "sites": sites,
        "site_maps": charts.site_maps(project.deployments.all(), sites),
        "densities": call_density.run_densities(run) if done else [],
        "label_thresholds": list(
            zip(run.classifier.outputs.select_related("label").order_by("index"), run.label_thresholds, strict=False)
        ),
        "can_annotate": role_in(project, request.user) in Action.ANNOTATE.value,  # exports
    }
    return render(request, "frontend/run.html", context)


def map_page(request, project_id):
    """The project's map of its embedding space for one model (``?model=``, else the first
    its recordings were embedded with): drawn by a worker, coloured, hovered and lassoed in
    the page (app.js)."""
    project = project_for(request.user, project_id)
    model_ids = (
        Recording.objects.filter(deployment__project=project)
        .exclude(embedding_model=None)
        .values_list("embedding_model", flat=True)
        .distinct()
    )
    models = list(EmbeddingModel.objects.defer("class_names").filter(pk__in=model_ids).order_by("pk"))
    try:
        wanted = whole_number(request.GET.get("model", "0"), "model")
    except InputError:
        wanted = 0
    model = next((m for m in models if m.pk == wanted), models[0] if models else None)
    context = {
        "project": project,
        "models": models,
        "model": model,
        "map": project.embedding_maps.filter(model=model).first() if model else None,
        "labels": project.labels.all(),
        "colour_by": embedding_map.COLOUR_BY,
        "sample": embedding_map.MAP_SAMPLE,
        "can_draw": role_in(project, request.user) in Action.ANNOTATE.value,
    }
    return render(request, "frontend/map.html", context)


# Windows a map's lasso sends to labeling: a page of them (more are a search's job).
SELECTION_MAX = 500


def window_selection(request, project_id):
    """Windows picked on the map (``ids``, comma-separated, at most SELECTION_MAX, in that
    order), as a labeling list."""
    project = project_for(request.user, project_id)
    error = ""
    try:
        wanted = [whole_number(part, "ids") for part in request.GET.get("ids", "").split(",") if part][:SELECTION_MAX]
    except InputError as refused:
        wanted, error = [], str(refused)
    found = set(Window.objects.filter(pk__in=wanted, project=project).values_list("pk", flat=True))
    context = {
        "project": project,
        "hits": search_service.hits_for([(pk, 1.0) for pk in dict.fromkeys(wanted) if pk in found]),
        "hide_score": True,
        "labels": project.labels.all(),
        "error": error,
        "missing": len(set(wanted) - found),
    }
    return render(request, "frontend/selection.html", context)
