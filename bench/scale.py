"""Benchmark: search, filters, review queues and scoring at a season's scale.

    .venv/bin/python -m bench.scale [--windows 1000000] [--dim 1024] [--queries 50]

Builds ``--windows`` windows of clustered synthetic embeddings (many clusters of low
intrinsic dimension, closer to real embeddings than one Gaussian) through the project's
own write path (``replace_windows``), in a database of its own: a big project of 18
deployments over 6 sites (90% of the windows) and a small one (10%), one window every
3 s (1024-d, BirdNET's framing) or 5 s (1536-d, Perch 2.0's), hour-long recordings.
Then it builds each project's search index with the project's own task code and prints,
each beside exact numpy on the same vectors in the same run (best of several):

- write rate into an empty table, and of a new deployment into a project without an index
  and into the indexed project, on the same table;
- index build time and bytes per window (table and indexes);
- search p50 / p95, the path taken, and recall@100 against exact numpy over the stored
  (float16) vectors and over the float32 originals, for: no filter, one deployment, one
  site, a date range, an hour range, the small project beside the big one, and the best
  window per recording;
- project scoring windows/s against reading the same vectors and a numpy product;
- review queue pages (top, margin, bins, diverse: the queue and its hits) after scoring.

``measure`` is also what the test suite's 20,000-window smoke test runs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import datetime as dt
import multiprocessing
import os
import statistics
import time

import numpy as np

from bench.database import bench_database

K = 100
SEASON_START = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
SEASON_DAYS = 35
BIG_DEPLOYMENTS, SITES, SMALL_DEPLOYMENTS = 18, 6, 2


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The synthetic season as numpy knows it, row i = the i-th window written.

    embeddings: float32 [N, D]; window_ids, project, deployment, site, recording: int [N];
    started: datetime64[s] [N] (UTC, the deployments' time zone).
    """

    embeddings: np.ndarray
    window_ids: np.ndarray
    project: np.ndarray
    deployment: np.ndarray
    site: np.ndarray
    recording: np.ndarray
    started: np.ndarray


@dataclasses.dataclass(frozen=True)
class SearchFigure:
    name: str
    p50_ms: float
    p95_ms: float
    recall: float  # mean recall@K against exact numpy over the stored (float16) vectors
    recall_float32: float  # ... over the float32 originals
    min_recall: float
    paths: str
    numpy_ms: float  # exact numpy over the same vectors, best of several
    cold_p50_ms: float = float("nan")  # the same queries the first time (p50_ms: the second)


