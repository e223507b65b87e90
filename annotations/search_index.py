"""Each project's HNSW search index over one model's windows, built by a worker.

A build writes each window's reduced vector (``annotations.search_reduction``: its unit
embedding on the leading principal axes of a sample of the project's windows, 256 numbers
whatever the model's width) into a table of its own, ``window_reduced_p{P}_m{M}_{X}_places``,
and builds an HNSW index over it (cosine: the vectors have unit length). Beside each
vector the table carries the window's deployment and start, so that a search filtered by
place and time tests each row the index's scan returns on that narrow table, and reads
the window's own 2 KB row only for the few it keeps. Once that graph serves, each large
deployment, and each band of four hours of the local time of day, gets a graph of its own
on the same table (a partial index), so that a search filtered to one deployment, a site
or a time of day walks only windows that pass (or mostly), instead of reading 5-20 rows
of the whole project's graph for each that does. Searches rank a pool by the index and
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
import zoneinfo

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
from annotations.models import (
    Deployment,
    EmbeddingModel,
    Project,
    Recording,
    RecordingStatus,
    SearchIndex,
    TaskStatus,
    Window,
)
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
# deployments walks their graphs, which hold only windows that pass. So does each band of
# HOUR_BAND_S of the local time of day that holds as many. Smaller ones are compared
# exactly or by sketch faster than any graph (annotations.search.exact). At most
# DEPLOYMENT_GRAPHS_MAX deployments, the largest: each index costs every query on the
# table a little planning.
GRAPH_MIN_WINDOWS = 10_000
DEPLOYMENT_GRAPHS_MAX = 64
# Four hours a band (0-4, 4-8, ... local): a filter of a few hours (dawn 4-7, night 22-4)
# walks one or two bands' graphs, most of whose windows pass. bench/scale.py at 1M, hours
# 4-7 (11%): the band's graph of 151,000 windows returned its pool in 7.5 ms p50 where the
# project's graph, reading 15 rows for each that passed, took 52.5 ms.
HOUR_BAND_S = 4 * 3600
# Of a build's progress, the share of the deployments' and hours' graphs (each set covers
# the windows again).
GRAPHS_SHARE = 0.55
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
    hour_graphs: frozenset[int] = frozenset()  # bands of the time of day (HOUR_BAND_S) with one
    # (deployment_id, zone) its table's local times of day were worked out in (none: no local times)
    local_zones: tuple[tuple[int, str], ...] = ()


def index_state(project: Project, model: EmbeddingModel) -> IndexState:
    # Every search reads this first: plain SQL costs it 0.2 ms where the ORM took 0.6.
    with connections[router.db_for_read(SearchIndex)].cursor() as cursor:
        cursor.execute(
            "SELECT id, index_name, vector_table, max_window_id, windows, status, places, deployment_graphs, "
            "hour_graphs, local_zones "
            f"FROM {SearchIndex._meta.db_table} "
            "WHERE project_id = %s AND model_id = %s",
            [project.pk, model.pk],
        )
        row = cursor.fetchone()
    if row is None:
        return IndexState("", "", 0, 0, "", None)
    row_id, index_name, vector_table, max_window_id, windows, status, places, graphs, hours, zones = row
    reduction, probe = _reduction_and_probe(row_id, index_name, model.embedding_dim) if index_name else (None, None)
    return IndexState(
        index_name,
        vector_table,
        max_window_id,
        windows,
        status,
        reduction,
        probe,
        places,
        frozenset(graphs),
        frozenset(hours),
        parse_zones(zones),
    )


def parse_zones(local_zones: list[str]) -> tuple[tuple[int, str], ...]:
    """(deployment_id, zone) of each "deployment_id=Zone/Name" in ``SearchIndex.local_zones``."""
    return tuple((int(deployment), zone) for deployment, zone in (entry.split("=", 1) for entry in local_zones))


def zones_changed(local_zones: tuple[tuple[int, str], ...], zones: tuple[tuple[int, str], ...]) -> bool:
    """Whether a deployment whose local times an index's table carries (``local_zones``) has
    another time zone now (``zones``: the project's deployments' own)."""
    now = dict(zones)
    return any(now.get(deployment, zone) != zone for deployment, zone in local_zones)


def project_zones(project: Project) -> tuple[tuple[int, str], ...]:
    """(deployment_id, time zone) of each of the project's deployments, by id."""
    return tuple(Deployment.objects.filter(project=project).order_by("pk").values_list("pk", "timezone"))


