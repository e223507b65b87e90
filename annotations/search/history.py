"""The user's search history, each entry told in words."""

from __future__ import annotations

import dataclasses

from annotations.errors import InputError
from annotations.models import ClipQuery, Combine, LabeledFilter, Project, SearchRecord, Window
from annotations.search.filters import clock
from annotations.search.hits import hits_for, window_start_time
from annotations.search.ranking import PAGE_SIZE, SAVED_RESULTS, SearchPage, SearchSpec, examples_for, ranked_windows
from annotations.search.spec import spec_of


def save_search(project: Project, user, spec: SearchSpec) -> SearchRecord:
    """Remember a search in the user's history (after checking that it can run)."""
    examples_for(project, spec)
    f = spec.filters
    if f.deployment_id is not None and not project.deployments.filter(pk=f.deployment_id).exists():
        raise InputError(f"deployment {f.deployment_id} is not part of this project")
    if f.label_id is not None and not project.labels.filter(pk=f.label_id).exists():
        raise InputError(f"label {f.label_id} is not part of this project")
    return SearchRecord.objects.create(
        project=project,
        user=user,
        positive_windows=list(spec.positive_windows),
        negative_windows=list(spec.negative_windows),
        positive_clips=list(spec.positive_clips),
        combine=spec.combine,
        **dataclasses.asdict(f),  # SearchRecord's filter columns are named as SearchFilters' fields
    )


def saved_results_page(project: Project, record: SearchRecord, offset: int, k: int = PAGE_SIZE) -> SearchPage:
    """A page of a saved search's results as they were when it first ran (the best
    SAVED_RESULTS are ranked and kept then), so going back in the history shows what was
    seen, whatever was ingested or labeled since."""
    if record.result_window_ids is None:
        ranked = ranked_windows(project, spec_of(record), SAVED_RESULTS)
        record.embedding_model = ranked.model
        record.result_window_ids = [window_id for window_id, _ in ranked.scored]
        record.result_scores = [score for _, score in ranked.scored]
        record.result_count = len(ranked.scored)
        record.result_path, record.result_rescued = ranked.path, ranked.rescued
        record.save(
            update_fields=[
                "embedding_model",
                "result_window_ids",
                "result_scores",
                "result_count",
                "result_path",
                "result_rescued",
            ]
        )
    scored = list(zip(record.result_window_ids, record.result_scores, strict=True))
    hits = hits_for(scored[offset : offset + k])
    return SearchPage(record.embedding_model, hits, record.result_path, record.result_rescued)


@dataclasses.dataclass(frozen=True)
class HistoryEntry:
    """A saved search as the history list tells it: what it searched with, and where."""

    record: SearchRecord
    examples: list[str]  # each example's file and time; pushed-away ones start with "not"
    filters: list[str]


def search_history(project: Project, user, limit: int = 20) -> list[HistoryEntry]:
    """The user's latest searches, newest first, each with its examples and filters told."""
    records = list(
        SearchRecord.objects.filter(project=project, user=user).select_related("deployment", "label")[:limit]
    )
    windows = (
        Window.objects.defer("embedding")
        .select_related("recording__deployment")
        .in_bulk({w for r in records for w in r.positive_windows + r.negative_windows})
    )
    clips = ClipQuery.objects.select_related("recording").in_bulk({c for r in records for c in r.positive_clips})
    return [
        HistoryEntry(
            record,
            [_told_window(windows[w]) for w in record.positive_windows if w in windows]
            + [_told_clip(clips[c]) for c in record.positive_clips if c in clips]
            + [f"not {_told_window(windows[w])}" for w in record.negative_windows if w in windows],
            _told_filters(record),
        )
        for record in records
    ]


def _told_window(window: Window) -> str:
    started = window_start_time(window)
    when = f" ({started:%Y-%m-%d %H:%M:%S %Z})" if started else ""
    return f"{window.recording.filename} at {window.start_s:g} s{when}"


def _told_clip(clip: ClipQuery) -> str:
    name = f"a region of {clip.recording.filename}" if clip.recording else f"clip {clip.filename}"
    if clip.start_s is None and clip.end_s is None:
        return name
    end = f"{clip.end_s:g}" if clip.end_s is not None else "end"
    return f"{name}, {clip.start_s or 0:g}–{end} s"


def _told_filters(record: SearchRecord) -> list[str]:
    told = ["best match of the examples"] if record.combine == Combine.BEST else []
    if record.deployment:
        told.append(f"deployment {record.deployment.name}")
    if record.site:
        told.append(f"site {record.site}")
    if record.date_from or record.date_to:
        told.append(f"days {record.date_from or '…'} to {record.date_to or '…'}")
    if record.hour_from is not None or record.hour_to is not None:
        hour_to = 24 if record.hour_to is None else record.hour_to
        told.append(f"{clock(record.hour_from or 0)}–{clock(hour_to)} local")
    if record.predicted_class:
        told.append(f"model hears {record.predicted_class!r}")
    if record.label and record.labeled != LabeledFilter.ANY:  # a label alone filters nothing
        told.append(f"{'not ' if record.labeled == LabeledFilter.UNLABELED else ''}labeled {record.label.name}")
    if record.one_per_recording:
        told.append("best window per recording")
    if record.all_overlapping:
        told.append("every overlapping window")
    return told
