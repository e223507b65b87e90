"""Benchmark: search, filters, review queues and scoring at a season's scale.

    .venv/bin/python -m bench.scale [--windows 1000000] [--dim 1024] [--queries 30] [--keep] [--hop 1.5]

Builds ``--windows`` windows of embeddings shaped like real BirdNET output
(``bench.real_like``: anchored on real embeddings, non-negative, a common mean carrying
half the norm, high intrinsic dimension, background drifting within each recording,
power-law call types) through the project's own write path (``replace_windows``), in a
database of its own: a big project of 18 deployments over 6 sites (90% of the windows;
three sites in America/New_York and three in Europe/Berlin, so that date filters cross
both changes of clock in March) and a small one (10%), one window every 3 s (1024-d,
BirdNET's framing) or 5 s (1536-d, Perch 2.0's), hour-long recordings; with ``--hop``,
windows overlap (3 s every 1.5 s) and searches keep one hit per call
(``annotations.search.calls``), measured against exact numpy grouped the same way. Then it builds each
project's search index with the project's own task code and prints, each beside exact
numpy on the same vectors in the same run:

- write rate into an empty table, and of a new deployment into a project without an index
  and into the indexed project, on the same table;
- index build time (until the project's graph serves, and until its deployments' own graphs are built)
  and bytes per window (table and indexes);
- for every filter case x query kind (``QUERY_KINDS``: queries composed as the page
  composes them, two thirds calls and one third background), p50 / p95, the paths taken,
  recall@100 against exact cosine over the stored (float16) vectors, tie-tolerant recall
  (a hit counts when its exact score is within ``TIE`` of the 100th best) for call and
  background queries apart, and the worst query;
- project scoring windows/s against reading the same vectors and a numpy product;
- review queue pages (suggested, top, margin, bins, diverse: the queue and its hits) after
  scoring, under each filter of the big project (median and worst).

``--keep`` keeps the database (``perch_agile_bench``) and a later ``--reuse`` searches it
again without writing or building (the same ``--windows``, ``--dim`` and seed).
``measure_searches`` is also what the test suite's 20,000-window smoke test runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import multiprocessing
import os
import statistics
import tempfile
import time
import zoneinfo

import numpy as np

from bench.database import bench_database
from bench.real_like import real_like_embeddings

K = 100
# Above this many windows, the corpus's embeddings and each project's exact scores live in
# files on disk (float16 embeddings: 20 GB at 10M x 1024-d, beside the database's 45),
# read back in chunks, and never all in memory.
IN_MEMORY_MAX_WINDOWS = 2_000_000
# Rows a chunked numpy pass reads at once.
NUMPY_CHUNK = 100_000
# Exact cosines of stored float16 vectors are good to about this: hits closer than it to
# the 100th best are ties.
TIE = 1e-3
# 35 days over both changes of clock: America/New_York on 8 March 2026, Europe/Berlin on 29 March.
SEASON_START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
SEASON_DAYS = 35
BIG_DEPLOYMENTS, SITES, SMALL_DEPLOYMENTS = 18, 6, 2
US_ZONE, EU_ZONE = "America/New_York", "Europe/Berlin"


def site_zone(site: int) -> str:
    return US_ZONE if site < SITES // 2 else EU_ZONE


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The synthetic season as numpy knows it, row i = the i-th window written.

    embeddings: float32 [N, D], or float16 in a file on disk (``on_disk``); window_ids,
    project, deployment, site, recording, call_type (-1 for background): int [N]; started:
    datetime64[ms] [N] (UTC); start_s: float [N], the window's start in its recording;
    local_hour: int [N] and local_day: datetime64[D] [N], in each deployment's zone;
    window_s, hop_s: the framing.
    """

    embeddings: np.ndarray
    window_ids: np.ndarray
    project: np.ndarray
    deployment: np.ndarray
    site: np.ndarray
    recording: np.ndarray
    call_type: np.ndarray
    started: np.ndarray
    local_hour: np.ndarray
    local_day: np.ndarray
    start_s: np.ndarray
    window_s: float
    hop_s: float

    @property
    def overlapping(self) -> bool:
        return self.hop_s < self.window_s


