"""Nearest-window search on the real PostgreSQL + pgvector."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import numpy as np
import pytest
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.test import Client
from django.utils import timezone

from annotations import search_index
from annotations.deployments import create_deployment, create_project, edit_start_time
from annotations.embedding_store import (
    center_array,
    iter_deployment_embeddings,
    raw_connection,
    register_embedding_model,
    replace_windows,
    sketch_query,
    window_embeddings,
    window_matrix,
)
from annotations.errors import InputError
from annotations.models import Recording, RecordingStatus, SearchIndex
from annotations.search import (
    SearchFilters,
    SearchPath,
    SearchSpec,
    index_sql,
    nearest_window_ids,
    recording_conditions,
    save_search,
    window_conditions,
)
from annotations.search import nearest as search_nearest
from annotations.search.filters import WindowConditions, clock, time_of_day
from annotations.search.index import PLACE_GRAPHS_MAX, place_graphs, probe_of_graphs
from annotations.search_index import (
    GRAPHS_SHARE,
    WRITING_SHARE,
    IndexState,
    build_search_index,
    index_state,
    index_summaries,
    index_wanted,
    request_index_build,
)
from annotations.search_probe import PROBE_WINDOWS, IndexProbe, probe_misses
from annotations.search_reduction import reduce_query
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


def store_windows(deployment, model, vectors: np.ndarray, per_recording: int = 50) -> list[int]:
    """Store vectors [N, dim] as windows of several recordings; returns their window ids in order."""
    ids = []
    for first in range(0, len(vectors), per_recording):
        chunk = vectors[first : first + per_recording]
        recording = Recording.objects.create(
            deployment=deployment,
            path=f"/{model.name}/r{first}.wav",
            filename=f"r{first}.wav",
            status=RecordingStatus.DONE,
        )
        starts = np.arange(len(chunk), dtype=np.float64)
        replace_windows(recording.pk, model, starts, starts + 1, chunk)
        ids += list(recording.windows.order_by("start_s").values_list("id", flat=True))
    return ids


@pytest.fixture
def project_with_vectors(make_user):
    rng = np.random.default_rng(3)
    project = create_project(make_user("searcher"), "Search")
    deployment = create_deployment(project, "D")
    model = register_embedding_model("test-model", "1", 16, 1.0, 1.0, 16_000)
    # Low intrinsic dimension, like real embeddings: HNSW's recall is meaningful here.
    vectors = (rng.standard_normal((400, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    ids = store_windows(deployment, model, vectors)
    return project, model, vectors, ids


def exact_top(vectors, query, k):
    """Exact numpy top-k of the vectors as stored (float16), for a query as sent (float16)."""
    stored = vectors.astype(np.float16).astype(np.float32)
    query = query.astype(np.float16).astype(np.float32)
    unit = stored / np.linalg.norm(stored, axis=1, keepdims=True)
    return np.argsort(-(unit @ (query / np.linalg.norm(query))))[:k]


def ids_of(nearest) -> list[int]:
    return [window_id for window_id, _ in nearest.scored]


def test_every_reader_returns_the_stored_embeddings_to_float16(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    stored = vectors.astype(np.float16).astype(np.float32)
    by_id = window_embeddings(ids[::7])
    assert set(by_id) == set(ids[::7])
    for i in range(0, len(ids), 7):
        np.testing.assert_array_equal(by_id[ids[i]], stored[i])
    shuffled = np.random.default_rng(0).permutation(len(ids))
    recording_ids, matrix = window_matrix([ids[i] for i in shuffled], model.embedding_dim)
    np.testing.assert_array_equal(matrix, stored[shuffled])
    assert len(set(recording_ids[np.argsort(shuffled)][:50])) == 1  # the first 50 windows share a recording
    deployment = project.deployments.get()
    streamed = list(iter_deployment_embeddings(deployment.pk, model, chunk_size=64))
    assert [len(chunk_ids) for chunk_ids, _ in streamed] == [64] * 6 + [16]
    row_of = {window_id: i for i, window_id in enumerate(ids)}
    for chunk_ids, chunk in streamed:
        np.testing.assert_array_equal(chunk, stored[[row_of[w] for w in chunk_ids]])


def test_stored_sketches_are_the_signs_of_unit_embeddings_against_the_models_first_unit_mean(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    model.refresh_from_db()
    # The first recording's mean at unit length (its 50 windows came first), as stored in float16.
    center = center_array(model.sketch_center)
    first = vectors[:50] / np.linalg.norm(vectors[:50], axis=1, keepdims=True)
    np.testing.assert_allclose(center, first.mean(axis=0), atol=2e-3)
    bits, norm = sketch_query(vectors[3], center)
    stored = vectors[3].astype(np.float16).astype(np.float32)
    residual = stored / np.linalg.norm(stored) - center
    assert bits == "".join("1" if x > 0 else "0" for x in residual)
    assert norm == pytest.approx(np.linalg.norm(residual), rel=1e-5)
    # Length-free: a query at any scale sketches alike.
    assert sketch_query(vectors[3] * 0.05, center)[0] == bits
    with connection.cursor() as cursor:
        cursor.execute("SELECT sketch, sketch_norm FROM annotations_window WHERE id = %s", [ids[3]])
        assert cursor.fetchone() == (bits, pytest.approx(norm, rel=1e-5))
        # pgvector's own quantizer on the stored rows, as the migration writes them: the same
        # bits but where float rounding of a near-zero residual differs.
        cursor.execute(
            "SELECT sum(length(w.sketch) - bit_count(w.sketch # binary_quantize(l2_normalize(w.embedding::vector) "
            "- m.sketch_center::vector)::varbit)), sum(length(w.sketch)), "
            "max(abs(w.sketch_norm - l2_distance(l2_normalize(w.embedding::vector), m.sketch_center::vector))) "
            "FROM annotations_window w JOIN annotations_embeddingmodel m ON m.id = w.model_id WHERE w.model_id = %s",
            [model.pk],
        )
        same, total, norm_error = cursor.fetchone()
    assert total == len(ids) * 16 and same >= 0.999 * total and norm_error < 1e-4


def test_a_small_project_is_searched_exactly(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    query = vectors[7] + 0.01
    nearest = nearest_window_ids(project, model, query, 60)
    assert nearest.path == SearchPath.EXACT and nearest.candidates == len(ids)
    assert ids_of(nearest) == [ids[i] for i in exact_top(vectors, query, 60)]


def test_top_k_through_the_index_beyond_pgvector_default_ef_search(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    build_search_index(project, model)
    query = vectors[7] + 0.01
    nearest = nearest_window_ids(project, model, query, 60, exact_scan_max=0)
    assert nearest.path == SearchPath.INDEX
    assert len(nearest.scored) == 60  # hnsw.ef_search defaults to 40, which would cut this short
    expected = {ids[i] for i in exact_top(vectors, query, 60)}
    assert len(set(ids_of(nearest)) & expected) >= 57
    assert nearest.scored[0][0] == ids[7]
    stored = vectors.astype(np.float16).astype(np.float32)
    exact_scores = stored @ query / np.linalg.norm(stored, axis=1) / np.linalg.norm(query)
    assert nearest.scored[0][1] == pytest.approx(exact_scores[7], abs=1e-3)


def test_excluded_windows_never_come_back(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    build_search_index(project, model)
    for exact_scan_max in (0, 10_000):
        nearest = nearest_window_ids(project, model, vectors[0], 10, [ids[0]], exact_scan_max=exact_scan_max)
        assert ids[0] not in ids_of(nearest)


def test_the_projects_index_serves_filtered_searches(project_with_vectors):
    """The index's expression and partial predicate fit the query, so the planner can
    serve the ORDER BY from it (here it must: sorting and seq scans are switched off)."""
    project, model, vectors, _ = project_with_vectors
    index = build_search_index(project, model)
    assert index.index_name and index.windows == len(vectors) and index_state(project, model).status == "done"
    with transaction.atomic(), raw_connection().cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        for filters in (
            SearchFilters(),
            SearchFilters(site="R1", hour_from=4, hour_to=8, labeled="unlabeled", label_id=1),
            SearchFilters(site="R1", hour_from=4, hour_to=8),
        ):
            where = window_conditions(project, model, filters)
            params = {**where.params, **recording_conditions(project, model, filters)[1]}
            state = index_state(project, model)
            params.update(query=vectors[0], exclude=[], k=10, pool=20)
            params.update(reduced_query=reduce_query(vectors[0], state.reduction))
            for per_recording in (False, True):
                newest = index.max_window_id + 1
                sql, _ = index_sql(project, model, state, where, newest, per_recording)
                cursor.execute("EXPLAIN " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                assert index.index_name in plan, plan
                if where.all and where.placed_in_time_only:
                    # Tested on the index's own rows, before any window's row is read.
                    index_scan = plan[plan.index(index.index_name) : plan.index("annotations_window w")]
                    assert "Filter:" in index_scan and "deployment_id" in index_scan and "started_at" in index_scan


def test_a_deployment_added_to_an_indexed_project_is_searchable_at_once_and_after_the_rebuild(
    project_with_vectors,
):
    project, model, vectors, ids = project_with_vectors
    first = build_search_index(project, model)
    rng = np.random.default_rng(8)
    added = (rng.standard_normal((80, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    new_ids = store_windows(create_deployment(project, "Second"), model, added, per_recording=40)
    assert index_state(project, model).max_window_id == first.max_window_id < min(new_ids)  # outside the index
    everything = np.concatenate([vectors, added])
    all_ids = ids + new_ids
    for label in ("before the rebuild", "after the rebuild"):
        for exact_scan_max in (0, 10_000):
            nearest = nearest_window_ids(project, model, added[3], 500, exact_scan_max=exact_scan_max)
            found = ids_of(nearest)
            assert len(found) == len(set(found)) == len(all_ids), label  # every window exactly once
            assert found[0] == new_ids[3], label
            top = [all_ids[i] for i in exact_top(everything, added[3], 50)]
            assert len(set(found[:50]) & set(top)) >= 48, label
        rebuilt = build_search_index(project, model)
    assert rebuilt.max_window_id == max(new_ids) and rebuilt.index_name != first.index_name
    with connection.cursor() as cursor:  # the old index was dropped
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE %s", [f"window_hnsw_p{project.pk}_%"])
        assert cursor.fetchone()[0] == 1


def test_an_index_whose_table_lacks_places_still_serves_filters_and_is_rebuilt_with_them(project_with_vectors):
    """Indexes built before their tables carried each window's deployment and start."""
    project, model, vectors, ids = project_with_vectors
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    for hour, recording in enumerate(Recording.objects.filter(deployment__project=project).order_by("pk")):
        edit_start_time(recording, start + dt.timedelta(hours=hour))
    built = build_search_index(project, model)
    old = f"p{project.pk}_m{model.pk}_{built.max_window_id}"  # as they were named
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {built.vector_table} DROP COLUMN deployment_id, DROP COLUMN started_at")
        cursor.execute(f"ALTER TABLE {built.vector_table} RENAME TO window_reduced_{old}")
        cursor.execute(f"ALTER INDEX {built.index_name} RENAME TO window_hnsw_{old}")
    SearchIndex.objects.filter(pk=built.pk).update(
        places=False, vector_table=f"window_reduced_{old}", index_name=f"window_hnsw_{old}"
    )
    filters = SearchFilters(hour_from=2, hour_to=5)  # the third to fifth recordings' windows
    exact = nearest_window_ids(project, model, vectors[120], 20, filters=filters, exact_scan_max=10_000)
    assert set(ids_of(exact)) <= set(ids[100:250]) and ids[120] == ids_of(exact)[0]
    for label in ("before the rebuild", "after it"):
        nearest = nearest_window_ids(
            project, model, vectors[120], 20, filters=filters, exact_scan_max=0, sketch_scan_max=0
        )
        assert nearest.path == "index" and ids_of(nearest) == ids_of(exact), label
        assert index_wanted(project, model) == (label == "before the rebuild")
        rebuilt = build_search_index(project, model)
    assert rebuilt.places and rebuilt.vector_table == built.vector_table
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [f"window_reduced_{old}"])
        assert cursor.fetchone()[0] is None


