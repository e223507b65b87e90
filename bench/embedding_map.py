"""Benchmark: the embedding map of a season, on the database that ``bench.scale --keep`` left.

    python -u -m bench.scale --windows 1000000 --keep --searches-only
    python -u -m bench.embedding_map

Times the worker's drawing of the big project's map (sampling MAP_SAMPLE of its windows,
reading them, laying them out, writing the points) against the bare layout of the same
windows in the same run (``project_to_plane``: numpy and UMAP), and what the map
page asks of the server: the page itself and its points, coloured each way (p50 and the
worst of RUNS), with the bytes sent. Neither grows with the project: both read the sample.
"""

from __future__ import annotations

import statistics
import time

RUNS = 7


def main() -> None:
    from bench.database import bench_database

    with bench_database(keep=True, reuse=True):
        run()


def run() -> None:
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.test import Client

    from annotations.embedding_map import MAP_SAMPLE, build_embedding_map, project_to_plane
    from annotations.embedding_store import window_matrix
    from annotations.models import EmbeddingMap, EmbeddingModel, MapPoint, Project, Window

    project = Project.objects.get(name="season")
    model = EmbeddingModel.objects.get(name="bench-scale")
    windows = Window.objects.filter(project=project, model=model).count()
    row, _ = EmbeddingMap.objects.get_or_create(project=project, model=model)
    drawings = []
    for _ in range(2):  # the first in this process compiles UMAP's numba code
        started = time.perf_counter()
        row = build_embedding_map(row.pk)
        drawings.append(time.perf_counter() - started)
    first, drawing = drawings
    sample = list(MapPoint.objects.filter(map=row).values_list("window_id", flat=True))
    embeddings = window_matrix(sample, model.embedding_dim)[1]
    started = time.perf_counter()
    projection = project_to_plane(embeddings)
    projecting = time.perf_counter() - started
    print(f"{windows:,} windows x {model.embedding_dim}-d; a map of {len(sample):,} (MAP_SAMPLE {MAP_SAMPLE:,})")
    print(
        f"drawing the map (worker): the first in a process {first:.1f} s; again {drawing:.1f} s, "
        f"{drawing / projecting:.2f}x the bare layout of the same "
        f"windows ({projection.method}, {projecting:.1f} s); its principal axes hold {row.explained_variance:.1%} "
        "of the variance"
    )

    client = Client(SERVER_NAME="localhost")
    client.force_login(get_user_model().objects.get(username="bench"))
    label = project.labels.first()
    asks = {"the page": f"/projects/{project.pk}/map/"}
    for colour in ("site", "hour", "label"):
        query = f"colour_by={colour}" + (f"&label={label.pk}" if colour == "label" else "")
        asks[f"points by {colour}"] = f"/api/projects/{project.pk}/maps/{row.pk}/points/?{query}"
    print(f"{'request':<20} {'p50 ms':>8} {'worst ms':>9} {'bytes':>10}")
    for name, url in asks.items():
        times, size = [], 0
        for _ in range(RUNS):
            started = time.perf_counter()
            response = client.get(url)
            times.append(1000 * (time.perf_counter() - started))
            assert response.status_code == 200, (url, response.status_code)
            size = len(response.content)
        print(f"{name:<20} {statistics.median(times):8.1f} {max(times):9.1f} {size:10,}")
    print(f"(numpy: {np.asarray(embeddings).nbytes / 2**20:.0f} MB of the sample's float32 rows)")


if __name__ == "__main__":
    main()