def _write_deployment(
    deployment, model, embeddings: np.ndarray, hop_s: float, recording_s: float, first_recording: int
):
    """Recordings of ``recording_s`` spread evenly over a season of SEASON_DAYS (a recorder
    on a schedule, so they start at every hour of the day), through replace_windows.
    Returns (window ids, UTC starts, recording index), one per row of ``embeddings``."""
    from annotations.embedding_store import replace_windows
    from annotations.models import Recording, RecordingStatus

    per_recording = int(recording_s / hop_s)
    window_s = model.window_s
    count = -(-len(embeddings) // per_recording)
    # An uneven stride (not a divisor of a day), so that starts drift through the hours.
    stride_s = max(recording_s, SEASON_DAYS * 86400 / count) + 1_234
    recordings = Recording.objects.bulk_create(
        Recording(
            deployment=deployment,
            path=f"/bench/{deployment.pk}/{i:05d}.wav",
            filename=f"{i:05d}.wav",
            status=RecordingStatus.DONE,
            duration_s=recording_s,
            hop_s=hop_s,
            # Each recorder's schedule offset a little from the others'.
            started_at=SEASON_START + dt.timedelta(seconds=round(i * stride_s + deployment.pk * 4_001 % 86_400)),
        )
        for i in range(count)
    )
    ids = []
    for i, recording in enumerate(recordings):
        chunk = np.asarray(embeddings[i * per_recording : (i + 1) * per_recording], np.float32)
        starts = np.arange(len(chunk), dtype=np.float64) * hop_s
        replace_windows(recording.pk, model, starts, starts + window_s, chunk)
        ids.append(
            np.fromiter(recording.windows.order_by("start_s").values_list("id", flat=True), np.int64, len(chunk))
        )
    return np.concatenate(ids), *_starts(recordings, [len(c) for c in ids], hop_s, first_recording)


def _starts(recordings, counts: list[int], hop_s: float, first_recording: int) -> tuple[np.ndarray, np.ndarray]:
    """(UTC start datetime64[ms] [N], recording index [N]) of the windows of ``recordings``."""
    started = np.concatenate(
        [
            np.datetime64(recording.started_at.replace(tzinfo=None), "ms")
            + np.round(np.arange(count) * hop_s * 1000).astype("timedelta64[ms]")
            for recording, count in zip(recordings, counts, strict=True)
        ]
    )
    return started, np.concatenate([np.full(c, first_recording + i) for i, c in enumerate(counts)])


def local_times(started: np.ndarray, zone: str) -> tuple[np.ndarray, np.ndarray]:
    """(local hour int [N], local day datetime64[D] [N]) of UTC starts datetime64[s] [N].
    Clocks change on whole UTC hours, so one offset per UTC hour is exact."""
    hours = started.astype("datetime64[h]")
    unique, inverse = np.unique(hours, return_inverse=True)
    tz = zoneinfo.ZoneInfo(zone)
    offsets = np.array(
        [
            dt.datetime.fromisoformat(str(h)).replace(tzinfo=dt.UTC).astimezone(tz).utcoffset().total_seconds()
            for h in unique
        ],
        dtype=np.int64,
    )
    local = started + offsets[inverse].astype("timedelta64[s]")
    return (local.astype("datetime64[h]").astype(np.int64) % 24), local.astype("datetime64[D]")


def corpus_layout(n: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """[(project 0 big / 1 small, site)] per deployment, and row bounds [deployments + 1]."""
    layout = [(0, d % SITES) for d in range(BIG_DEPLOYMENTS)] + [(1, SITES + d) for d in range(SMALL_DEPLOYMENTS)]
    share = np.array([0.9 / BIG_DEPLOYMENTS] * BIG_DEPLOYMENTS + [0.1 / SMALL_DEPLOYMENTS] * SMALL_DEPLOYMENTS)
    return layout, np.concatenate([[0], np.round(np.cumsum(share) * n).astype(int)])


def build_corpus(user, n: int, dim: int, recording_s: float = 3600.0, seed: int = 0, hop_s: float | None = None):
    """Two projects, written deployment by deployment, windows every ``hop_s`` (by default
    the window's length); returns (big, small, model, corpus, write rows/s before any index)."""
    from annotations.deployments import create_deployment, create_project
    from annotations.embedding_store import register_embedding_model

    window_s = 3.0 if dim <= 1024 else 5.0
    hop_s = hop_s or window_s
    model = register_embedding_model("bench-scale", "1", dim, window_s, window_s, 32_000)
    generated = real_like_embeddings(n, dim, int(recording_s / hop_s), seed, out=large_array((n, dim), np.float16))
    big, small = create_project(user, "season", labels=["call"]), create_project(user, "small", labels=["call"])
    layout, bounds = corpus_layout(n)
    pieces = []
    started_writing = time.perf_counter()
    recordings = 0
    for index, (project, site) in enumerate(layout):
        zone = site_zone(site) if project == 0 else EU_ZONE
        deployment = create_deployment((big, small)[project], f"D{index}", site=f"S{site}", timezone=zone)
        rows = generated.embeddings[bounds[index] : bounds[index + 1]]
        ids, started, recording = _write_deployment(deployment, model, rows, hop_s, recording_s, recordings)
        recordings = int(recording.max()) + 1
        pieces.append((ids, project, index, site, recording, started, zone))
    rate = n / (time.perf_counter() - started_writing)
    return big, small, model, _corpus(generated, pieces, window_s, hop_s), rate


def _corpus(generated, pieces, window_s: float, hop_s: float) -> Corpus:
    columns: dict[str, list] = {name: [] for name in ("window_ids", "project", "deployment", "site", "recording")}
    columns.update(started=[], local_hour=[], local_day=[])
    for ids, project, index, site, recording, started, zone in pieces:
        hour, day = local_times(started, zone)
        for name, values in (
            ("window_ids", ids),
            ("project", np.full(len(ids), project)),
            ("deployment", np.full(len(ids), index)),
            ("site", np.full(len(ids), site)),
            ("recording", recording),
            ("started", started),
            ("local_hour", hour),
            ("local_day", day),
        ):
            columns[name].append(values)
    merged = {name: np.concatenate(values) for name, values in columns.items()}
    # Rows run through each recording in start order: a row's place in its recording, times the hop.
    recording = merged["recording"]
    assert np.all(np.diff(recording) >= 0), "rows are written recording by recording"
    start_s = (np.arange(len(recording)) - np.searchsorted(recording, recording)) * hop_s
    return Corpus(
        embeddings=generated.embeddings,
        call_type=generated.call_type,
        start_s=start_s,
        window_s=window_s,
        hop_s=hop_s,
        **merged,
    )


def reopen_corpus(n: int, dim: int, recording_s: float = 3600.0, seed: int = 0):
    """The projects, model and corpus of a kept bench database (``--keep``): the same
    embeddings regenerated, the window ids read back in the order they were written."""
    from annotations.models import EmbeddingModel, Project, Recording, Window

    big, small = Project.objects.get(name="season"), Project.objects.get(name="small")
    model = EmbeddingModel.objects.get(name="bench-scale", embedding_dim=dim)
    hop_s = Recording.objects.filter(deployment__project=big).values_list("hop_s", flat=True).first() or model.hop_s
    generated = real_like_embeddings(n, dim, int(recording_s / hop_s), seed, out=large_array((n, dim), np.float16))
    _, bounds = corpus_layout(n)
    pieces = []
    recordings_seen = 0
    for index, deployment in enumerate(
        [*big.deployments.order_by("pk"), *small.deployments.order_by("pk")],
    ):
        recordings = list(Recording.objects.filter(deployment=deployment).order_by("pk"))
        windows = Window.objects.filter(deployment=deployment).order_by("recording_id", "start_s")
        ids = np.fromiter(windows.values_list("id", flat=True), np.int64)
        assert len(ids) == bounds[index + 1] - bounds[index], "the kept database holds another corpus"
        counts = [r.windows_done for r in recordings]
        started, recording = _starts(recordings, counts, hop_s, recordings_seen)
        recordings_seen += len(recordings)
        project = 0 if deployment.project_id == big.pk else 1
        pieces.append((ids, project, index, int(deployment.site[1:]), recording, started, deployment.timezone))
    return big, small, model, _corpus(generated, pieces, model.window_s, hop_s)


@dataclasses.dataclass(frozen=True)
class Query:
    """A query by example as the page composes it, in corpus rows: ``kind`` one of
    QUERY_KINDS; ``clip`` float32 [D] for an uploaded clip's embedding."""

    kind: str
    positives: tuple[int, ...]
    negatives: tuple[int, ...]
    call: bool  # a call type's windows, or a recording's background
    clip: np.ndarray | None = None


# window: one window found (searched at its stored scale); clip: an uploaded clip,
# embedded at its own scale and level; examples: three of one sound, by
# their mean direction (unit length); examples + negative: the same, pushing one other
# sound away; best per recording: one window, each recording's best only.
QUERY_KINDS = ("window", "clip", "examples", "examples + negative", "best per recording")


def compose_queries(corpus: Corpus, project: int, count: int, seed: int = 1) -> list[Query]:
    """``count`` queries of each kind over a project's windows (0 big, 1 small): two thirds
    calls (three windows of one call type), one third background (three windows of one
    recording)."""
    rng = np.random.default_rng(seed)
    rows = np.nonzero(corpus.project == project)[0]
    calls = rows[corpus.call_type[rows] >= 0]
    background = rows[corpus.call_type[rows] < 0]
    queries = []
    for i in range(count):
        call = i % 3 != 2
        first = int(rng.choice(calls if call else background))
        if call:
            same = calls[corpus.call_type[calls] == corpus.call_type[first]]
        else:
            same = background[corpus.recording[background] == corpus.recording[first]]
        others = [int(r) for r in rng.permutation(same) if r != first][:2]
        examples = (first, *others) if len(others) == 2 else (first,)
        other = calls[corpus.call_type[calls] != corpus.call_type[first]] if call else calls
        negative = (int(rng.choice(other)),)
        # An uploaded clip: the same sound in another recording, at another level (the
        # embedding of a mix of this window and another of its kind, at the clip's scale).
        other_of_kind = int(rng.choice(same)) if len(same) > 1 else first
        mixed = 0.7 * corpus.embeddings[first].astype(np.float32) + 0.3 * corpus.embeddings[other_of_kind]
        clip = rng.uniform(0.3, 3.0) * mixed
        queries += [
            Query("window", (first,), (), call),
            Query("clip", (), (), call, clip.astype(np.float32)),
            Query("examples", examples, (), call),
            Query("examples + negative", examples, negative, call),
            Query("best per recording", (first,), (), call),
        ]
    return queries


def exact_scores(corpus: Corpus, queries: list[Query], chunk: int = 100_000) -> np.ndarray:
    """Exact scores float32 [Q, N] of every window for each query, as annotations.search
    ranks them (``combined_scores``: cosine with the mean example direction, less
    NEGATIVE_WEIGHT times the cosine with the negative), over the stored (float16) vectors;
    -inf for a query's own examples, which are never hits."""
    from annotations.search import NEGATIVE_WEIGHT

    def stored_unit(rows) -> np.ndarray:
        return _unit(corpus.embeddings[rows].astype(np.float16).astype(np.float32))

    directions = np.stack(
        [
            _unit(q.clip.astype(np.float16).astype(np.float32))
            if q.clip is not None
            else _unit(stored_unit(list(q.positives)).mean(axis=0))
            for q in queries
        ]
    )
    negatives = np.stack(
        [stored_unit(q.negatives[0]) if q.negatives else np.zeros(directions.shape[1], np.float32) for q in queries]
    )
    n = len(corpus.embeddings)
    scores = large_array((len(queries), n), np.float32)
    for first in range(0, n, chunk):
        unit = stored_unit(slice(first, first + chunk))
        scores[:, first : first + len(unit)] = (unit @ directions.T - NEGATIVE_WEIGHT * (unit @ negatives.T)).T
    for i, q in enumerate(queries):
        scores[i, list(q.positives + q.negatives)] = -np.inf
    return scores


def large_array(shape: tuple[int, int], on_disk_dtype, in_memory_dtype=np.float32) -> np.ndarray:
    """A zeroed array of ``shape``: in memory, or past IN_MEMORY_MAX_WINDOWS along either
    side, in a file (of ``on_disk_dtype``) that is gone when the process ends."""
    if max(shape) <= IN_MEMORY_MAX_WINDOWS:
        return np.zeros(shape, in_memory_dtype)
    folder = os.environ.get("PERCH_AGILE_BENCH_TMP")  # by default the system's temporary folder
    return np.memmap(tempfile.TemporaryFile(dir=folder), on_disk_dtype, "w+", shape=shape)


def numpy_pass(corpus: Corpus, rows: int, query: np.ndarray) -> np.ndarray:
    """The timing reference for one search: numpy's product of the first ``rows``
    embeddings (the big project's) with ``query`` [D], NUMPY_CHUNK rows at a time, keeping
    the best K; their rows [K], best first."""
    best_rows, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    for first in range(0, rows, NUMPY_CHUNK):
        chunk = corpus.embeddings[first : min(rows, first + NUMPY_CHUNK)].astype(np.float32, copy=False)
        scores = np.concatenate([best_scores, chunk @ query])
        candidates = np.concatenate([best_rows, np.arange(first, first + len(chunk))])
        kept = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
        best_rows, best_scores = candidates[kept], scores[kept]
    return best_rows[np.argsort(-best_scores)]


def big_project_rows(corpus: Corpus) -> int:
    """How many rows the big project has: the first ones, as ``build_corpus`` writes them."""
    rows = int((corpus.project == 0).sum())
    assert not corpus.project[:rows].any(), "the big project's rows come first"
    return rows


@dataclasses.dataclass(frozen=True)
class SearchFigure:
    case: str
    kind: str
    share: float  # of all windows that the case's filter leaves
    p50_ms: float
    p95_ms: float
    recall: float  # mean recall@K against exact cosine over the stored (float16) vectors
    tied_calls: float  # mean tie-tolerant recall@K of call queries
    tied_background: float  # ... of background queries
    worst: float  # the lowest tie-tolerant recall of any query
    paths: str
    rescued: int  # queries whose index answer failed its check (annotations.search.safety_net)
    widened: int = 0  # queries whose index answer missed its probe windows (annotations.search_probe)
    cold_p50_ms: float = float("nan")  # the same queries the first time (p50_ms: the second)

    @property
    def name(self) -> str:
        return f"{self.case} | {self.kind}"

    @property
    def tied(self) -> float:
        return min(self.tied_calls, self.tied_background)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def _best_of(action, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _open_database(name: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = name
    django.setup()


def search_process() -> concurrent.futures.ProcessPoolExecutor:
    """A fresh process on the bench database, holding what a web worker holds (Django and
    a connection): searches are timed there, so that this process's million-entry arrays
    and its garbage collector add nothing to a search's time."""
    from django.db import connection

    return concurrent.futures.ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_open_database,
        initargs=(connection.settings_dict["NAME"],),
    )


def timed_searches(project_id: int, filters, searches: list[tuple], crossovers: tuple[int | None, int | None]):
    """In the search process: ([ms per query], [window ids found], [path], [(rescued, widened)]) of each search
    (positive window ids, negative window ids, clip embedding or None, one per recording),
    through the app's own ranked_windows (or, for a clip, the nearest_window_ids it calls)."""
    from annotations.models import EmbeddingModel, Project
    from annotations.search import SearchSpec, nearest_window_ids, ranked_windows
    from annotations.search.calls import one_per_call, windows_per_instant

    project = Project.objects.get(pk=project_id)
    model = EmbeddingModel.objects.get(name="bench-scale")
    latencies, results, paths, rescues = [], [], [], []
    for positives, negatives, clip, per_recording in searches:
        started = time.perf_counter()
        if clip is not None:  # what ranked_windows does for one clip alone
            depth = windows_per_instant(project, model)
            found = nearest_window_ids(project, model, clip, K * depth, (), filters, *crossovers)
            scored = one_per_call(found.scored, model.window_s, K, depth)
            path, rescued = found.path, (found.rescued, found.widened)
        else:
            spec = SearchSpec(
                positive_windows=positives,
                negative_windows=negatives,
                filters=dataclasses.replace(filters, one_per_recording=per_recording),
            )
            ranked = ranked_windows(project, spec, K, crossovers)
            scored, path, rescued = ranked.scored, ranked.path, (ranked.rescued, ranked.widened)
        latencies.append(1000 * (time.perf_counter() - started))
        results.append([window_id for window_id, _ in scored])
        paths.append(str(path))
        rescues.append(rescued)
    return latencies, results, paths, rescues


class InThisProcess:
    """A searcher that runs here: the smoke test's rows live in its own transaction."""

    def submit(self, function, *args) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        future.set_result(function(*args))
        return future

    def shutdown(self) -> None:
        pass


def search_cases(big, small, corpus: Corpus) -> list[tuple[str, object, object, np.ndarray]]:
    """(name, project, SearchFilters, mask bool [N] of the windows it leaves) per case."""
    from annotations.search import SearchFilters

    deployment_ids = list(big.deployments.order_by("pk").values_list("pk", flat=True))
    in_big, in_small = corpus.project == 0, corpus.project == 1
    day = np.datetime64(SEASON_START.date(), "D")
    us_change, eu_change = day + 7, day + 28  # 8 and 29 March 2026
    early = (corpus.local_hour >= 4) & (corpus.local_hour < 7)
    night = (corpus.local_hour >= 22) | (corpus.local_hour < 4)
    us_days = (corpus.local_day >= us_change - 1) & (corpus.local_day <= us_change + 1)
    eu_days = (corpus.local_day >= eu_change - 5) & (corpus.local_day <= eu_change + 4)

    def dates(first, last):
        return SearchFilters(date_from=first.astype(dt.date), date_to=last.astype(dt.date))

    return [
        ("no filter", big, SearchFilters(), in_big),
        ("one deployment", big, SearchFilters(deployment_id=deployment_ids[3]), corpus.deployment == 3),
        ("one site", big, SearchFilters(site="S2"), in_big & (corpus.site == 2)),
        ("hours 4-7 local", big, SearchFilters(hour_from=4, hour_to=7), in_big & early),
        ("3 days over the US change", big, dates(us_change - 1, us_change + 1), in_big & us_days),
        (
            "one deployment, hours 4-7",
            big,
            SearchFilters(deployment_id=deployment_ids[3], hour_from=4, hour_to=7),
            (corpus.deployment == 3) & early,
        ),
        (
            "site over 10 days, EU change",
            big,
            dataclasses.replace(dates(eu_change - 5, eu_change + 4), site="S4"),
            in_big & (corpus.site == 4) & eu_days,
        ),
        ("small project", small, SearchFilters(), in_small),
        ("small project, hours 22-4", small, SearchFilters(hour_from=22, hour_to=4), in_small & night),
    ]


def measure_searches(
    big,
    small,
    model,
    corpus: Corpus,
    queries: int,
    crossovers: tuple[int | None, int | None] | None = None,
    seed=1,
    searcher=None,
    cases: list[str] | None = None,
) -> list[SearchFigure]:
    """SearchFigures for every filter case x query kind; ``crossovers`` (exact_scan_max,
    sketch_scan_max) override the search's; ``searcher`` (``search_process()``, or by
    default this process) runs the timed searches; ``cases`` picks some by name."""
    crossovers = crossovers or (None, None)  # the search's own
    ids = corpus.window_ids
    per_project = []
    for project in (0, 1):
        composed = compose_queries(corpus, project, queries, seed)
        searches = [
            (
                tuple(int(ids[r]) for r in q.positives),
                tuple(int(ids[r]) for r in q.negatives),
                q.clip,
                q.kind == "best per recording",
            )
            for q in composed
        ]
        per_project.append((composed, exact_scores(corpus, composed), searches))
    figures = []
    searcher = searcher or InThisProcess()
    try:
        for name, project, filters, mask in search_cases(big, small, corpus):
            if cases is None or name in cases:
                of_project = per_project[0 if project == big else 1]
                figures += _case_figures(name, project, filters, mask, *of_project, corpus, searcher, crossovers)
    finally:
        searcher.shutdown()
    return figures


def _case_figures(name, project, filters, mask, composed, scores, searches, corpus, searcher, crossovers):
    # Every query of a case is timed first, its recall computed afterwards: numpy work
    # between queries would otherwise compete with PostgreSQL for the cores. Twice: first
    # cold (rows read from disk or the OS cache), then warm, as in an annotator's session.
    passes = []
    for _ in ("cold", "warm"):
        latencies, results, paths, rescues = searcher.submit(
            timed_searches, project.pk, filters, searches, crossovers
        ).result()
        passes.append(latencies)
    figures = []
    for kind in QUERY_KINDS:
        picked = [i for i, q in enumerate(composed) if q.kind == kind]
        recalls, tied = [], {True: [], False: []}
        for i in picked:
            per_recording = kind == "best per recording"
            exact_recall, tied_recall = recall_of(
                results[i], scores[i], mask, corpus, per_recording, grouped=corpus.overlapping and not per_recording
            )
            recalls.append(exact_recall)
            tied[composed[i].call].append(tied_recall)
        figures.append(
            SearchFigure(
                case=name,
                kind=kind,
                share=float(mask.mean()),
                p50_ms=statistics.median(passes[1][i] for i in picked),
                p95_ms=_percentile([passes[1][i] for i in picked], 95),
                recall=float(np.mean(recalls)),
                tied_calls=float(np.mean(tied[True])) if tied[True] else float("nan"),
                tied_background=float(np.mean(tied[False])) if tied[False] else float("nan"),
                worst=float(min(tied[True] + tied[False])),
                paths="/".join(sorted({paths[i] for i in picked})),
                rescued=sum(rescues[i][0] for i in picked),
                widened=sum(rescues[i][1] for i in picked),
                cold_p50_ms=statistics.median(passes[0][i] for i in picked),
            )
        )
    return figures


def recall_of(
    found_ids: list[int],
    scores: np.ndarray,
    mask: np.ndarray,
    corpus: Corpus,
    per_recording: bool = False,
    grouped: bool = False,
) -> tuple[float, float]:
    """(recall@K, tie-tolerant recall@K) of the window ids found, against exact ``scores``
    float32 [N] over the windows that a filter leaves (``mask`` bool [N]); each recording's
    best window only, for ``per_recording``; each call's best (no two windows sharing a
    moment), for ``grouped``. A hit is a tie when its exact score is within TIE of the
    K-th best (and, per recording, of its recording's best)."""
    scores = np.where(mask, scores, -np.inf)
    if grouped:
        order = _one_per_call_exact(scores, corpus)
    elif per_recording:
        order = np.argsort(-scores, kind="stable")
        _, first = np.unique(corpus.recording[order], return_index=True)
        order = order[np.sort(first)][:K]
        recording_best = np.full(corpus.recording.max() + 1, -np.inf, np.float32)
        np.maximum.at(recording_best, corpus.recording, scores)
    else:
        order = np.argpartition(-scores, K)[:K] if len(scores) > K else np.arange(len(scores))
        order = order[np.argsort(-scores[order], kind="stable")]
    order = order[np.isfinite(scores[order])]
    if not len(order):
        return 1.0, 1.0
    found = np.asarray(found_ids[:K], dtype=np.int64)
    rows = np.searchsorted(corpus.window_ids, found)  # window ids ascend with the rows
    found_scores = scores[np.minimum(rows, len(scores) - 1)]
    found_scores[(rows >= len(scores)) | (corpus.window_ids[np.minimum(rows, len(scores) - 1)] != found)] = -np.inf
    tied = found_scores >= scores[order[-1]] - TIE
    if per_recording:
        tied &= found_scores >= recording_best[corpus.recording[np.minimum(rows, len(scores) - 1)]] - TIE
    expected = set(corpus.window_ids[order].tolist())
    return len(expected & set(found.tolist())) / len(order), min(int(tied.sum()), len(order)) / len(order)


def _one_per_call_exact(scores: np.ndarray, corpus: Corpus) -> np.ndarray:
    """Rows of the K best windows of ``scores`` [N] that share no moment with a better one
    in their recording: exact numpy's side of annotations.search.calls."""
    kept: dict[int, list[float]] = {}
    chosen = []
    ranked = np.argsort(-scores, kind="stable")
    for row in ranked[np.isfinite(scores[ranked])]:
        starts = kept.setdefault(int(corpus.recording[row]), [])
        if all(abs(corpus.start_s[row] - other) >= corpus.window_s - 1e-3 for other in starts):
            starts.append(float(corpus.start_s[row]))
            chosen.append(row)
            if len(chosen) == K:
                break
    return np.asarray(chosen, dtype=np.int64)


def trained_classifier(user, project, model, corpus: Corpus):
    """A linear classifier version for one cluster direction, stored as training stores it."""
    from annotations.models import Classifier, ClassifierLabel, ProbeType, TaskStatus

    direction = _unit(corpus.embeddings[np.nonzero(corpus.project == 0)[0][0]])
    weights = (8 * direction).astype(np.float32)[:, None]
    classifier = Classifier.objects.create(
        project=project,
        version=1,
        probe_type=ProbeType.LINEAR,
        embedding_model=model,
        created_by=user,
        status=TaskStatus.DONE,
        weights=weights.tobytes(),
        bias=np.array([-4.0], np.float32).tobytes(),
    )
    label = project.labels.get(name="call")
    ClassifierLabel.objects.create(classifier=classifier, label=label, index=0, threshold=0.5)
    return classifier, label


def measure_scoring(classifier, project, model, corpus: Corpus) -> tuple[float, float]:
    """(windows/s of score_project, windows/s of reading the same vectors and a numpy product)."""
    from annotations.embedding_store import iter_deployment_embeddings
    from annotations.probes import linear_scores
    from annotations.stored_scores import score_project
    from annotations.training import classifier_arrays

    weights, bias = classifier_arrays(classifier)
    windows = int((corpus.project == 0).sum())

    def read_and_score() -> None:
        for deployment_id in project.deployments.values_list("pk", flat=True):
            for _, embeddings in iter_deployment_embeddings(deployment_id, model):
                linear_scores(embeddings, weights, bias)

    reference = windows / _best_of(read_and_score, 2)
    started = time.perf_counter()
    score_project(classifier)
    return windows / (time.perf_counter() - started), reference


def measure_queues(classifier, label, corpus: Corpus, cases, repeats: int = 5) -> dict[tuple[str, str], tuple]:
    """{(kind, case): (median ms, worst ms)} of a review queue page (the queue and its 50
    hits) per kind, under each case's filters (the big project's cases of ``search_cases``)."""
    from annotations.models import Annotation, LabelValue
    from annotations.review_queues import KINDS, review_queue
    from annotations.search import hits_for

    labeled = corpus.window_ids[np.nonzero(corpus.project == 0)[0][:: max(1, len(corpus.window_ids) // 1000)]]
    Annotation.objects.bulk_create(
        Annotation(window_id=int(w), label=label, value=LabelValue.NEGATIVE, annotator=classifier.created_by)
        for w in labeled
    )
    classifier.refresh_from_db()
    timings = {}
    for case, project, filters, _ in cases:
        if project.pk != classifier.project_id:
            continue
        for kind in KINDS:
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                hits_for(review_queue(classifier, label.pk, kind, 50, filters))
                times.append(1000 * (time.perf_counter() - started))
            timings[kind, case] = (statistics.median(times), max(times))
    return timings


def table_bytes() -> tuple[int, int]:
    """Bytes on disk of the window table with its indexes, and of the search indexes'
    tables of reduced vectors with their HNSW indexes."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_total_relation_size('annotations_window'), "
            "(SELECT coalesce(sum(pg_total_relation_size(vector_table::regclass)), 0) "
            "FROM annotations_searchindex WHERE vector_table <> '')"
        )
        windows, search = cursor.fetchone()
    return int(windows), int(search)


def timed_build(project, model) -> tuple[float, float]:
    """Seconds until the project's graph serves (``SearchIndex.build_seconds``) and until
    the whole build, its deployments' and hours' graphs included, is done."""
    from annotations.search_index import build_search_index

    started = time.perf_counter()
    row = build_search_index(project, model)
    return row.build_seconds, time.perf_counter() - started


def added_deployment_rates(user, project, model, dim: int, windows: int) -> tuple[float, float]:
    """Rows/s of writing a new deployment into a project without an index and into the
    indexed ``project``, on the same table: what the project's own index costs ingest."""
    from annotations.deployments import create_deployment, create_project

    hop_s = 3.0 if dim <= 1024 else 5.0
    rates = []
    for target, seed in ((create_project(user, "unindexed"), 7), (project, 8)):
        embeddings = real_like_embeddings(windows, dim, int(3600 / hop_s), seed=seed).embeddings
        deployment = create_deployment(target, f"added {seed}", site="S0")
        started = time.perf_counter()
        _write_deployment(deployment, model, embeddings, hop_s, 3600.0, 0)
        rates.append(windows / (time.perf_counter() - started))
    return rates[0], rates[1]


def print_search_figures(figures: list[SearchFigure]) -> None:
    print("warm: each query's second run; cold: its first. tied: tie-tolerant recall (calls / background)")
    print(
        f"{'case':30} {'query':20} {'share':>6} {'p50 ms':>7} {'p95 ms':>7} {'cold':>6} {'recall':>6} "
        f"{'tied calls':>10} {'bg':>5} {'worst':>5}  path (rescued, widened)"
    )
    for f in figures:
        print(
            f"{f.case:30} {f.kind:20} {f.share:6.1%} {f.p50_ms:7.1f} {f.p95_ms:7.1f} {f.cold_p50_ms:6.1f} "
            f"{f.recall:6.3f} {f.tied_calls:10.3f} {f.tied_background:5.3f} {f.worst:5.2f}  {f.paths}"
            + (f" ({f.rescued}, {f.widened})" if f.rescued or f.widened else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=30, help="queries of each kind")
    parser.add_argument("--recording-s", type=float, default=3600.0, help="length of each recording")
    parser.add_argument("--keep", action="store_true", help="keep the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="search a kept database again")
    parser.add_argument("--searches-only", action="store_true", help="skip scoring, queues and writes")
    parser.add_argument("--cases", nargs="*", help="only these search cases (by name)")
    parser.add_argument("--hop", type=float, default=0.0, help="seconds between windows (default: the window)")
    args = parser.parse_args()
    with bench_database(keep=args.keep or args.reuse, reuse=args.reuse):
        run(args)


def run(args) -> None:
    from django.contrib.auth import get_user_model

    n, dim = args.windows, args.dim
    print(f"{n:,} windows x {dim}-d shaped like real BirdNET output (bench.real_like), k={K}, {args.queries} per kind")
    if args.hop:
        print(f"windows every {args.hop:g} s: searches keep one hit per call, and so does exact numpy")
    if args.reuse:
        user = get_user_model().objects.get(username="bench")
        big, small, model, corpus = reopen_corpus(n, dim, args.recording_s)
    else:
        user = get_user_model().objects.create_user("bench")
        big, small, model, corpus, write_rate = build_corpus(user, n, dim, args.recording_s, hop_s=args.hop or None)
        print(f"write (replace_windows, no index yet):        {write_rate:10,.0f} rows/s")
        first = corpus.embeddings[0].astype(np.float32)
        numpy_build = _best_of(lambda: numpy_pass(corpus, big_project_rows(corpus), first), 2)
        (big_serves, build_big), (small_serves, build_small) = timed_build(big, model), timed_build(small, model)
        print(
            f"index build: big project's graph serves after {big_serves:7.1f} s ({big_serves / numpy_build:,.0f}x "
            f"one exact numpy pass), all its graphs (deployments', hours') after {build_big:.1f} s; small project "
            f"{small_serves:.1f} s / {build_small:.1f} s; goal <= 300 s"
        )
    windows_size, search_size = table_bytes()
    size = windows_size + search_size
    per_million = size / n * 1e6 / 2**30
    print(
        f"tables + indexes: {size / n:,.0f} bytes per window, {per_million:.2f} GiB per million (goal <= 6), "
        f"of which the search index and its reduced vectors {search_size / n * 1e6 / 2**30:.2f}"
    )
    query = _unit(corpus.embeddings[0].astype(np.float32))
    big_rows = big_project_rows(corpus)
    numpy_ms = 1000 * _best_of(lambda: numpy_pass(corpus, big_rows, query))
    figures = measure_searches(
        big, small, model, corpus, args.queries, searcher=search_process(), cases=args.cases or None
    )
    print_search_figures(figures)
    print(f"(exact numpy over the big project's rows, one query: {numpy_ms:.1f} ms)")
    if args.searches_only or n > IN_MEMORY_MAX_WINDOWS:
        return  # scoring, queues and a new deployment: at a season's scale, not a programme's
    classifier, label = trained_classifier(user, big, model, corpus)
    scoring_rate, reference_rate = measure_scoring(classifier, big, model, corpus)
    print(
        f"scoring the project: {scoring_rate:,.0f} windows/s; reading them and numpy: {reference_rate:,.0f} "
        f"windows/s; ratio {scoring_rate / reference_rate:.2f} (goal >= 0.5)"
    )
    print("queue page (the queue and its 50 hits), median / worst ms (goal <= 300):")
    for (kind, case), (median_ms, worst_ms) in measure_queues(
        classifier, label, corpus, search_cases(big, small, corpus)
    ).items():
        print(f"  {kind:9} {case:32} {median_ms:7.1f} / {worst_ms:7.1f}")
    unindexed_rate, indexed_rate = added_deployment_rates(user, big, model, dim, min(50_000, n // 20))
    print(
        f"write a new deployment: into a project without an index {unindexed_rate:,.0f} rows/s, into the "
        f"indexed project {indexed_rate:,.0f} rows/s, ratio {indexed_rate / unindexed_rate:.2f} (goal >= 0.9)"
    )


if __name__ == "__main__":
    main()