def clustered_embeddings(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """float32 [n, dim]: 2,000 clusters in a 32-d subspace, plus a little isotropic noise."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((32, dim)).astype(np.float32) / np.sqrt(32)
    centers = rng.standard_normal((2000, 32)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for first in range(0, n, 100_000):
        m = min(100_000, n - first)
        latent = centers[rng.integers(0, len(centers), m)] + 0.35 * rng.standard_normal((m, 32), dtype=np.float32)
        out[first : first + m] = latent @ basis + 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def _write_deployment(
    deployment, model, embeddings: np.ndarray, hop_s: float, recording_s: float, first_recording: int
):
    """Recordings of ``recording_s`` spread evenly over a season of SEASON_DAYS (a recorder
    on a schedule, so they start at every hour of the day), through replace_windows."""
    from annotations.embedding_store import replace_windows
    from annotations.models import Recording, RecordingStatus

    per_recording = int(recording_s / hop_s)
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
            # Each recorder's schedule offset a little from the others'.
            started_at=SEASON_START + dt.timedelta(seconds=round(i * stride_s + deployment.pk * 4_001 % 86_400)),
        )
        for i in range(count)
    )
    ids = []
    for i, recording in enumerate(recordings):
        chunk = embeddings[i * per_recording : (i + 1) * per_recording]
        starts = np.arange(len(chunk), dtype=np.float64) * hop_s
        replace_windows(recording.pk, model, starts, starts + hop_s, chunk)
        ids.append(
            np.fromiter(recording.windows.order_by("start_s").values_list("id", flat=True), np.int64, len(chunk))
        )
    started = np.concatenate(
        [
            np.datetime64(recording.started_at.replace(tzinfo=None), "s")
            + (np.arange(len(chunk_ids)) * hop_s).astype("timedelta64[s]")
            for recording, chunk_ids in zip(recordings, ids, strict=True)
        ]
    )
    recording_index = np.concatenate([np.full(len(c), first_recording + i) for i, c in enumerate(ids)])
    return np.concatenate(ids), started, recording_index


def build_corpus(user, n: int, dim: int, recording_s: float = 3600.0, seed: int = 0):
    """Two projects, written deployment by deployment; returns (big, small, model, corpus,
    write rows/s before any index)."""
    from annotations.deployments import create_deployment, create_project
    from annotations.embedding_store import register_embedding_model

    hop_s = 3.0 if dim <= 1024 else 5.0
    model = register_embedding_model("bench-scale", "1", dim, hop_s, hop_s, 32_000)
    embeddings = clustered_embeddings(n, dim, seed)
    big, small = create_project(user, "season", labels=["call"]), create_project(user, "small", labels=["call"])
    layout = [(big, d % SITES) for d in range(BIG_DEPLOYMENTS)]  # (project, site)
    layout += [(small, SITES + d) for d in range(SMALL_DEPLOYMENTS)]
    share = np.array([0.9 / BIG_DEPLOYMENTS] * BIG_DEPLOYMENTS + [0.1 / SMALL_DEPLOYMENTS] * SMALL_DEPLOYMENTS)
    bounds = np.concatenate([[0], np.round(np.cumsum(share) * n).astype(int)])
    columns = {name: [] for name in ("window_ids", "project", "deployment", "site", "recording", "started")}
    started_writing = time.perf_counter()
    recordings = 0
    for index, (project, site) in enumerate(layout):
        deployment = create_deployment(project, f"D{index}", site=f"S{site}")
        rows = embeddings[bounds[index] : bounds[index + 1]]
        ids, started, recording = _write_deployment(deployment, model, rows, hop_s, recording_s, recordings)
        recordings = int(recording.max()) + 1
        for name, values in (
            ("window_ids", ids),
            ("project", np.full(len(ids), 0 if project == big else 1)),
            ("deployment", np.full(len(ids), index)),
            ("site", np.full(len(ids), site)),
            ("recording", recording),
            ("started", started),
        ):
            columns[name].append(values)
    rate = n / (time.perf_counter() - started_writing)
    corpus = Corpus(embeddings=embeddings, **{name: np.concatenate(v) for name, v in columns.items()})
    return big, small, model, corpus, rate


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


def timed_searches(
    project_id: int, model_id: int, filters, query_rows: np.ndarray, excludes: list[int], crossovers: tuple[int, int]
):
    """In the search process: ([ms per query], [set of window ids found], {paths taken})."""
    from annotations.models import EmbeddingModel, Project
    from annotations.search import nearest_window_ids

    project, model = Project.objects.get(pk=project_id), EmbeddingModel.objects.get(pk=model_id)
    latencies, results, paths = [], [], set()
    for query, exclude in zip(query_rows, excludes, strict=True):
        started = time.perf_counter()
        nearest = nearest_window_ids(project, model, query, K, [exclude], filters, *crossovers)
        latencies.append(1000 * (time.perf_counter() - started))
        paths.add(str(nearest.path))
        results.append({window_id for window_id, _ in nearest.scored})
    return latencies, results, paths


def timed_best_per_recording(project_id: int, examples: list[int]):
    """In the search process: the best window of each recording for each example window."""
    from annotations.models import Project
    from annotations.search import SearchFilters, SearchSpec, ranked_windows

    project = Project.objects.get(pk=project_id)
    latencies, results, paths = [], [], set()
    for example in examples:
        spec = SearchSpec(positive_windows=(example,), filters=SearchFilters(one_per_recording=True))
        started = time.perf_counter()
        ranked = ranked_windows(project, spec, K)
        latencies.append(1000 * (time.perf_counter() - started))
        paths.add(str(ranked.path))
        results.append({window_id for window_id, _ in ranked.scored})
    return latencies, results, paths


class InThisProcess:
    """A searcher that runs here: the smoke test's rows live in its own transaction."""

    def submit(self, function, *args) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        future.set_result(function(*args))
        return future

    def shutdown(self) -> None:
        pass


def measure_searches(
    big, small, model, corpus: Corpus, queries: int, crossovers: tuple[int, int] | None = None, seed=1, searcher=None
):
    """SearchFigures for every filter; ``crossovers`` (exact_scan_max, sketch_scan_max)
    override the search's; ``searcher`` (``search_process()``, or by default this process)
    runs the timed searches."""
    from annotations.search import EXACT_SCAN_MAX_WINDOWS, SKETCH_SCAN_MAX_WINDOWS, SearchFilters

    crossovers = crossovers or (EXACT_SCAN_MAX_WINDOWS, SKETCH_SCAN_MAX_WINDOWS)
    rng = np.random.default_rng(seed)
    n_big = int((corpus.project == 0).sum())  # the big project's windows come first
    picks = rng.choice(n_big, queries, replace=False)
    stored_picks = corpus.embeddings[picks].astype(np.float16).astype(np.float32)
    query_rows = stored_picks + 0.02 * rng.standard_normal(stored_picks.shape, dtype=np.float32)
    query_rows = query_rows.astype(np.float16).astype(np.float32)  # as pgvector receives them
    unit_queries, unit_picks = _unit(query_rows), _unit(stored_picks)
    # Exact cosines [N, Q], a chunk at a time: of the stored (float16) vectors with the
    # queries and with the example windows themselves, and of the float32 originals.
    exact = np.empty((len(corpus.embeddings), queries), np.float32)
    exact_original, exact_self = np.empty_like(exact), np.empty_like(exact)
    for first in range(0, len(corpus.embeddings), 100_000):
        chunk = corpus.embeddings[first : first + 100_000]
        unit_chunk = _unit(chunk.astype(np.float16).astype(np.float32))
        exact[first : first + len(chunk)] = unit_chunk @ unit_queries.T
        exact_self[first : first + len(chunk)] = unit_chunk @ unit_picks.T
        exact_original[first : first + len(chunk)] = _unit(chunk) @ _unit(corpus.embeddings[picks]).T
    hours = (corpus.started.astype("datetime64[h]").astype(np.int64)) % 24
    days = corpus.started.astype("datetime64[D]")
    first_day = np.datetime64(SEASON_START.date(), "D")
    deployment_ids = list(big.deployments.order_by("pk").values_list("pk", flat=True))
    cases = [
        ("no filter", big, SearchFilters(), corpus.project == 0),
        ("one deployment (5%)", big, SearchFilters(deployment_id=deployment_ids[3]), corpus.deployment == 3),
        ("one site (15%)", big, SearchFilters(site="S2"), (corpus.project == 0) & (corpus.site == 2)),
        (
            "date range, 3 days",
            big,
            SearchFilters(date_from=SEASON_START.date(), date_to=SEASON_START.date() + dt.timedelta(days=2)),
            (corpus.project == 0) & (days >= first_day) & (days <= first_day + 2),
        ),
        (
            "hours 4-6",
            big,
            SearchFilters(hour_from=4, hour_to=6),
            (corpus.project == 0) & (hours >= 4) & (hours < 6),
        ),
        ("small project (10%)", small, SearchFilters(), corpus.project == 1),
    ]
    figures = []
    searcher = searcher or InThisProcess()
    big_rows = corpus.embeddings[:n_big]
    numpy_ms = 1000 * _best_of(lambda: np.argpartition(-(big_rows @ unit_queries[0]), K)[:K])
    for name, project, filters, mask in cases:
        # Every query of a case is timed first, its recall computed afterwards: the numpy
        # work between queries would otherwise compete with PostgreSQL for the two cores.
        # Twice: first cold (rows the queries touch are read from disk or the OS cache),
        # then warm, as in an annotator's session on the project.
        excludes = [int(corpus.window_ids[picks[q]]) for q in range(queries)]
        passes = []
        for _ in ("cold", "warm"):
            latencies, results, paths = searcher.submit(
                timed_searches, project.pk, model.pk, filters, query_rows, excludes, crossovers
            ).result()
            passes.append(statistics.median(latencies))
        recalls, recalls_original = [], []
        for q, found in enumerate(results):
            allowed = mask.copy()
            allowed[picks[q]] = False
            candidates = np.nonzero(allowed)[0]
            assert len(candidates), f"no window passes {name}"
            for scores, into in ((exact[:, q], recalls), (exact_original[:, q], recalls_original)):
                top = candidates[np.argsort(-scores[candidates])[:K]]
                into.append(len(found & set(corpus.window_ids[top].tolist())) / min(K, len(top)))
        figures.append(
            SearchFigure(
                name,
                statistics.median(latencies),
                _percentile(latencies, 95),
                float(np.mean(recalls)),
                float(np.mean(recalls_original)),
                float(np.min(recalls)),
                "/".join(sorted(paths)),
                numpy_ms,
                passes[0],
            )
        )
    # The best window of each recording: through ranked_windows, which re-ranks a pool.
    examples = [int(corpus.window_ids[picks[q]]) for q in range(queries)]
    latencies, results, paths = searcher.submit(timed_best_per_recording, big.pk, examples).result()
    recalls = []
    for q, found in enumerate(results):
        scores = exact_self[:, q].copy()
        scores[picks[q]] = -np.inf
        scores[corpus.project != 0] = -np.inf
        best: dict[int, int] = {}
        for row in np.argsort(-scores):
            best.setdefault(int(corpus.recording[row]), int(row))
            if len(best) == K:
                break
        expected = set(corpus.window_ids[list(best.values())].tolist())
        recalls.append(len(expected & found) / len(expected))
    figures.append(
        SearchFigure(
            "best per recording",
            statistics.median(latencies),
            _percentile(latencies, 95),
            float(np.mean(recalls)),
            float("nan"),
            float(np.min(recalls)),
            "/".join(sorted(paths)),
            numpy_ms,
        )
    )
    searcher.shutdown()
    return figures


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


def measure_queues(classifier, label, corpus: Corpus, repeats: int = 5) -> dict[str, float]:
    """Median ms of a review queue page (the queue and its 50 hits) per kind."""
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
    for kind in KINDS:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            hits_for(review_queue(classifier, label.pk, kind, 50))
            times.append(1000 * (time.perf_counter() - started))
        timings[kind] = statistics.median(times)
    return timings


def table_bytes() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('annotations_window')")
        return cursor.fetchone()[0]


def added_deployment_rates(user, project, model, dim: int, windows: int) -> tuple[float, float]:
    """Rows/s of writing a new deployment into a project without an index and into the
    indexed ``project``, on the same table: what the project's own index costs ingest."""
    from annotations.deployments import create_deployment, create_project

    hop_s = 3.0 if dim <= 1024 else 5.0
    rates = []
    for target, seed in ((create_project(user, "unindexed"), 7), (project, 8)):
        embeddings = clustered_embeddings(windows, dim, seed=seed)
        deployment = create_deployment(target, f"added {seed}", site="S0")
        started = time.perf_counter()
        _write_deployment(deployment, model, embeddings, hop_s, 3600.0, 0)
        rates.append(windows / (time.perf_counter() - started))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--recording-s", type=float, default=3600.0, help="length of each recording")
    args = parser.parse_args()
    with bench_database():
        run(args)


def run(args) -> None:
    from django.contrib.auth import get_user_model

    from annotations.search_index import build_search_index

    user = get_user_model().objects.create_user("bench")
    n, dim = args.windows, args.dim
    print(f"{n:,} windows x {dim}-d, clustered synthetic embeddings, k={K}, {args.queries} queries per filter")
    big, small, model, corpus, write_rate = build_corpus(user, n, dim, args.recording_s)
    print(f"write (replace_windows, no index yet):        {write_rate:10,.0f} rows/s")
    numpy_build = _best_of(lambda: _unit(corpus.embeddings[corpus.project == 0]) @ corpus.embeddings[0], 2)
    started = time.perf_counter()
    build_search_index(big, model)
    build_big = time.perf_counter() - started
    started = time.perf_counter()
    build_search_index(small, model)
    build_small = time.perf_counter() - started
    print(
        f"index build: big project {build_big:7.1f} s ({build_big / numpy_build:,.0f}x one exact numpy pass), "
        f"small project {build_small:.1f} s; goal <= 300 s"
    )
    size = table_bytes()
    per_million = size / n * 1e6 / 2**30
    print(f"table + indexes: {size / n:,.0f} bytes per window, {per_million:.2f} GiB per million (goal <= 6)")
    figures = measure_searches(big, small, model, corpus, args.queries, searcher=search_process())
    print("warm: each query's second run; cold: its first (rows read from disk or the OS cache)")
    header = f"{'search':24} {'p50 ms':>8} {'p95 ms':>8} {'x numpy':>8} {'cold p50':>9} {'recall':>7} {'min':>6}"
    print(f"{header} {'vs f32':>7}  path")
    for f in figures:
        print(
            f"{f.name:24} {f.p50_ms:8.1f} {f.p95_ms:8.1f} {f.p50_ms / f.numpy_ms:8.2f} {f.cold_p50_ms:9.1f} "
            f"{f.recall:7.3f} {f.min_recall:6.2f} {f.recall_float32:7.3f}  {f.paths}"
        )
    print(f"(exact numpy reference over the big project, one query: {figures[0].numpy_ms:.1f} ms)")
    classifier, label = trained_classifier(user, big, model, corpus)
    scoring_rate, reference_rate = measure_scoring(classifier, big, model, corpus)
    print(
        f"scoring the project: {scoring_rate:,.0f} windows/s; reading them and numpy: {reference_rate:,.0f} "
        f"windows/s; ratio {scoring_rate / reference_rate:.2f} (goal >= 0.5)"
    )
    for kind, ms in measure_queues(classifier, label, corpus).items():
        print(f"queue page {kind:8} {ms:7.1f} ms (goal <= 300)")
    unindexed_rate, indexed_rate = added_deployment_rates(user, big, model, dim, min(50_000, n // 20))
    print(
        f"write a new deployment: into a project without an index {unindexed_rate:,.0f} rows/s, into the "
        f"indexed project {indexed_rate:,.0f} rows/s, ratio {indexed_rate / unindexed_rate:.2f} (goal >= 0.9)"
    )


if __name__ == "__main__":
    main()
