"""Migrating an existing database in place: float32 vectors become float16 halfvecs, sketched at unit length;
search indexes over full embeddings make way for reduced ones."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import center_array, register_embedding_model, sketch_query, window_embeddings
from annotations.models import EmbeddingModel
from annotations.search_index import unindexed_windows
from tests.test_detection_rates import two_site_survey

BEFORE = [("annotations", "0004_search_results_and_file_fingerprints")]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


@pytest.mark.django_db(transaction=True)
def test_vector_embeddings_are_migrated_in_place_to_float16():
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("annotations")
    migrate(BEFORE)
    try:
        rng = np.random.default_rng(5)
        vectors = rng.standard_normal((30, 12)).astype(np.float32) * np.float32(3)
        started = dt.datetime(2026, 5, 1, 4, tzinfo=dt.UTC)
        with connection.cursor() as cursor:
            # The schema of 0004, written as it was: a vector column and a per-model index.
            cursor.execute(
                "INSERT INTO annotations_project (name, description, created_at) VALUES ('p', '', now()) RETURNING id"
            )
            project = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO annotations_deployment (project_id, name, site, recorder, timezone, server_folder, "
                "created_at) VALUES (%s, 'd', '', '', 'UTC', '', now()) RETURNING id",
                [project],
            )
            deployment = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO annotations_recording (deployment_id, path, filename, size_bytes, fingerprint, status, "
                "error, warning, started_at, started_at_source, windows_done, attempts, updated_at) "
                "VALUES (%s, '/a.wav', 'a.wav', 0, '', 'done', '', '', %s, 'filename', 30, 1, now()) RETURNING id",
                [deployment, started],
            )
            recording = cursor.fetchone()[0]
            cursor.execute(
                "INSERT INTO annotations_embeddingmodel (name, version, embedding_dim, window_s, hop_s, sample_rate, "
                "class_names) VALUES ('old', '1', 12, 5, 5, 32000, '{}') RETURNING id"
            )
            model = cursor.fetchone()[0]
            for i, vector in enumerate(vectors):
                cursor.execute(
                    "INSERT INTO annotations_window (recording_id, model_id, start_s, end_s, embedding) "
                    "VALUES (%s, %s, %s, %s, %s::vector)",
                    [recording, model, 5.0 * i, 5.0 * i + 5, "[" + ",".join(repr(float(x)) for x in vector) + "]"],
                )
            cursor.execute(
                f"CREATE INDEX window_embedding_hnsw_model_{model} ON annotations_window "
                f"USING hnsw ((embedding::vector(12)) vector_cosine_ops) WHERE model_id = {model}"
            )
            cursor.execute("SELECT id FROM annotations_window ORDER BY start_s")
            ids = [row[0] for row in cursor.fetchall()]
        migrate(latest)

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT format_type(atttypid, atttypmod), attstorage FROM pg_attribute "
                "WHERE attrelid = 'annotations_window'::regclass AND attname = 'embedding'"
            )
            assert cursor.fetchone() == ("halfvec", "p")  # float16, kept inline
            cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'window_embedding_hnsw_model_%%'")
            assert cursor.fetchone()[0] == 0  # the per-model vector index gave way
            cursor.execute("SELECT project_id, deployment_id, started_at FROM annotations_window ORDER BY start_s")
            rows = cursor.fetchall()
            cursor.execute("SELECT sketch, sketch_norm FROM annotations_window ORDER BY start_s")
            sketches = cursor.fetchall()
        # Sketched against the model's mean unit-length embedding, as new windows will be.
        center = center_array(EmbeddingModel.objects.get(pk=model).sketch_center)
        stored = vectors.astype(np.float16).astype(np.float32)
        np.testing.assert_allclose(center, (stored / np.linalg.norm(stored, axis=1, keepdims=True)).mean(0), atol=2e-3)
        expected = [sketch_query(vector, center) for vector in vectors]
        assert [bits for bits, _ in sketches] == [bits for bits, _ in expected]
        np.testing.assert_allclose([n for _, n in sketches], [n for _, n in expected], rtol=1e-4)
        migrated = window_embeddings(ids)
        assert len(migrated) == len(vectors)
        for i, window_id in enumerate(ids):
            np.testing.assert_array_equal(migrated[window_id], vectors[i].astype(np.float16).astype(np.float32))
            assert rows[i] == (project, deployment, started + dt.timedelta(seconds=5 * i))
    finally:
        migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_runs_made_before_detection_counts_get_theirs(make_user):
    """0013 counts the detections of existing runs per label, local day and hour."""
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("annotations")
    project, run = two_site_survey(make_user("owner"))  # the tables it writes are those of 0012
    counted = sorted(run.detection_counts.values_list("label__name", "day", "hour", "detections"), key=str)
    migrate([("annotations", "0012_prototype_negatives_cross_validation")])
    try:
        migrate(latest)
        assert sorted(run.detection_counts.values_list("label__name", "day", "hour", "detections"), key=str) == counted
        assert len(counted) == 4  # kiwi at 22 h on the 15th and 0 h on the 16th, morepork, one of unknown start
    finally:
        migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_full_dimension_search_indexes_are_dropped_and_left_for_the_worker_to_rebuild(make_user):
    """Migration 0027: an index over the full embeddings (the schema before reduced
    vectors) is dropped, and its row says that no window is indexed, so that the worker's
    start (request_wanted_builds) queues a build."""
    from annotations.models import SearchIndex
    from tests.test_search import store_windows

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes("annotations")
    project = create_project(make_user("upgrader"), "Upgraded")
    model = register_embedding_model("old-index", "1", 16, 1.0, 1.0, 16_000)
    window_ids = store_windows(create_deployment(project, "D"), model, np.ones((40, 16), np.float32))
    old_index = f"window_hnsw_p{project.pk}_m{model.pk}_{max(window_ids)}"
    migrate([("annotations", "0026_window_score_deployment")])
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                f"CREATE INDEX {old_index} ON annotations_window USING hnsw ((embedding::halfvec(16)) "
                f"halfvec_cosine_ops) WHERE project_id = {project.pk} AND model_id = {model.pk}"
            )
            cursor.execute(
                "INSERT INTO annotations_searchindex (project_id, model_id, index_name, max_window_id, windows, "
                "status, error) VALUES (%s, %s, %s, %s, 40, 'done', '')",
                [project.pk, model.pk, old_index, max(window_ids)],
            )
    finally:
        migrate(latest)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", [old_index])
        assert cursor.fetchone()[0] == 0
    row = SearchIndex.objects.get(project=project, model=model)
    assert (row.index_name, row.vector_table, row.max_window_id, row.windows) == ("", "", 0, 0)
    assert unindexed_windows(project, model, row.max_window_id) == 40
