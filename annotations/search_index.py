"""Each project's HNSW search index over one model's windows, built by a worker.

A build writes each window's reduced vector (``annotations.search_reduction``: its unit
embedding on the leading principal axes of a sample of the project's windows, 256 numbers
whatever the model's width) into a table of its own, ``window_reduced_p{P}_m{M}_{X}_places``,
and builds an HNSW index over it (cosine: the vectors have unit length). Beside each
vector the table carries the window's deployment and start, so that a search filtered by
place and time tests each row the index's scan returns on that narrow table, and reads
the window's own 2 KB row only for the few it keeps. Once that graph serves, each large
deployment gets a graph of its own on the same table (a partial index), so that a search
filtered to one deployment or a site walks only windows that pass, instead of reading
5-20 rows of the whole project's graph for each that does. Searches rank a pool by the index and
compare the pool exactly with the full embeddings. Windows written after the build (ids
above X) cost no HNSW insertion while they are ingested (an insert into an HNSW index
costs several times a plain one); searches scan them exactly (``annotations.search``)
until the next build folds them in: a new table and index are built beside the old ones,
which are dropped once the new ones serve. A small project never pays for a big one's
index.

Builds run as their own Celery task (``request_index_build`` queues it by name), never
inside a request or at the tail of an ingest task, and report their progress: the rows
written, then PostgreSQL's ``pg_stat_progress_create_index``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import time

from django.conf import settings
from django.db import connection, connections, router, transaction
from django.db.models import Sum
from django.utils import timezone

from annotations.embedding_store import (
    copy_rows,
    halfvec_binary,
    iter_window_embeddings,
    sample_window_ids,
    window_matrix,
)
from annotations.models import EmbeddingModel, Project, Recording, RecordingStatus, SearchIndex, TaskStatus, Window
from annotations.queueing import BUILD_SEARCH_INDEX, enqueue_on_commit
from annotations.search_probe import IndexProbe
from annotations.search_reduction import Reduction, fit_reduction, reduce_windows

# Windows outside the index that make a rebuild worth it once ingest has stopped.
REBUILD_AFTER_UNINDEXED = 20_000
# A build queued or running longer than its task's time limit was lost (a broker that
# dropped the message, a machine that went away) and may be requested again.
BUILD_TIME_LIMIT = dt.timedelta(hours=6)
INDEX_LOCK_NAMESPACE = 0x5EA2C8  # pg_advisory_lock(namespace, project) around a build
# Held (namespace, project) by each chunk a build writes (shared) and by an edit of
# recordings' start times (exclusive): no edit falls between a chunk's read and its write.
START_TIMES_LOCK_NAMESPACE = 0x5EA2C9
# Windows whose principal axes make the reduction: enough for 256 axes of a season's
# variety, and read in a second or two.
REDUCTION_SAMPLE = 20_000
# Of a build's progress, the share that writing the reduced vectors takes (the rest: the
# HNSW build), as measured at 1M windows.
WRITING_SHARE = 0.3
# Deployments of at least this many windows get an HNSW graph of their own, a partial index
# on the project's table, once the project's graph serves: a search filtered to a few
# deployments walks their graphs, which hold only windows that pass. Smaller ones are
# compared exactly or by sketch faster than any graph (annotations.search.exact). At most
# DEPLOYMENT_GRAPHS_MAX of them, the largest: each index costs every query on the table a
# little planning.
DEPLOYMENT_GRAPH_MIN_WINDOWS = 10_000
DEPLOYMENT_GRAPHS_MAX = 64
# Of a build's progress, the share of the deployments' graphs (they cover the windows again).
DEPLOYMENT_GRAPHS_SHARE = 0.4
HNSW_OPTIONS = "USING hnsw (reduced halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)"


@dataclasses.dataclass(frozen=True)
class IndexState:
    """What a search needs to know about a project's index for one model (pages: IndexSummary)."""

    index_name: str  # empty when there is none yet
    vector_table: str  # the table of reduced vectors it indexes
    max_window_id: int  # windows with higher ids are not in the index
    windows: int  # in the index
    status: str  # of the latest build
    reduction: Reduction | None  # how its vectors were reduced
    probe: IndexProbe | None = None  # a sample of its windows, to check answers by (search_probe)
    places: bool = False  # its table carries each window's deployment_id and started_at
    deployment_graphs: frozenset[int] = frozenset()  # deployments with a graph of their own


