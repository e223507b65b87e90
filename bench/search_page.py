"""Benchmark: the search results page for 50 hits, as the annotator's browser loads it.

    .venv/bin/python -m bench.search_page [--windows 20000] [--dim 1536]

A throwaway database with ``--windows`` windows (synthetic embeddings of low intrinsic
dimension, behind the project's HNSW index) over recordings that are all real birdsong, so that
spectrograms are real pictures. Server time is measured through Django's test client
(routing, session, queries, template), median of ``--repeats`` runs:

- the reference: the bare pgvector k-nearest query for the same 50 hits;
- the results page (HTML) for 50 hits of a saved search (going back in the history);
- a new query: saved to the history, its best windows ranked and kept, first page;
- its 50 spectrogram pictures, first rendered (cold cache) and then served warm.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.database import bench_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1536)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as media, bench_database():
        run(args, Path(media))


def _median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def run(args, media: Path) -> None:
    import soundfile
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from annotations.demo import birdsong_wav
    from annotations.deployments import create_deployment, create_project
    from annotations.embedding_store import register_embedding_model, replace_windows
    from annotations.models import Recording, RecordingStatus, Window
    from annotations.search import SAVED_RESULTS, nearest_window_ids
    from annotations.search_index import build_search_index

    settings.MEDIA_ROOT = media
    settings.ALLOWED_HOSTS = ["testserver"]
    birdsong, rate = soundfile.read(str(birdsong_wav()), dtype="float32")
    samples = np.tile(birdsong, 60)  # ten minutes: 120 windows of 5 s
    audio = media / "birdsong.wav"
    soundfile.write(audio, samples, rate)
    per_recording = int(len(samples) / rate // 5)

    user = get_user_model().objects.create_user("bench", password="bench-password-long")
    project = create_project(user, "bench", labels=["call"])
    deployment = create_deployment(project, "bench", site="S1")
    model = register_embedding_model("bench-perch-like", "1", args.dim, 5.0, 5.0, 32_000)
    paths = [media / f"r{i:05d}.wav" for i in range(-(-args.windows // per_recording))]
    for path in paths:  # recordings need paths of their own
        path.symlink_to(audio)
    recordings = Recording.objects.bulk_create(
        Recording(
            deployment=deployment,
            path=str(path),
            filename=path.name,
            status=RecordingStatus.DONE,
            duration_s=len(samples) / rate,
        )
        for path in paths
    )
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((args.windows, 24)).astype(np.float32)
    embeddings = latent @ rng.standard_normal((24, args.dim)).astype(np.float32)
    starts = 5.0 * np.arange(per_recording)
    for i, recording in enumerate(recordings):
        chunk = embeddings[i * per_recording : (i + 1) * per_recording]
        replace_windows(recording.pk, model, starts[: len(chunk)], starts[: len(chunk)] + 5, chunk)
    build_search_index(project, model)
    query_window = Window.objects.defer("embedding").order_by("pk").first()
    print(f"{args.windows} windows x {args.dim}-d (synthetic) over real birdsong, HNSW index, 50 hits per page")

    query = embeddings[0]
    reference_ms = _median_ms(
        lambda: nearest_window_ids(project, model, query, 50, [query_window.pk], _no_filters(), 0), args.repeats
    )

    client = Client()
    client.force_login(user)
    url = f"/projects/{project.pk}/search/"
    redirect = client.get(url, {"window": query_window.pk})
    assert redirect.status_code == 302, redirect.status_code
    results_url = redirect["Location"]
    page = client.get(results_url)
    assert page.status_code == 200 and page.content.decode().count('class="hit"') == 50
    page_ms = _median_ms(lambda: client.get(results_url), args.repeats)
    new_query_ms = _median_ms(lambda: client.get(url, {"window": query_window.pk}, follow=True), args.repeats)

    hit_ids = _hit_window_ids(page.content.decode())
    picture = f"/api/projects/{project.pk}/windows/{{}}/spectrogram.png"

    def fetch_pictures() -> None:
        for window_id in hit_ids:
            response = client.get(picture.format(window_id))
            assert response.status_code == 200
            b"".join(response.streaming_content)

    started = time.perf_counter()
    fetch_pictures()
    cold_ms = 1000 * (time.perf_counter() - started)
    warm_ms = _median_ms(fetch_pictures, max(3, args.repeats // 3))

    print(f"reference: bare pgvector 50-NN query:          {reference_ms:7.1f} ms")
    print(
        f"results page (HTML), 50 hits, warm cache:       {page_ms:7.1f} ms "
        f"({page_ms / reference_ms:5.1f}x the query; goal < 300 ms)"
    )
    print(f"a new query: saved, {SAVED_RESULTS} ranked, first page: {new_query_ms:7.1f} ms")
    print(f"its 50 spectrograms, cold cache (rendered):     {cold_ms:7.1f} ms")
    print(f"its 50 spectrograms, warm cache (from disk):    {warm_ms:7.1f} ms ({warm_ms / 50:.1f} ms each)")


def _no_filters():
    from annotations.search import SearchFilters

    return SearchFilters()


def _hit_window_ids(html: str) -> list[int]:
    import re

    return [int(w) for w in re.findall(r'class="hit" tabindex="-1" data-window="(\d+)"', html)]


if __name__ == "__main__":
    main()