def test_an_edited_start_time_moves_the_windows_in_the_indexs_own_table_at_once(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    start = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    recordings = list(Recording.objects.filter(deployment__project=project).order_by("pk"))
    for hour, recording in enumerate(recordings):
        edit_start_time(recording, start + dt.timedelta(hours=hour))
    build_search_index(project, model)
    edit_start_time(recordings[2], start + dt.timedelta(hours=20))  # windows ids[100:150]
    for filters, expected in (
        (SearchFilters(hour_from=2, hour_to=5), set(ids[150:250])),
        (SearchFilters(hour_from=20, hour_to=21), set(ids[100:150])),
    ):
        for exact_scan_max in (0, 10_000):
            nearest = nearest_window_ids(
                project, model, vectors[120], 30, filters=filters, exact_scan_max=exact_scan_max, sketch_scan_max=0
            )
            assert nearest.path == ("index" if exact_scan_max == 0 else "exact")
            assert set(ids_of(nearest)) <= expected and len(nearest.scored) == 30, filters


def test_a_search_that_read_the_index_before_a_rebuild_retired_it_is_answered_by_the_new_one(
    project_with_vectors, monkeypatch
):
    project, model, vectors, ids = project_with_vectors
    build_search_index(project, model)
    retired = index_state(project, model)
    store_windows(create_deployment(project, "Second"), model, vectors[:60] + 0.01, per_recording=30)
    build_search_index(project, model)  # drops the table that ``retired`` names
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [retired.vector_table])
        assert cursor.fetchone()[0] is None
    reads = iter([retired])
    monkeypatch.setattr(search_nearest, "index_state", lambda *args: next(reads, index_state(*args)))
    nearest = nearest_window_ids(project, model, vectors[5], 10, exact_scan_max=0, sketch_scan_max=0)
    assert nearest.path == "index" and ids[5] in ids_of(nearest)[:2]