def hour_band_predicate(band: int, column: str = "local_second") -> str:
    """SQL: the local time of day in ``column`` (seconds) lies in ``band``; the predicate of
    the band's graph, which a search names to walk it."""
    return f"{column} >= {int(band) * HOUR_BAND_S} AND {column} < {(int(band) + 1) * HOUR_BAND_S}"


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
    # The project's graph serves while its deployments' and hours' own graphs are built (0 of 0 otherwise).
    graphs_built: int = 0
    graphs_planned: int = 0


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
                graphs_built=len(row.deployment_graphs) + len(row.hour_graphs) if running else 0,
                graphs_planned=row.graphs_planned if running else 0,
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
    off, or the index was built before its table carried places and local times of day
    (or a deployment's time zone changed since), or its build stopped short of the
    deployments' and hours' graphs."""
    row = SearchIndex.objects.filter(project=project, model=model).first()
    if row is not None and _in_flight(row):
        return False
    if row is not None and row.index_name and (not _local_times_current(row, project) or row.status != TaskStatus.DONE):
        return True
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


def request_builds_for_zones(project: Project) -> None:
    """After a deployment's time zone changed: queue a build of each of the project's
    indexes whose table carries local times of day in another zone (its hours' graphs
    stop serving until then)."""
    zones = project_zones(project)
    for row in SearchIndex.objects.filter(project=project).exclude(index_name="").select_related("model"):
        if zones_changed(parse_zones(row.local_zones), zones):
            request_index_build(project, row.model)


def _local_times_current(row: SearchIndex, project: Project) -> bool:
    """Whether the index's table carries places and local times of day in every
    deployment's current time zone."""
    zones = parse_zones(row.local_zones)
    return row.places and bool(zones) and not zones_changed(zones, project_zones(project))


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
            if row.index_name and _local_times_current(row, project) and row.max_window_id >= max_window_id:
                # Current: only graphs that a crash kept from being built are left to build.
                with _build_memory(cursor):
                    _build_graphs(row, row.index_name, row.vector_table)
                SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.DONE, graphs_planned=0)
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
            if row.vector_table == f"window_reduced_{suffix}":
                # The same windows again (a time zone changed): a name of its own, so that
                # no process takes the old build's reduction (cached by name) for it.
                suffix = f"p{int(project.pk)}_m{int(model.pk)}_{int(max_window_id)}_{int(time.time())}_places"
            name, table = f"window_hnsw_{suffix}", f"window_reduced_{suffix}"
            _drop_leftover_tables(project, model, row.vector_table)
            if connection.in_atomic_block:
                # Check deferred foreign keys now, or CREATE INDEX refuses to run.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            zones = project_zones(project)
            reduction, probe, windows = _write_reduced_vectors(row, project, model, max_window_id, table, zones)
            with _build_memory(cursor):
                cursor.execute(f"CREATE INDEX {name} ON {table} {HNSW_OPTIONS}")
            old_table = row.vector_table
            # The project's graph serves from here on; the deployments' and hours' graphs follow.
            SearchIndex.objects.filter(pk=row.pk).update(
                index_name=name,
                vector_table=table,
                reduction=reduction.to_bytes(),
                probe=probe.to_bytes(),
                places=True,
                deployment_graphs=[],
                hour_graphs=[],
                local_zones=[f"{deployment}={zone}" for deployment, zone in zones],
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
                _build_graphs(row, name, table)
            SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.DONE, graphs_planned=0)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [INDEX_LOCK_NAMESPACE, project.pk])
    row.refresh_from_db()
    return row