def index_state(project: Project, model: EmbeddingModel) -> IndexState:
    # Every search reads this first: plain SQL costs it 0.2 ms where the ORM took 0.6.
    with connections[router.db_for_read(SearchIndex)].cursor() as cursor:
        cursor.execute(
            "SELECT id, index_name, vector_table, max_window_id, windows, status, places, deployment_graphs "
            f"FROM {SearchIndex._meta.db_table} "
            "WHERE project_id = %s AND model_id = %s",
            [project.pk, model.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return IndexState("", "", 0, 0, "", None)
    row_id, index_name, vector_table, max_window_id, windows, status, places, graphs = row
    reduction, probe = _reduction_and_probe(row_id, index_name, model.embedding_dim) if index_name else (None, None)
    return IndexState(
        index_name, vector_table, max_window_id, windows, status, reduction, probe, places, frozenset(graphs)
    )


@functools.lru_cache(maxsize=32)
def _reduction_and_probe(row_id: int, index_name: str, embedding_dim: int) -> tuple[Reduction, IndexProbe | None]:
    """An index's reduction and probe, read once per process: 1.5 MB for 256 axes of 1536
    dimensions and 6 MB of probe, which every search would otherwise read. Index names
    are unique per build. An index built before probes were kept has none."""
    reduction, probe = SearchIndex.objects.values_list("reduction", "probe").get(pk=row_id, index_name=index_name)
    return (
        Reduction.from_bytes(bytes(reduction), embedding_dim),
        None if probe is None else IndexProbe.from_bytes(bytes(probe), embedding_dim),
    )


@dataclasses.dataclass(frozen=True)
class IndexSummary:
    """A project's search index for one model, as its deployment pages show it."""

    model: str
    status: str  # of the latest build; empty when none was ever wanted
    progress: float | None  # 0..1 while a build runs
    windows_indexed: int
    windows_not_indexed: int  # searched exactly until the next build
    # The project's graph serves while its deployments' own graphs are built (0 of 0 otherwise).
    deployment_graphs_built: int = 0
    deployment_graphs_planned: int = 0


def index_summaries(project: Project) -> list[IndexSummary]:
    """One per embedding model of the project's windows, from the recordings' counts."""
    totals = (
        Recording.objects.filter(deployment__project=project, status=RecordingStatus.DONE)
        .exclude(embedding_model=None)
        .values_list("embedding_model")
        .annotate(windows=Sum("windows_done"))
        .order_by()
    )
    rows = {row.model_id: row for row in SearchIndex.objects.filter(project=project)}
    summaries = []
    for model_id, windows in totals:
        model = EmbeddingModel.objects.get(pk=model_id)
        row = rows.get(model_id)
        indexed = row.windows if row else 0
        running = row is not None and row.status == TaskStatus.RUNNING
        summaries.append(
            IndexSummary(
                model=str(model),
                status=row.status if row else "",
                progress=build_progress(row, windows or 0) if running else None,
                windows_indexed=indexed,
                windows_not_indexed=max(0, (windows or 0) - indexed),
                deployment_graphs_built=len(row.deployment_graphs) if running else 0,
                deployment_graphs_planned=row.deployment_graphs_planned if running else 0,
            )
        )
    return summaries


def request_index_build(project: Project, model: EmbeddingModel) -> SearchIndex:
    """Queue a build of the project's index for ``model`` unless one is queued or running."""
    with transaction.atomic():
        row, _ = SearchIndex.objects.select_for_update().get_or_create(project=project, model=model)
        if _in_flight(row):
            return row
        row.status, row.error, row.build_started_at = TaskStatus.QUEUED, "", timezone.now()
        row.save(update_fields=["status", "error", "build_started_at"])
        enqueue_on_commit(
            BUILD_SEARCH_INDEX,
            project.pk,
            model.pk,
            on_failure=lambda why: SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.FAILED, error=why),
        )
    return row


def newest_window_id(project: Project, model: EmbeddingModel) -> int | None:
    """The project's highest window id for ``model``, one step down window_project_model_id.

    Only that index may serve it: with "max(id)", or with "= project" (the planner drops
    columns fixed by equality from the ORDER BY), it walked the primary key back through
    every newer window of other projects (measured: 35-95 ms past 100,000 of them, instead
    of 0.5 ms). "= ANY" keeps all three columns in the order, which the primary key lacks.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {Window._meta.db_table} "
            "WHERE project_id = ANY(ARRAY[%s]::bigint[]) AND model_id = ANY(ARRAY[%s]::bigint[]) "
            "ORDER BY project_id DESC, model_id DESC, id DESC LIMIT 1",
            [project.pk, model.pk],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def unindexed_windows(project: Project, model: EmbeddingModel, max_window_id: int) -> int:
    return Window.objects.filter(project=project, model=model, id__gt=max_window_id).count()


def index_wanted(project: Project, model: EmbeddingModel) -> bool:
    """Whether enough windows lie outside the index (or there is none) for a build to pay
    off, or the index was built before its table carried places and times, or its build
    stopped short of the deployments' graphs."""
    row = SearchIndex.objects.filter(project=project, model=model).first()
    if row is not None and _in_flight(row):
        return False
    if row is not None and row.index_name and (not row.places or row.status != TaskStatus.DONE):
        return True  # built before its table carried places, or its deployments' graphs were cut short
    return unindexed_windows(project, model, row.max_window_id if row else 0) >= REBUILD_AFTER_UNINDEXED


def request_wanted_builds() -> int:
    """Queue a build for every project and model whose unindexed windows make one worth it
    (after an upgrade, or a build that a crash cut short); returns how many were queued."""
    done = Recording.objects.filter(status=RecordingStatus.DONE, embedding_model__isnull=False)
    pairs = done.values_list("deployment__project_id", "embedding_model_id").distinct().order_by()
    queued = 0
    for project_id, model_id in pairs:
        project, model = Project.objects.get(pk=project_id), EmbeddingModel.objects.get(pk=model_id)
        if index_wanted(project, model):
            request_index_build(project, model)
            queued += 1
    return queued


def _in_flight(row: SearchIndex) -> bool:
    """Whether a build of this index is queued or running, and not lost."""
    return (
        row.status in (TaskStatus.QUEUED, TaskStatus.RUNNING)
        and row.build_started_at is not None
        and timezone.now() - row.build_started_at < BUILD_TIME_LIMIT
    )


def build_search_index(project: Project, model: EmbeddingModel) -> SearchIndex:
    """Build the project's index over every current window of ``model``, then retire the old one.

    Runs outside a transaction, so ingest, labeling and searches go on meanwhile (they use
    the old index until the new one is recorded); concurrent builds of one project wait
    for each other.
    """
    row, _ = SearchIndex.objects.get_or_create(project=project, model=model)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [INDEX_LOCK_NAMESPACE, project.pk])
        try:
            row.refresh_from_db()
            max_window_id = newest_window_id(project, model) or 0
            if row.index_name and row.places and row.max_window_id >= max_window_id:
                # Current: only graphs that a crash kept from being built are left to build.
                with _build_memory(cursor):
                    _build_deployment_graphs(row, row.index_name, row.vector_table)
                SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.DONE, deployment_graphs_planned=0)
                row.refresh_from_db()
                return row
            started = time.monotonic()
            SearchIndex.objects.filter(pk=row.pk).update(
                status=TaskStatus.RUNNING, build_started_at=timezone.now(), vectors_written=0
            )
            # Integers from our own tables: safe to format into DDL.
            # "_places": unlike the tables built before they carried places and times, which
            # this build may replace over the same windows.
            suffix = f"p{int(project.pk)}_m{int(model.pk)}_{int(max_window_id)}_places"
            name, table = f"window_hnsw_{suffix}", f"window_reduced_{suffix}"
            if connection.in_atomic_block:
                # Check deferred foreign keys now, or CREATE INDEX refuses to run.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            reduction, probe, windows = _write_reduced_vectors(row, project, model, max_window_id, table)
            with _build_memory(cursor):
                cursor.execute(f"CREATE INDEX {name} ON {table} {HNSW_OPTIONS}")
            old_table = row.vector_table
            # The project's graph serves from here on; the deployments' graphs follow.
            SearchIndex.objects.filter(pk=row.pk).update(
                index_name=name,
                vector_table=table,
                reduction=reduction.to_bytes(),
                probe=probe.to_bytes(),
                places=True,
                deployment_graphs=[],
                max_window_id=max_window_id,
                windows=windows,
                error="",
                build_seconds=time.monotonic() - started,
            )
            if old_table and old_table != table:
                cursor.execute(f'DROP TABLE IF EXISTS "{old_table}"')
            # Into shared buffers now, not page by page under the first searches.
            cursor.execute("SELECT pg_prewarm(%s::regclass), pg_prewarm(%s::regclass)", [name, table])
            # Fresh statistics, or right after a first bulk load the planner still believes
            # the table is tiny and scans every row instead of using the index. VACUUM marks
            # the new rows' pages all-visible, so that filtered searches read their sketches
            # from one_window_per_start alone (it only visits pages not yet marked).
            vacuum = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
            cursor.execute(f"{vacuum} {Window._meta.db_table}, {table}")
            with _build_memory(cursor):
                _build_deployment_graphs(row, name, table)
            SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.DONE, deployment_graphs_planned=0)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [INDEX_LOCK_NAMESPACE, project.pk])
    row.refresh_from_db()
    return row


