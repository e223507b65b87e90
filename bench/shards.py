"""Benchmark: one project's windows split over shards by deployment, each searched through
its own index, the best k of each merged: what a coordinator (Citus, or the app over
several nodes) would return, against the one-project search and exact cosine.

    python -u -m bench.scale --windows 1000000 --keep --searches-only
    python -u -m bench.shards [--shards 4]

On the database that ``bench.scale --keep`` left: the big project's windows are copied
into SHARDS projects, deployment by deployment in turn (under a model of their own name,
so that a recording may hold a window of each), and each gets its search index. Every
query is a stored window of the big project, searched as the page does (k = 100):
through the big project's index, and through every shard's, merged by exact score.
Recall is against exact cosine over the stored vectors. The shards are searched one
after another here (2 cores); "parallel" is the slowest shard plus the merge, what a
coordinator that asks them at once waits for.
"""

from __future__ import annotations

import argparse
import statistics
import time

K = 100
QUERIES = 30


def main() -> None:
    from bench.database import bench_database

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    args = parser.parse_args()
    with bench_database(keep=True, reuse=True):
        run(args.shards)


def shard_projects(big, model, shards: int):
    """The shard projects, created and indexed, and their model."""
    from django.db import connection

    from annotations.embedding_store import register_embedding_model
    from annotations.models import Project
    from annotations.search_index import build_search_index

    shard_model = register_embedding_model(
        "bench-shard", "1", model.embedding_dim, model.window_s, model.hop_s, model.sample_rate
    )
    if shard_model.sketch_center is None:
        type(shard_model).objects.filter(pk=shard_model.pk).update(sketch_center=model.sketch_center)
        shard_model.refresh_from_db()
    projects = []
    deployments = list(big.deployments.order_by("pk").values_list("pk", flat=True))
    for index in range(shards):
        project = Project.objects.create(name=f"shard {index} of {shards}")
        projects.append(project)
        mine = deployments[index::shards]
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO annotations_window (recording_id, model_id, project_id, deployment_id, start_s, end_s, "
                "started_at, embedding, sketch, sketch_norm, top_classes, top_logits) "
                "SELECT recording_id, %s, %s, deployment_id, start_s, end_s, started_at, embedding, sketch, "
                "sketch_norm, top_classes, top_logits FROM annotations_window "
                "WHERE project_id = %s AND model_id = %s AND deployment_id = ANY(%s)",
                [shard_model.pk, project.pk, big.pk, model.pk, mine],
            )
        copied = time.perf_counter() - started
        started = time.perf_counter()
        build_search_index(project, shard_model)
        print(
            f"shard {index}: {len(mine)} deployments, copied in {copied:.0f} s, "
            f"indexed in {time.perf_counter() - started:.0f} s"
        )
    return projects, shard_model


def exact_kth(big, model, query_id: int) -> float:
    """The score of the big project's K-th window nearest the window ``query_id`` by exact
    cosine over the stored vectors."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(
            "SELECT w.id, 1 - (w.embedding <=> q.embedding) FROM annotations_window w, "
            "(SELECT embedding FROM annotations_window WHERE id = %s) q "
            "WHERE w.project_id = %s AND w.model_id = %s AND w.id <> %s ORDER BY 2 DESC LIMIT %s",
            [query_id, big.pk, model.pk, query_id, K],
        )
        return cursor.fetchall()[-1][1]


def tied(scored: list[tuple[int, float]], kth: float) -> float:
    """Tie-tolerant recall of a best-first answer (id, exact score): the share of K whose
    score reaches the exact K-th, less float16's rounding. Shard windows are copies with
    ids of their own: scores compare them."""
    return sum(score >= kth - 1e-3 for _, score in scored[:K]) / K


def run(shards: int) -> None:
    from annotations.models import EmbeddingModel, Project

    big = Project.objects.get(name="season")
    model = EmbeddingModel.objects.get(name="bench-scale")
    projects, shard_model = shard_projects(big, model, shards)
    try:
        measure(big, model, projects, shard_model, shards)
    finally:
        drop_shards(projects, shard_model)


def drop_shards(projects, shard_model) -> None:
    """Leave the kept database as bench.scale left it (its sizes are measured on reuse)."""
    from django.db import connection

    from annotations.models import SearchIndex

    with connection.cursor() as cursor:
        for table in SearchIndex.objects.filter(project__in=projects).values_list("vector_table", flat=True):
            cursor.execute(f'DROP TABLE IF EXISTS "{table}"')
        cursor.execute("DELETE FROM annotations_window WHERE model_id = %s", [shard_model.pk])
    for project in projects:
        project.delete()
    shard_model.delete()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM annotations_window")


def measure(big, model, projects, shard_model, shards: int) -> None:
    import numpy as np
    from django.db import transaction

    from annotations.embedding_store import window_embeddings
    from annotations.models import Window
    from annotations.search import nearest_window_ids

    rng = np.random.default_rng(7)
    ids = np.array(Window.objects.filter(project=big, model=model).values_list("id", flat=True))
    queries = [int(i) for i in rng.choice(ids, QUERIES, replace=False)]
    one, sequential, parallel, merging = [], [], [], []
    recall_one, recall_merged = [], []
    # The exact answers first: each scans every window, which would push the indexes out
    # of the cache between the timed searches.
    with transaction.atomic():
        kths = {query_id: exact_kth(big, model, query_id) for query_id in queries}

    def timed(*args):
        nearest_window_ids(*args)  # as bench.scale: each query's second run is timed
        started = time.perf_counter()
        result = nearest_window_ids(*args)
        return result, 1000 * (time.perf_counter() - started)

    for query_id in queries:
        query, kth = window_embeddings([query_id])[query_id], kths[query_id]
        found, took = timed(big, model, query, K, [query_id])
        one.append(took)
        recall_one.append(tied(found.scored, kth))
        # The query window's own copy in its shard is left out, as the window itself is.
        place = Window.objects.values_list("recording_id", "start_s").get(pk=query_id)
        copy = list(
            Window.objects.filter(model=shard_model, recording_id=place[0], start_s=place[1]).values_list(
                "pk", flat=True
            )
        )
        per_shard, answers = [], []
        for project in projects:
            found, took = timed(project, shard_model, query, K, copy)
            answers.append(found.scored)
            per_shard.append(took)
        started = time.perf_counter()
        merged = sorted((hit for answer in answers for hit in answer), key=lambda hit: -hit[1])[:K]
        merge_ms = 1000 * (time.perf_counter() - started)
        sequential.append(sum(per_shard) + merge_ms)
        parallel.append(max(per_shard) + merge_ms)
        merging.append(merge_ms)
        recall_merged.append(tied(merged, kth))
    windows = len(ids)
    print(f"{windows:,} windows x {model.embedding_dim}-d in one project, or {shards} shards by deployment; k={K}")
    print(f"{'search':<34} {'p50 ms':>7} {'p95 ms':>7} {'recall':>7} {'worst':>6}")
    for name, times, recalls in (
        ("one project, its index", one, recall_one),
        (f"{shards} shards, one after another", sequential, recall_merged),
        (f"{shards} shards at once (slowest + merge)", parallel, recall_merged),
    ):
        p95 = float(np.percentile(times, 95))
        print(f"{name:<34} {statistics.median(times):7.1f} {p95:7.1f} {np.mean(recalls):7.3f} {min(recalls):6.2f}")
    print(f"(the merge itself: {statistics.median(merging):.2f} ms p50 for {shards} x {K} hits)")


if __name__ == "__main__":
    main()
