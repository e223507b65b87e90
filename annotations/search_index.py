"""Each project's HNSW search index over one model's windows, built by a worker.

An index is a partial one, ``WHERE project_id = P AND model_id = M AND id <= X``: a small
project never pays for a big one's index, and windows written after the build (ids above
X) cost no HNSW insertion while they are ingested (an insert into an HNSW index costs
several times a plain one). Searches scan those newer windows exactly
(``annotations.search``) until the next build folds them in: a new index is built
CONCURRENTLY beside the old one, which is dropped once the new one serves.

Builds run as their own Celery task (``request_index_build`` queues it by name), never
inside a request or at the tail of an ingest task, and report their progress through
PostgreSQL's ``pg_stat_progress_create_index``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from annotations.models import EmbeddingModel, Project, Recording, RecordingStatus, SearchIndex, TaskStatus, Window
from annotations.queueing import BUILD_SEARCH_INDEX, enqueue_on_commit

# Windows outside the index that make a rebuild worth it once ingest has stopped.
REBUILD_AFTER_UNINDEXED = 20_000
# A build queued or running longer than its task's time limit was lost (a broker that
# dropped the message, a machine that went away) and may be requested again.
BUILD_TIME_LIMIT = dt.timedelta(hours=6)
INDEX_LOCK_NAMESPACE = 0x5EA2C8  # pg_advisory_lock(namespace, project) around a build


@dataclasses.dataclass(frozen=True)
class IndexState:
    """What a search needs to know about a project's index for one model (pages: IndexSummary)."""

    index_name: str  # empty when there is none yet
    max_window_id: int  # windows with higher ids are not in the index
    windows: int  # in the index
    status: str  # of the latest build


def index_state(project: Project, model: EmbeddingModel) -> IndexState:
    row = SearchIndex.objects.filter(project=project, model=model).first()
    if row is None:
        return IndexState("", 0, 0, "")
    return IndexState(row.index_name, row.max_window_id, row.windows, row.status)


@dataclasses.dataclass(frozen=True)
class IndexSummary:
    """A project's search index for one model, as its deployment pages show it."""

    model: str
    status: str  # of the latest build; empty when none was ever wanted
    progress: float | None  # 0..1 while a build runs
    windows_indexed: int
    windows_not_indexed: int  # searched exactly until the next build


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
                progress=build_progress(row) if running else None,
                windows_indexed=indexed,
                windows_not_indexed=max(0, (windows or 0) - indexed),
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
    """Whether enough windows lie outside the index (or there is none) for a build to pay off."""
    row = SearchIndex.objects.filter(project=project, model=model).first()
    if row is not None and _in_flight(row):
        return False
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

    Runs outside a transaction (CREATE INDEX CONCURRENTLY), so ingest, labeling and
    searches go on meanwhile; concurrent builds of one project wait for each other.
    """
    row, _ = SearchIndex.objects.get_or_create(project=project, model=model)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, %s)", [INDEX_LOCK_NAMESPACE, project.pk])
        try:
            row.refresh_from_db()
            max_window_id = newest_window_id(project, model) or 0
            if row.index_name and row.max_window_id >= max_window_id:
                SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.DONE)
                return row
            started = time.monotonic()
            SearchIndex.objects.filter(pk=row.pk).update(status=TaskStatus.RUNNING, build_started_at=timezone.now())
            name = f"window_hnsw_p{int(project.pk)}_m{int(model.pk)}_{int(max_window_id)}"
            # CONCURRENTLY cannot run inside a transaction (a test's, a migration's).
            concurrently = "" if connection.in_atomic_block else "CONCURRENTLY"
            if connection.in_atomic_block:
                # Check deferred foreign keys now, or CREATE INDEX refuses to run.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute(f"SET maintenance_work_mem = '{settings.PERCH_AGILE_INDEX_BUILD_MEMORY}'")
            # Integers from our own tables: safe to format into DDL. The predicate's literals
            # are what lets the planner match a search to its project's index.
            cursor.execute(
                f"CREATE INDEX {concurrently} IF NOT EXISTS {name} ON {Window._meta.db_table} "
                f"USING hnsw ((embedding::halfvec({int(model.embedding_dim)})) halfvec_cosine_ops) "
                f"WITH (m = 16, ef_construction = 64) "
                f"WHERE project_id = {int(project.pk)} AND model_id = {int(model.pk)} AND id <= {int(max_window_id)}"
            )
            cursor.execute("RESET maintenance_work_mem")
            old_name = row.index_name
            windows = Window.objects.filter(project=project, model=model, id__lte=max_window_id).count()
            SearchIndex.objects.filter(pk=row.pk).update(
                index_name=name,
                max_window_id=max_window_id,
                windows=windows,
                status=TaskStatus.DONE,
                error="",
                build_seconds=time.monotonic() - started,
            )
            if old_name and old_name != name:
                cursor.execute(f'DROP INDEX {concurrently} IF EXISTS "{old_name}"')
            # Into shared buffers now, not page by page under the first searches.
            cursor.execute("SELECT pg_prewarm(%s::regclass)", [name])
            # Fresh statistics, or right after a first bulk load the planner still believes
            # the table is tiny and scans every row instead of using the index. VACUUM marks
            # the new rows' pages all-visible, so that filtered searches read their sketches
            # from one_window_per_start alone (it only visits pages not yet marked).
            vacuum = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
            cursor.execute(f"{vacuum} {Window._meta.db_table}")
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [INDEX_LOCK_NAMESPACE, project.pk])
    row.refresh_from_db()
    return row


def record_failure(project: Project, model: EmbeddingModel, error: str) -> None:
    SearchIndex.objects.filter(project=project, model=model).update(status=TaskStatus.FAILED, error=error)


def build_progress(row: SearchIndex) -> float | None:
    """How far a running build is (0..1), from PostgreSQL's own progress report."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total "
            "FROM pg_stat_progress_create_index p JOIN pg_class c ON c.oid = p.index_relid "
            "WHERE c.relname LIKE %s",
            [f"window_hnsw_p{int(row.project_id)}_m{int(row.model_id)}_%"],
        )
        found = cursor.fetchone()
    if found is None:
        return None
    _, blocks_done, blocks_total, tuples_done, tuples_total = found
    if tuples_total:
        return min(tuples_done / tuples_total, 1.0)
    if blocks_total:
        return min(blocks_done / blocks_total, 1.0)
    return 0.0


def delete_index(row: SearchIndex) -> None:
    """Drop a project's index (its project or model is going)."""
    if row.index_name:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX IF EXISTS "{row.index_name}"')