def test_a_running_builds_progress_counts_the_vectors_written_then_the_index(project_with_vectors):
    project, model, vectors, _ = project_with_vectors
    SearchIndex.objects.create(project=project, model=model, status="running", vectors_written=len(vectors) // 2)
    (summary,) = index_summaries(project)
    assert summary.progress == pytest.approx(WRITING_SHARE * (1 - GRAPHS_SHARE) / 2)
    assert summary.windows_not_indexed == len(vectors)
    # The project's graph serves; a deployment's and a band of hours' graphs of six are built.
    SearchIndex.objects.filter(project=project).update(deployment_graphs=[7], hour_graphs=[1], graphs_planned=6)
    (summary,) = index_summaries(project)
    assert summary.progress == pytest.approx(1 - GRAPHS_SHARE * 4 / 6)
    card = render_to_string("frontend/_search_index.html", {"index": summary})
    assert card.startswith("ready; graphs of each deployment and time of day being built, 2 of 6")


@pytest.fixture
def three_deployments(project_with_vectors, monkeypatch):
    """The fixture's deployment D (400 windows, site R1), E (160, site R1) and F (60, site
    R2), and graphs for deployments of at least 100 windows."""
    monkeypatch.setattr(search_index, "GRAPH_MIN_WINDOWS", 100)
    project, model, vectors, ids = project_with_vectors
    project.deployments.update(site="R1")
    rng = np.random.default_rng(11)
    added = (rng.standard_normal((220, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    e = create_deployment(project, "E", site="R1")
    f = create_deployment(project, "F", site="R2")
    ids += store_windows(e, model, added[:160], per_recording=40)
    ids += store_windows(f, model, added[160:], per_recording=30)
    return project, model, np.concatenate([vectors, added]), ids, [*project.deployments.order_by("name")]


def test_deployments_get_graphs_of_their_own_that_answer_searches_filtered_to_them(three_deployments):
    project, model, vectors, ids, (d, e, f) = three_deployments
    built = build_search_index(project, model)
    assert built.status == "done" and built.deployment_graphs == [d.pk, e.pk]  # the largest first; F too small
    state = index_state(project, model)
    assert state.deployment_graphs == {d.pk, e.pk}
    deployment_of = np.repeat([d.pk, e.pk, f.pk], [400, 160, 60])
    for filters, deployments in (
        (SearchFilters(deployment_id=e.pk), [e.pk]),
        (SearchFilters(site="R1"), [d.pk, e.pk]),
        (SearchFilters(site="R1", hour_from=0, hour_to=24), None),  # no start times: nothing passes
    ):
        where = window_conditions(project, model, filters)
        graphs = place_graphs(state, where, filters.deployment_id, bool(filters.site))
        assert [part.deployment_id for part in graphs] == (deployments or [d.pk, e.pk])
        if deployments is None:
            continue
        with transaction.atomic(), raw_connection().cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            params = {**where.params, "query": vectors[0], "exclude": [], "k": 10, "pool": 20}
            params["reduced_query"] = reduce_query(vectors[0], state.reduction)
            sql, _ = index_sql(project, model, state, where, None, graphs=graphs)
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        for deployment_id in deployments:  # each walks its own graph, and none the project's
            assert f"{state.index_name}_d{deployment_id} " in plan, plan
        assert f"{state.index_name} " not in plan, plan
        passing = np.isin(deployment_of, deployments)
        for query in (vectors[450], vectors[10] + vectors[500]):
            nearest = nearest_window_ids(project, model, query, 20, filters=filters, exact_scan_max=0)
            exact = [ids[i] for i in np.flatnonzero(passing)[exact_top(vectors[passing], query, 20)]]
            assert nearest.path == "index" and ids_of(nearest) == exact, filters


def test_an_answer_from_a_deployments_graph_that_misses_its_probe_windows_is_searched_again_widely(
    three_deployments, monkeypatch
):
    project, model, vectors, ids, (d, e, f) = three_deployments
    build_search_index(project, model)
    state = index_state(project, model)
    where = window_conditions(project, model, SearchFilters(deployment_id=e.pk))
    in_e = probe_of_graphs(raw_connection(), state, place_graphs(state, where, e.pk, False))
    assert set(in_e.window_ids.tolist()) == set(ids[400:560])  # E's windows of the probe (all, under 2,048)
    real_index_rows = search_nearest.index_rows
    asked = []

    def lost_unless_widest(*args, **kwargs):
        asked.append((args[-1], [part.deployment_id for part in kwargs.get("graphs")]))
        rows = real_index_rows(*args, **kwargs)
        return rows if args[-1] else [(window_id, -score, recording) for window_id, score, recording in rows]

    monkeypatch.setattr(search_nearest, "index_rows", lost_unless_widest)
    clip = vectors[450] + 0.1 * vectors[500]
    widened = nearest_window_ids(project, model, clip, 20, filters=SearchFilters(deployment_id=e.pk), exact_scan_max=0)
    assert asked == [(False, [e.pk]), (True, [e.pk])] and widened.widened and widened.path == "index"
    passing = np.arange(400, 560)
    assert ids_of(widened) == [ids[i] for i in passing[exact_top(vectors[passing], clip, 20)]]


def test_a_filter_is_left_to_the_projects_graph_unless_every_deployment_it_names_has_one():
    reduction = None
    state = IndexState("i", "t", 10, 10, "done", reduction, places=True, deployment_graphs=frozenset({1, 2, 3}))

    def graphs(state, where, deployment_id, site):
        return [part.deployment_id for part in place_graphs(state, where, deployment_id, site)]

    site = WindowConditions(["site"], [], {"site_deployments": [1, 2]})
    assert graphs(state, site, None, True) == [1, 2]
    assert place_graphs(state, site, None, True)[0].where == "v.deployment_id = 1"  # the partial index's predicate
    assert graphs(state, site, 2, True) == [2]  # a deployment of the site
    assert graphs(state, site, 3, True) == []  # not of the site: nothing passes, no graph to walk
    assert graphs(state, WindowConditions([], [], {}), 3, False) == [3]
    assert graphs(state, WindowConditions([], [], {}), None, False) == []  # no place filter
    with_new = WindowConditions(["site"], [], {"site_deployments": [1, 2, 4]})  # 4 has no graph yet
    assert graphs(state, with_new, None, True) == []
    many = frozenset(range(PLACE_GRAPHS_MAX + 1))
    wide = WindowConditions(["site"], [], {"site_deployments": sorted(many)})
    assert graphs(dataclasses.replace(state, deployment_graphs=many), wide, None, True) == []
    assert graphs(dataclasses.replace(state, places=False), site, None, True) == []


def test_deployment_graphs_that_a_crash_cut_short_are_built_by_the_next_build(three_deployments):
    project, model, vectors, ids, (d, e, f) = three_deployments
    built = build_search_index(project, model)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {built.index_name}_d{e.pk}")
    SearchIndex.objects.filter(pk=built.pk).update(status="running", deployment_graphs=[d.pk], build_started_at=None)
    site = SearchFilters(site="R1")
    nearest = nearest_window_ids(project, model, vectors[450], 10, filters=site, exact_scan_max=0)
    assert nearest.path == "sketch" and ids[450] == ids_of(nearest)[0]  # without E's graph, as before graphs
    nearest = nearest_window_ids(project, model, vectors[450], 10, filters=site, exact_scan_max=0, sketch_scan_max=0)
    assert nearest.path == "index" and ids[450] == ids_of(nearest)[0]  # the project's graph, filtered
    assert index_wanted(project, model)
    rebuilt = build_search_index(project, model)
    assert rebuilt.index_name == built.index_name and rebuilt.deployment_graphs == [d.pk, e.pk]
    assert rebuilt.status == "done" and not index_wanted(project, model)


def test_embeddings_of_different_models_never_mix(project_with_vectors, make_user):
    project, model, vectors, ids = project_with_vectors
    other_model = register_embedding_model("other-model", "1", 8, 3.0, 3.0, 48_000)
    deployment = project.deployments.get()
    other_ids = store_windows(deployment, other_model, np.ones((5, 8), np.float32))
    build_search_index(project, model)
    build_search_index(project, other_model)
    for exact_scan_max in (0, 10_000):
        nearest = nearest_window_ids(project, model, vectors[1], 500, exact_scan_max=exact_scan_max)
        assert len(nearest.scored) == len(ids)
        assert not set(ids_of(nearest)) & set(other_ids)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE %s", [f"window_hnsw_p{project.pk}_%"])
        assert cursor.fetchone()[0] == 2


def test_searches_stay_inside_the_project(project_with_vectors, make_user):
    project, model, vectors, _ = project_with_vectors
    other = create_project(make_user("other"), "Other")
    foreign = store_windows(create_deployment(other, "X"), model, vectors[:5])
    build_search_index(project, model)
    for exact_scan_max in (0, 10_000):
        nearest = nearest_window_ids(project, model, vectors[0], 500, exact_scan_max=exact_scan_max)
        assert not set(ids_of(nearest)) & set(foreign)


def test_a_query_of_the_wrong_shape_or_all_zeros_is_refused(project_with_vectors):
    project, model, _, _ = project_with_vectors
    with pytest.raises(InputError, match="needs"):
        nearest_window_ids(project, model, np.ones(8, np.float32), 5)
    with pytest.raises(InputError, match="all zeros"):
        nearest_window_ids(project, model, np.zeros(16, np.float32), 5)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_builds_the_projects_index_in_a_task_of_its_own(celery_worker_process, make_user):
    rng = np.random.default_rng(4)
    project = create_project(make_user("indexer"), "Indexed by a worker")
    model = register_embedding_model("worker-indexed", "1", 16, 1.0, 1.0, 16_000)
    vectors = (rng.standard_normal((200, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    ids = store_windows(create_deployment(project, "D"), model, vectors)
    request_index_build(project, model)
    assert index_state(project, model).status == "queued"
    wait_for(lambda: index_state(project, model).status == "done", timeout=120, what="the index build task")
    (summary,) = index_summaries(project)
    assert summary.windows_indexed == len(ids) and summary.windows_not_indexed == 0
    nearest = nearest_window_ids(project, model, vectors[3], 10, exact_scan_max=0)
    assert nearest.path == SearchPath.INDEX and nearest.scored[0][0] == ids[3]


def test_a_recordings_new_start_time_moves_its_windows_in_time_filters(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    recording = Recording.objects.get(windows__id=ids[0])
    started = dt.datetime(2026, 6, 1, 3, 59, 58, tzinfo=dt.UTC)
    edit_start_time(recording, started)
    dawn = SearchFilters(hour_from=4, hour_to=5)
    found = ids_of(nearest_window_ids(project, model, vectors[0], 500, filters=dawn))
    # Windows start every second from 03:59:58: all but the first two are in the 4 o'clock hour.
    assert sorted(found) == sorted(ids[2:50])
    edit_start_time(recording, None)
    assert nearest_window_ids(project, model, vectors[0], 500, filters=dawn).scored == []


def test_date_and_hour_filters_keep_exactly_the_windows_of_their_local_times_on_every_path(make_user):
    """Spans bound a recording's windows by start offset where its UTC offset is steady;
    across a change of daylight saving, or with no known duration, each window is tested.
    Every path must return exactly the windows whose local start passes."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    project = create_project(make_user("night"), "Nights")
    deployment = create_deployment(project, "Tower", timezone="Europe/Berlin")
    model = register_embedding_model("ten-minute", "1", 16, 600.0, 600.0, 16_000)
    utc = dt.UTC
    recordings = [  # (UTC start, duration in hours, windows)
        (dt.datetime(2026, 10, 24, 22, 0, tzinfo=utc), 6, 36),  # 00:00 CEST, over the fall back: 02:xx twice
        (dt.datetime(2026, 6, 1, 20, 0, tzinfo=utc), 8, 48),  # 22:00 CEST, over midnight, steady
        (dt.datetime(2026, 3, 29, 0, 30, tzinfo=utc), 2, 12),  # 01:30 CET, over the spring forward
        (dt.datetime(2026, 6, 2, 1, 0, tzinfo=utc), None, 12),  # duration unknown
        (None, 2, 12),  # start unknown: never passes a time filter
    ]
    rng = np.random.default_rng(11)
    starts: dict[int, dt.datetime | None] = {}
    for i, (started, hours, count) in enumerate(recordings):
        recording = Recording.objects.create(
            deployment=deployment,
            path=f"/nights/{i}.wav",
            filename=f"{i}.wav",
            status=RecordingStatus.DONE,
            started_at=started,
            duration_s=None if hours is None else hours * 3600.0,
        )
        offsets = np.arange(count, dtype=np.float64) * 600
        replace_windows(
            recording.pk, model, offsets, offsets + 600, rng.standard_normal((count, 16)).astype(np.float32)
        )
        for window_id, start_s in recording.windows.values_list("id", "start_s"):
            starts[window_id] = None if started is None else started + dt.timedelta(seconds=start_s)
    build_search_index(project, model)
    june_2 = dt.date(2026, 6, 2)
    cases = [
        SearchFilters(hour_from=2, hour_to=3),
        SearchFilters(hour_from=23, hour_to=1),  # wraps midnight
        SearchFilters(hour_from=22),
        SearchFilters(hour_to=3),
        SearchFilters(date_from=june_2, date_to=june_2),
        SearchFilters(date_from=june_2, hour_from=0, hour_to=2),
        SearchFilters(date_to=dt.date(2026, 3, 29), hour_from=3),
        SearchFilters(hour_from=2.5, hour_to=time_of_day("03:10", "to")),  # minutes: 02:30 to 03:10
        SearchFilters(hour_from=time_of_day("23:50", "from"), hour_to=0.5),  # minutes over midnight
    ]
    for filters in cases:
        hour_from, hour_to = filters.hour_from or 0, 24 if filters.hour_to is None else filters.hour_to
        expected = set()
        for window_id, started in starts.items():
            if started is None:
                continue
            local = started.astimezone(berlin)
            hours = local.hour + local.minute / 60
            in_hours = hour_from <= hours < hour_to if hour_from <= hour_to else not hour_to <= hours < hour_from
            in_dates = (filters.date_from or local.date()) <= local.date() <= (filters.date_to or local.date())
            if in_hours and in_dates:
                expected.add(window_id)
        assert expected, filters
        for path, crossovers in (
            (SearchPath.EXACT, (10_000, 10_000)),
            (SearchPath.SKETCH, (0, 10_000)),
            (SearchPath.INDEX, (0, 0)),
        ):
            nearest = nearest_window_ids(project, model, rng.standard_normal(16), 500, (), filters, *crossovers)
            assert nearest.path == path
            assert set(ids_of(nearest)) == expected, (filters, path)
        # Counted from the spans: every window that passes, and those of recordings to recheck.
        assert len(expected) <= nearest_window_ids(project, model, rng.standard_normal(16), 5, (), filters).candidates


def test_a_build_is_requested_once_unless_it_was_lost(project_with_vectors):
    project, model, _, _ = project_with_vectors
    lost = timezone.now() - dt.timedelta(hours=7)
    SearchIndex.objects.create(project=project, model=model, status="queued", build_started_at=lost)
    requested = request_index_build(project, model)
    assert requested.build_started_at > lost  # sent again
    assert request_index_build(project, model).build_started_at == requested.build_started_at  # in flight


def test_an_index_answer_worse_than_the_examples_neighbourhood_is_rescued_and_the_page_says_so(
    project_with_vectors, monkeypatch, client_for
):
    project, model, vectors, ids = project_with_vectors
    build_search_index(project, model)
    example = 120  # in the third recording, with neighbours either side
    checked_by_index = {"anchor_window_ids": [ids[example]], "exact_scan_max": 0}
    checked = nearest_window_ids(project, model, vectors[example], 20, [ids[example]], **checked_by_index)
    assert checked.path == "index" and not checked.rescued  # a sound answer passes its check

    # An index that settled in the wrong part of its graph: its answer is the worst windows.
    real_index_rows = search_nearest.index_rows

    def lost_index_rows(*args, **kwargs):
        rows = real_index_rows(*args, **kwargs)
        return [(window_id, -score, recording) for window_id, score, recording in rows]

    monkeypatch.setattr(search_nearest, "index_rows", lost_index_rows)
    rescued = nearest_window_ids(project, model, vectors[example], 20, [ids[example]], **checked_by_index)
    assert rescued.rescued and rescued.path == "sketch"
    others = [i for i in exact_top(vectors, vectors[example], 21) if i != example][:20]
    assert len(set(ids_of(rescued)) & {ids[i] for i in others}) >= 19
    unchecked = nearest_window_ids(project, model, vectors[example], 20, [ids[example]], exact_scan_max=0)
    assert unchecked.path == "index" and not unchecked.rescued  # nothing to check against

    # The page's search of 400 windows would be exact: it takes the index when it holds more.
    monkeypatch.setattr(search_nearest, "EXACT_SCAN_MAX_WINDOWS", 0)
    user = project.memberships.get().user
    record = save_search(project, user, SearchSpec(positive_windows=(ids[example],)))
    browser = Client()
    browser.force_login(user)
    page = browser.get(f"/projects/{project.pk}/search/?history={record.pk}")
    assert page.status_code == 200
    text = page.content.decode()
    assert "How they were found: Approximate: every window that passes the filters was ranked" in text
    assert "The search index missed windows close to your examples" in text
    record.refresh_from_db()
    assert (record.result_path, record.result_rescued) == ("sketch", True)
    api = client_for(user).post(f"/api/projects/{project.pk}/search/", {"window_id": ids[example]}, format="json")
    assert api.status_code == 200 and api.json()["rescued"] is True and api.json()["path"] == "sketch"


def test_an_index_answer_that_misses_its_probe_windows_is_searched_again_widely(project_with_vectors, monkeypatch):
    """A query with no windows around it (an uploaded clip): its answer is checked against
    the index's probe, a sample of the project's windows; one that settled in the wrong
    part of the graph misses them, and the graph is searched again as widely as it can be."""
    project, model, vectors, ids = project_with_vectors
    index = build_search_index(project, model)
    probe = IndexProbe.from_bytes(bytes(index.probe), model.embedding_dim)
    assert len(probe.window_ids) == len(vectors) and set(probe.window_ids.tolist()) == set(ids)  # all, under 2,048
    clip = vectors[120] + 0.1 * vectors[300]
    sound = nearest_window_ids(project, model, clip, 20, exact_scan_max=0)
    assert sound.path == "index" and not sound.widened  # a sound answer passes its check

    real_index_rows = search_nearest.index_rows
    asked = []

    def lost_unless_widest(*args, **kwargs):
        asked.append(args[-1] if len(args) == 9 else kwargs.get("widest", False))
        rows = real_index_rows(*args, **kwargs)
        return rows if asked[-1] else [(window_id, -score, recording) for window_id, score, recording in rows]

    monkeypatch.setattr(search_nearest, "index_rows", lost_unless_widest)
    widened = nearest_window_ids(project, model, clip, 20, exact_scan_max=0)
    assert asked == [False, True] and widened.widened and widened.path == "index"
    assert set(ids_of(widened)) == set(ids_of(sound))
    # The query's own examples are never counted missing, nor are probe windows under a filter.
    assert not probe_misses(probe, clip, [(ids[0], 2.0, 0)] * 20, 20, set(ids))
    asked.clear()
    every_window = SearchFilters(deployment_id=project.deployments.get().pk)
    filtered = nearest_window_ids(project, model, clip, 20, filters=every_window, exact_scan_max=0, sketch_scan_max=0)
    assert asked == [False] and filtered.path == "index" and not filtered.widened


def test_a_probe_keeps_its_windows_through_its_bytes():
    rng = np.random.default_rng(0)
    probe = IndexProbe.of(np.arange(3000) * 7, rng.standard_normal((3000, 24)).astype(np.float32))
    assert len(probe.window_ids) == PROBE_WINDOWS and probe.units.dtype == np.float32
    again = IndexProbe.from_bytes(probe.to_bytes(), 24)
    np.testing.assert_array_equal(again.window_ids, np.arange(PROBE_WINDOWS) * 7)
    np.testing.assert_array_equal(again.units, probe.units)
    np.testing.assert_allclose(np.linalg.norm(again.units, axis=1), 1, atol=2e-3)


def test_times_of_day_are_read_to_the_minute_and_refused_with_the_forms_they_take():
    assert time_of_day("5", "hour_from") == 5
    assert time_of_day("05:30", "hour_from") == 5.5
    assert time_of_day("22:45:00", "hour_from") == 22.75
    assert time_of_day("24:00", "hour_to") == 24
    assert time_of_day(" ", "hour_to") is None
    assert clock(time_of_day("07:05", "hour_from")) == "07:05"
    for bad in ("5:60", "25", "24:01", "5.5", "noon", "5:30:10", "-1"):
        with pytest.raises(InputError, match="time of day like 5, 05:30"):
            time_of_day(bad, "hour_from")
