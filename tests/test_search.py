"""Nearest-window search on the real PostgreSQL + pgvector."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection, transaction

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import (
    ensure_search_index,
    iter_deployment_embeddings,
    raw_connection,
    register_embedding_model,
    replace_windows,
    window_embeddings,
    window_matrix,
)
from annotations.errors import InputError
from annotations.models import Recording, RecordingStatus
from annotations.search import SearchFilters, nearest_sql, nearest_window_ids

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
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.argsort(-(unit @ (query / np.linalg.norm(query))))[:k]


def test_every_reader_returns_the_stored_embeddings_exactly(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    by_id = window_embeddings(ids[::7])
    assert set(by_id) == set(ids[::7])
    for i in range(0, len(ids), 7):
        np.testing.assert_array_equal(by_id[ids[i]], vectors[i])
    shuffled = np.random.default_rng(0).permutation(len(ids))
    recording_ids, matrix = window_matrix([ids[i] for i in shuffled], model.embedding_dim)
    np.testing.assert_array_equal(matrix, vectors[shuffled])
    assert len(set(recording_ids[np.argsort(shuffled)][:50])) == 1  # the first 50 windows share a recording
    deployment = project.deployments.get()
    streamed = list(iter_deployment_embeddings(deployment.pk, model, chunk_size=64))
    assert [len(chunk_ids) for chunk_ids, _ in streamed] == [64] * 6 + [16]
    row_of = {window_id: i for i, window_id in enumerate(ids)}
    for chunk_ids, chunk in streamed:
        np.testing.assert_array_equal(chunk, vectors[[row_of[w] for w in chunk_ids]])


def test_top_k_beyond_pgvector_default_ef_search(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    query = vectors[7] + 0.01
    hits = nearest_window_ids(project, model, query, 60)
    assert len(hits) == 60  # hnsw.ef_search defaults to 40, which would cut this short
    expected = {ids[i] for i in exact_top(vectors, query, 60)}
    assert len({window_id for window_id, _ in hits} & expected) >= 57
    assert hits[0][0] == ids[7]
    exact_scores = vectors @ query / np.linalg.norm(vectors, axis=1) / np.linalg.norm(query)
    assert hits[0][1] == pytest.approx(exact_scores[7], abs=1e-5)


def test_excluded_windows_never_come_back(project_with_vectors):
    project, model, vectors, ids = project_with_vectors
    hits = nearest_window_ids(project, model, vectors[0], 10, exclude_window_ids=[ids[0]])
    assert ids[0] not in [window_id for window_id, _ in hits]


def test_the_models_hnsw_index_matches_the_search(project_with_vectors):
    """The index's expression and partial predicate fit the query, so the planner can
    serve the ORDER BY from it (here it must: sorting and seq scans are switched off)."""
    project, model, vectors, _ = project_with_vectors
    assert ensure_search_index(model) and not ensure_search_index(model)  # built once
    with transaction.atomic(), raw_connection().cursor() as cursor:
        cursor.execute("ANALYZE annotations_window")
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        for filters in (
            SearchFilters(),
            SearchFilters(site="R1", hour_from=4, hour_to=8, labeled="unlabeled", label_id=1),
        ):
            sql, params = nearest_sql(model, filters)
            params.update(query=vectors[0], project=project.pk, exclude=[], k=10)
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            assert f"window_embedding_hnsw_model_{model.pk}" in plan, plan


def test_embeddings_of_different_models_never_mix(project_with_vectors, make_user):
    project, model, vectors, ids = project_with_vectors
    other_model = register_embedding_model("other-model", "1", 8, 3.0, 3.0, 48_000)
    deployment = project.deployments.get()
    other_ids = store_windows(deployment, other_model, np.ones((5, 8), np.float32))
    hits = nearest_window_ids(project, model, vectors[1], 500)
    assert len(hits) == len(ids)
    assert not {window_id for window_id, _ in hits} & set(other_ids)
    ensure_search_index(model)
    ensure_search_index(other_model)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'window_embedding_hnsw_model_%%'")
        assert cursor.fetchone()[0] == 2
    assert len(nearest_window_ids(project, model, vectors[1], 500)) == len(ids)  # the same through the index


def test_searches_stay_inside_the_project(project_with_vectors, make_user):
    project, model, vectors, _ = project_with_vectors
    other = create_project(make_user("other"), "Other")
    foreign = store_windows(create_deployment(other, "X"), model, vectors[:5])
    hits = nearest_window_ids(project, model, vectors[0], 500)
    assert not {window_id for window_id, _ in hits} & set(foreign)


def test_a_query_of_the_wrong_shape_or_all_zeros_is_refused(project_with_vectors):
    project, model, _, _ = project_with_vectors
    with pytest.raises(InputError, match="needs"):
        nearest_window_ids(project, model, np.ones(8, np.float32), 5)
    with pytest.raises(InputError, match="all zeros"):
        nearest_window_ids(project, model, np.zeros(16, np.float32), 5)