def _drop_leftover_tables(project: Project, model: EmbeddingModel, serving: str) -> None:
    """Drop the project's index tables for ``model`` other than the one ``serving``: left by
    builds that a crash cut short (builds of one project wait for each other)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname LIKE %s AND relname <> %s",
            [f"window\\_reduced\\_p{int(project.pk)}\\_m{int(model.pk)}\\_%", serving],
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'DROP TABLE IF EXISTS "{table}"')


@contextlib.contextmanager
def _build_memory(cursor):
    """The session's maintenance_work_mem at the index builds' setting: a graph that does
    not fit spills, and takes ten times as long."""
    cursor.execute(f"SET maintenance_work_mem = '{settings.PERCH_AGILE_INDEX_BUILD_MEMORY}'")
    try:
        yield
    finally:
        cursor.execute("RESET maintenance_work_mem")


def _build_graphs(row: SearchIndex, name: str, table: str) -> None:
    """Partial HNSW indexes on ``table``: ``{name}_d{deployment}`` for each deployment of at
    least GRAPH_MIN_WINDOWS windows, the largest first, then ``{name}_h{band}`` for each
    band of the local time of day (HOUR_BAND_S) that holds as many. Each serves searches
    as soon as it is built (``SearchIndex.deployment_graphs``, ``hour_graphs``). Those the
    row already names are kept; one built but not yet named (a crash between the two) is
    named."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT deployment_id FROM {table} GROUP BY deployment_id HAVING count(*) >= %s "
            "ORDER BY count(*) DESC, deployment_id LIMIT %s",
            [GRAPH_MIN_WINDOWS, DEPLOYMENT_GRAPHS_MAX],
        )
        deployment_ids = [int(deployment_id) for (deployment_id,) in cursor.fetchall()]
        cursor.execute(
            f"SELECT local_second / {HOUR_BAND_S} AS band FROM {table} WHERE local_second IS NOT NULL "
            "GROUP BY band HAVING count(*) >= %s ORDER BY band",
            [GRAPH_MIN_WINDOWS],
        )
        bands = [int(band) for (band,) in cursor.fetchall()]
        fields = ("deployment_graphs", "hour_graphs")
        built = dict(zip(fields, SearchIndex.objects.values_list(*fields).get(pk=row.pk), strict=True))
        wanted = [
            *(("deployment_graphs", d, f"{name}_d{d}", f"deployment_id = {d}") for d in deployment_ids),
            *(("hour_graphs", band, f"{name}_h{band}", hour_band_predicate(band)) for band in bands),
        ]
        to_build = [graph for graph in wanted if graph[1] not in built[graph[0]]]  # (field, key, index, predicate)
        planned = sum(len(keys) for keys in built.values()) + len(to_build)
        SearchIndex.objects.filter(pk=row.pk).update(graphs_planned=planned)
        for field, key, index, predicate in to_build:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {table} {HNSW_OPTIONS} WHERE {predicate}")
            # Only while the table still serves: a search must never name a graph that is gone.
            cursor.execute(
                f"UPDATE {SearchIndex._meta.db_table} SET {field} = array_append({field}, %s) "
                "WHERE id = %s AND vector_table = %s",
                [key, row.pk, table],
            )


