"""Query by example: examples combined, negatives pushed away, pages of hits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from annotations.embedding_store import project_window_embeddings, window_matrix
from annotations.errors import InputError
from annotations.models import ClipQuery, Combine, EmbeddingModel, Project, RecordingStatus, Window
from annotations.probes import unit_rows
from annotations.search.calls import one_per_call, windows_per_instant
from annotations.search.filters import SearchFilters
from annotations.search.hits import SearchHit, hits_for
from annotations.search.nearest import MAX_K, NearestWindows, SearchPath, nearest_window_ids

PAGE_SIZE = 50
# A saved search keeps its best windows, ranked once: five pages of the page's list. (All
# MAX_K cost 4x the time of the first page: hnsw.ef_search grows with k.)
SAVED_RESULTS = 250
NEGATIVE_WEIGHT = 0.5
MAX_EXAMPLES = 20


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """A query by example: what to look for, what to avoid, where to look."""

    positive_windows: tuple[int, ...] = ()
    negative_windows: tuple[int, ...] = ()
    positive_clips: tuple[int, ...] = ()
    combine: str = Combine.MEAN
    filters: SearchFilters = SearchFilters()


@dataclasses.dataclass(frozen=True)
class Examples:
    """The embeddings a search starts from. positives: float32 [P, D]; negatives: float32 [Q, D]."""

    model: EmbeddingModel
    positives: np.ndarray
    negatives: np.ndarray
    exclude_window_ids: tuple[int, ...]
    # Windows whose neighbourhood the query must find (the index's check, ``safety_net``):
    # the example windows, and where a dragged region began.
    anchor_window_ids: tuple[int, ...] = ()


def examples_for(project: Project, spec: SearchSpec) -> Examples:
    """The embeddings of a spec's example windows and clips, all of one model."""
    window_ids = list(dict.fromkeys(spec.positive_windows + spec.negative_windows))
    if not spec.positive_windows and not spec.positive_clips:
        raise InputError("give at least one example to search with: a window or a clip")
    if len(window_ids) + len(spec.positive_clips) > MAX_EXAMPLES:
        raise InputError(f"a search takes at most {MAX_EXAMPLES} examples")
    # One query reads the examples and checks they are the project's (the window row's own
    # project, no joins); the models are read without their class lists (thousands of
    # names, read only by a predicted-class filter): a search's fixed cost.
    stored = project_window_embeddings(project.pk, window_ids)
    if missing := [w for w in window_ids if w not in stored]:
        raise InputError(f"window {missing[0]} is not part of this project")
    by_id = EmbeddingModel.objects.defer("class_names").in_bulk({model_id for model_id, _ in stored.values()})
    models = {window_id: by_id[model_id] for window_id, (model_id, _) in stored.items()}
    clips = spec.positive_clips and list(
        ClipQuery.objects.filter(pk__in=spec.positive_clips, project=project).select_related("embedding_model")
    )
    if len(clips) != len(set(spec.positive_clips)):
        raise InputError("a clip query of this search is not part of this project")
    for clip in clips:
        if clip.status != RecordingStatus.DONE:
            reason = f": {clip.error}" if clip.error else ""
            raise InputError(f"clip {clip.filename} is not embedded yet ({clip.status}{reason})")
    used = set(models.values()) | {clip.embedding_model for clip in clips}
    if len(used) > 1:
        raise InputError("the examples come from different embedding models and cannot be compared")
    model = used.pop()
    positives = [stored[w][1] for w in spec.positive_windows] + [np.asarray(c.embedding) for c in clips]
    negatives = [stored[w][1] for w in spec.negative_windows]
    return Examples(
        model=model,
        positives=np.asarray(positives, dtype=np.float32).reshape(-1, model.embedding_dim),
        negatives=np.asarray(negatives, dtype=np.float32).reshape(-1, model.embedding_dim),
        exclude_window_ids=tuple(window_ids),
        anchor_window_ids=spec.positive_windows + _region_windows(clips),
    )


def _region_windows(clips: Sequence[ClipQuery]) -> tuple[int, ...]:
    """The window where each dragged region begins (an uploaded clip has none)."""
    found = []
    for clip in clips:
        if clip.recording_id is not None:
            windows = Window.objects.filter(recording_id=clip.recording_id, start_s__lte=clip.start_s or 0.0)
            found += windows.order_by("-start_s").values_list("pk", flat=True)[:1]
    return tuple(found)


def combined_scores(candidates: np.ndarray, examples: Examples, combine: str) -> np.ndarray:
    """Scores float [N] of candidate embeddings [N, D]: cosine with the mean example
    direction or the best cosine with any example, less NEGATIVE_WEIGHT times the best
    cosine with any negative example."""
    unit = unit_rows(candidates)
    positives = unit_rows(examples.positives)
    if combine == Combine.BEST:
        scores = (unit @ positives.T).max(axis=1)
    else:
        scores = unit @ unit_rows(positives.mean(axis=0, keepdims=True))[0]
    if len(examples.negatives):
        scores = scores - NEGATIVE_WEIGHT * (unit @ unit_rows(examples.negatives).T).max(axis=1)
    return scores