@contextlib.contextmanager
def _build_memory(cursor):
    """The session's maintenance_work_mem at the index builds' setting: a graph that does
    not fit spills, and takes ten times as long."""
    cursor.execute(f"SET maintenance_work_mem = '{settings.PERCH_AGILE_INDEX_BUILD_MEMORY}'")
    try:
        yield
    finally:
        cursor.execute("RESET maintenance_work_mem")


def _build_deployment_graphs(row: SearchIndex, name: str, table: str) -> None:
    """A partial HNSW index ``{name}_d{deployment}`` on ``table`` for each deployment of at
    least DEPLOYMENT_GRAPH_MIN_WINDOWS windows, the largest first; each serves searches as
    soon as it is built (``SearchIndex.deployment_graphs``). Those the row already names
    are kept; one built but not yet named (a crash between the two) is named."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT deployment_id FROM {table} GROUP BY deployment_id HAVING count(*) >= %s "
            "ORDER BY count(*) DESC, deployment_id LIMIT %s",
            [DEPLOYMENT_GRAPH_MIN_WINDOWS, DEPLOYMENT_GRAPHS_MAX],
        )
        built = set(SearchIndex.objects.values_list("deployment_graphs", flat=True).get(pk=row.pk))
        deployment_ids = [int(deployment_id) for (deployment_id,) in cursor.fetchall() if deployment_id not in built]
        SearchIndex.objects.filter(pk=row.pk).update(deployment_graphs_planned=len(built) + len(deployment_ids))
        for deployment_id in deployment_ids:
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {name}_d{deployment_id} ON {table} {HNSW_OPTIONS} "
                f"WHERE deployment_id = {deployment_id}"
            )
            # Only while the table still serves: a search must never name a graph that is gone.
            cursor.execute(
                f"UPDATE {SearchIndex._meta.db_table} SET deployment_graphs = array_append(deployment_graphs, %s) "
                "WHERE id = %s AND vector_table = %s",
                [deployment_id, row.pk, table],
            )


def _write_reduced_vectors(
    row: SearchIndex, project: Project, model: EmbeddingModel, max_window_id: int, table: str
) -> tuple[Reduction, IndexProbe, int]:
    """Fit the reduction on a sample of the windows up to ``max_window_id``, and write every
    one's reduced vector into a new ``table``; returns the reduction, a probe from the same
    sample, and the rows written."""
    sample = sample_window_ids(project, model, REDUCTION_SAMPLE, max_window_id)
    sampled = window_matrix(sample.tolist(), model.embedding_dim)[1]
    reduction = fit_reduction(sampled)
    probe = IndexProbe.of(sample, sampled)
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{table}"')  # left by a build that a crash cut short
        cursor.execute(
            f"CREATE TABLE {table} (window_id bigint NOT NULL, deployment_id bigint NOT NULL, "
            f"started_at timestamptz, reduced halfvec({reduction.dim}) NOT NULL)"
        )
        # For edits of start times (sync_index_start_times), not for searches.
        cursor.execute(f"CREATE INDEX ON {table} (window_id)")
    written = 0
    columns = ["window_id", "deployment_id", "started_at", "reduced"]
    types = ["bigint", "bigint", "timestamptz", "bytea"]
    chunks = iter_window_embeddings(project, model, max_window_id)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [START_TIMES_LOCK_NAMESPACE, project.pk])
            chunk = next(chunks, None)
            if chunk is None:
                break
            vectors = halfvec_binary(reduce_windows(chunk.embeddings, reduction))
            rows = zip(chunk.ids.tolist(), chunk.deployment_ids.tolist(), chunk.started, vectors, strict=True)
            written += copy_rows(table, columns, types, rows)
        SearchIndex.objects.filter(pk=row.pk).update(vectors_written=written)
    return reduction, probe, written


def sync_index_start_times(recording: Recording) -> None:
    """Give a recording's windows in its project's index tables (those serving and any being
    built) their start times, as ``embedding_store.sync_window_start_times`` gave them in
    the windows' table, in the caller's transaction."""
    project_id = int(recording.deployment.project_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [START_TIMES_LOCK_NAMESPACE, project_id])
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s",
            [f"window\\_reduced\\_p{project_id}\\_%\\_places"],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f'UPDATE "{table}" v SET started_at = w.started_at FROM {Window._meta.db_table} w '
                "WHERE w.recording_id = %s AND v.window_id = w.id",
                [recording.pk],
            )


def record_failure(project: Project, model: EmbeddingModel, error: str) -> None:
    SearchIndex.objects.filter(project=project, model=model).update(status=TaskStatus.FAILED, error=error)


def build_progress(row: SearchIndex, windows: int) -> float | None:
    """How far a running build over about ``windows`` windows is (0..1): the reduced
    vectors written, then PostgreSQL's own progress report of the index build."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total "
            "FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid "
            "WHERE c.relname LIKE %s",
            [f"window_hnsw_p{int(row.project_id)}_m{int(row.model_id)}_%"],
        )
        found = cursor.fetchone()
    if found is None and not row.deployment_graphs_planned:  # writing the reduced vectors
        written = SearchIndex.objects.values_list("vectors_written", flat=True).get(pk=row.pk)
        share = WRITING_SHARE * (1 - DEPLOYMENT_GRAPHS_SHARE)
        return share * min(written / windows, 1.0) if windows else 0.0
    blocks_done, blocks_total, tuples_done, tuples_total = found or (0, 0, 0, 0)  # or between two graphs
    if tuples_total:
        indexed = min(tuples_done / tuples_total, 1.0)
    elif blocks_total:
        indexed = min(blocks_done / blocks_total, 1.0)
    else:
        indexed = 0.0
    if row.deployment_graphs_planned:  # the project's graph serves; its deployments' graphs are built
        graphs = (len(row.deployment_graphs) + indexed) / row.deployment_graphs_planned
        return 1 - DEPLOYMENT_GRAPHS_SHARE + DEPLOYMENT_GRAPHS_SHARE * min(graphs, 1.0)
    return (WRITING_SHARE + (1 - WRITING_SHARE) * indexed) * (1 - DEPLOYMENT_GRAPHS_SHARE)


def delete_index(row: SearchIndex) -> None:
    """Drop a project's index and its table (its project or model is going)."""
    if row.vector_table:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE IF EXISTS "{row.vector_table}"')