def _write_reduced_vectors(
    row: SearchIndex,
    project: Project,
    model: EmbeddingModel,
    max_window_id: int,
    table: str,
    zones: tuple[tuple[int, str], ...],
) -> tuple[Reduction, IndexProbe, int]:
    """Fit the reduction on a sample of the windows up to ``max_window_id``, and write every
    one's reduced vector, deployment, start and local time of day (in ``zones``: each
    deployment's time zone) into a new ``table``; returns the reduction, a probe from the
    same sample, and the rows written."""
    sample = sample_window_ids(project, model, REDUCTION_SAMPLE, max_window_id)
    sampled = window_matrix(sample.tolist(), model.embedding_dim)[1]
    reduction = fit_reduction(sampled)
    probe = IndexProbe.of(sample, sampled)
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE {table} (window_id bigint NOT NULL, deployment_id bigint NOT NULL, "
            f"started_at timestamptz, local_second integer, reduced halfvec({reduction.dim}) NOT NULL)"
        )
        # For edits of start times (sync_index_start_times), not for searches.
        cursor.execute(f"CREATE INDEX ON {table} (window_id)")
    written = 0
    columns = ["window_id", "deployment_id", "started_at", "local_second", "reduced"]
    types = ["bigint", "bigint", "timestamptz", "integer", "bytea"]
    zone_of = {deployment: zoneinfo.ZoneInfo(zone) for deployment, zone in zones}
    chunks = iter_window_embeddings(project, model, max_window_id)
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)", [START_TIMES_LOCK_NAMESPACE, project.pk])
            chunk = next(chunks, None)
            if chunk is None:
                break
            vectors = halfvec_binary(reduce_windows(chunk.embeddings, reduction))
            deployments = chunk.deployment_ids.tolist()
            seconds = local_seconds(chunk.started, [zone_of[deployment] for deployment in deployments])
            rows = zip(chunk.ids.tolist(), deployments, chunk.started, seconds, vectors, strict=True)
            written += copy_rows(table, columns, types, rows)
        SearchIndex.objects.filter(pk=row.pk).update(vectors_written=written)
    return reduction, probe, written


def local_seconds(started: list[dt.datetime | None], zones: list[zoneinfo.ZoneInfo]) -> list[int | None]:
    """Whole seconds since local midnight of each start (None where unknown) in its zone:
    floored, as an hour filter's whole-second bounds compare them."""
    seconds: list[int | None] = []
    for start, zone in zip(started, zones, strict=True):
        local = start.astimezone(zone) if start is not None else None
        seconds.append(None if local is None else local.hour * 3600 + local.minute * 60 + local.second)
    return seconds


def sync_index_start_times(recording: Recording) -> None:
    """Give a recording's windows in its project's index tables (those serving and any being
    built) their start times and local times of day, as
    ``embedding_store.sync_window_start_times`` gave them in the windows' table, in the
    caller's transaction."""
    project_id = int(recording.deployment.project_id)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [START_TIMES_LOCK_NAMESPACE, project_id])
        cursor.execute(
            "SELECT c.relname, EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid "
            "AND a.attname = 'local_second' AND NOT a.attisdropped) "
            "FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE %s",
            [f"window\\_reduced\\_p{project_id}\\_%\\_places"],
        )
        # Every window of the recording lies in its deployment's zone.
        local_second = ", local_second = floor(extract(epoch FROM (w.started_at AT TIME ZONE %(zone)s)::time))::integer"
        for table, has_local_times in cursor.fetchall():
            cursor.execute(
                f'UPDATE "{table}" v SET started_at = w.started_at{local_second if has_local_times else ""} '
                f"FROM {Window._meta.db_table} w WHERE w.recording_id = %(recording)s AND v.window_id = w.id",
                {"recording": recording.pk, "zone": recording.deployment.timezone},
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
    if found is None and not row.graphs_planned:  # writing the reduced vectors
        written = SearchIndex.objects.values_list("vectors_written", flat=True).get(pk=row.pk)
        share = WRITING_SHARE * (1 - GRAPHS_SHARE)
        return share * min(written / windows, 1.0) if windows else 0.0
    blocks_done, blocks_total, tuples_done, tuples_total = found or (0, 0, 0, 0)  # or between two graphs
    if tuples_total:
        indexed = min(tuples_done / tuples_total, 1.0)
    elif blocks_total:
        indexed = min(blocks_done / blocks_total, 1.0)
    else:
        indexed = 0.0
    if row.graphs_planned:  # the project's graph serves; its deployments' and hours' graphs are built
        graphs = (len(row.deployment_graphs) + len(row.hour_graphs) + indexed) / row.graphs_planned
        return 1 - GRAPHS_SHARE + GRAPHS_SHARE * min(graphs, 1.0)
    return (WRITING_SHARE + (1 - WRITING_SHARE) * indexed) * (1 - GRAPHS_SHARE)


def delete_index(row: SearchIndex) -> None:
    """Drop a project's index and its table (its project or model is going)."""
    if row.vector_table:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TABLE IF EXISTS "{row.vector_table}"')