@dataclasses.dataclass(frozen=True)
class SearchPage:
    model: EmbeddingModel
    hits: list[SearchHit]
    path: str  # SearchPath: the least exact of the paths that answered
    rescued: bool  # the index's answer failed its check, and another path answered


@dataclasses.dataclass(frozen=True)
class Ranked:
    model: EmbeddingModel
    scored: list[tuple[int, float]]  # (window_id, score), best first
    path: str  # SearchPath
    rescued: bool = False  # the index's answer failed its check, and another path answered
    widened: bool = False  # the index's answer missed its probe windows, and a wider search answered


def query_directions(examples: Examples, combine: str) -> np.ndarray:
    """The directions float32 [Q, D] whose nearest windows hold a search's best: the mean
    example direction (one) or each example's (Q of them, for best match), less
    NEGATIVE_WEIGHT times the negatives' mean direction.

    With one direction and at most one negative, combined_scores is exactly the cosine
    with it times its length, so its nearest windows are the best; with several negatives
    their mean stands in for their max (and with best match, each example's direction for
    the best of them), and re-ranking a pool exactly corrects the order.
    """
    positives = unit_rows(examples.positives)
    directions = positives if combine == Combine.BEST else unit_rows(positives.mean(axis=0, keepdims=True))
    if len(examples.negatives):
        directions = directions - NEGATIVE_WEIGHT * unit_rows(examples.negatives).mean(axis=0)
    return directions


def ranked_windows(
    project: Project,
    spec: SearchSpec,
    wanted: int,
    path_limits: tuple[int | None, int | None] = (None, None),
) -> Ranked:
    """The best ``wanted`` (at most MAX_K) windows of a query by example; ``path_limits``
    (exact_scan_max, sketch_scan_max) as nearest_window_ids takes them."""
    if spec.combine not in Combine.values:
        raise InputError(f"combine must be one of {', '.join(Combine.values)}")
    examples = examples_for(project, spec)
    wanted = min(max(int(wanted), 1), MAX_K)
    per_recording = spec.filters.one_per_recording
    directions = query_directions(examples, spec.combine)
    # Overlapping windows of one call count once (annotations.search.calls): enough more
    # windows are ranked that ``wanted`` calls remain.
    depth = 1 if per_recording or spec.filters.all_overlapping else windows_per_instant(project, examples.model)

    def calls(scored: list[tuple[int, float]]) -> list[tuple[int, float]]:
        return one_per_call(scored, examples.model.window_s, wanted, depth)

    def nearest(query: np.ndarray, k: int) -> NearestWindows:
        return nearest_window_ids(
            project,
            examples.model,
            query,
            k,
            examples.exclude_window_ids,
            spec.filters,
            *path_limits,
            anchor_window_ids=examples.anchor_window_ids,
            pushed=bool(len(examples.negatives)),
        )

    if len(directions) == 1 and len(examples.negatives) <= 1:
        # One direction whose cosine, times its length, is the combined score itself (one
        # example, the mean of several, one negative): its nearest windows are the page.
        asked = min(depth * wanted, MAX_K)
        length = float(np.linalg.norm(directions[0]))
        while True:
            found = nearest(directions[0], asked)
            chosen = calls([(window_id, cosine * length) for window_id, cosine in found.scored])
            # Calls spread over more windows than guessed: ask again for twice as many.
            if len(chosen) >= wanted or len(found.scored) < asked or asked >= MAX_K:
                return Ranked(examples.model, chosen, found.path, found.rescued, found.widened)
            asked = min(2 * asked, MAX_K)
    # A pool larger than the page (up to the index query's MAX_K), so that re-ranking has
    # something to promote (under one_per_recording, each of its windows is a recording's best).
    pool = min(2 * depth * wanted, MAX_K)
    candidate_ids: dict[int, None] = {}
    paths = set()
    rescued = widened = False
    for query in directions:
        found = nearest(query, pool)
        candidate_ids.update((window_id, None) for window_id, _ in found.scored)
        paths.add(found.path)
        rescued |= found.rescued
        widened |= found.widened
    # The least exact of the paths taken.
    path = next(p for p in (SearchPath.INDEX, SearchPath.SKETCH, SearchPath.EXACT) if p in paths)
    if not candidate_ids:
        return Ranked(examples.model, [], path, rescued, widened)
    ids = np.fromiter(candidate_ids, dtype=np.int64)
    recording_ids, embeddings = window_matrix(ids.tolist(), examples.model.embedding_dim)
    scores = combined_scores(embeddings, examples, spec.combine)
    order = np.argsort(-scores, kind="stable")
    if per_recording:
        _, first = np.unique(recording_ids[order], return_index=True)
        order = order[np.sort(first)]  # each recording's best, still best first
    return Ranked(examples.model, calls([(int(ids[i]), float(scores[i])) for i in order]), path, rescued, widened)


def run_search(project: Project, spec: SearchSpec, k: int = PAGE_SIZE, offset: int = 0) -> SearchPage:
    """Hits ``offset`` to ``offset + k`` (at most MAX_K in all) of a query by example."""
    offset = max(int(offset), 0)
    ranked = ranked_windows(project, spec, offset + max(int(k), 1))
    return SearchPage(ranked.model, hits_for(ranked.scored[offset : offset + k]), ranked.path, ranked.rescued)
