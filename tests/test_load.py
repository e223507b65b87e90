"""Many annotators at once, on a live server (loopback only, bounded in count and time):
every label sent is stored exactly once; throughput and p99 latency are reported."""

from __future__ import annotations

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from rest_framework.authtoken.models import Token

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.models import Annotation, LabelChange, Membership, Recording, RecordingStatus, Role, Window
from tests.conftest import OUTPUT_DIR

pytestmark = pytest.mark.django_db(transaction=True)

ANNOTATORS = 8
WINDOWS_EACH = 25
SEARCHES_EACH = 5
TIME_LIMIT_S = 120


def request(url: str, token: str, body: dict) -> tuple[int, float]:
    started = time.perf_counter()
    call = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(call, timeout=30) as response:
        response.read()
        return response.status, time.perf_counter() - started


def test_concurrent_annotators_label_and_search(live_server, make_user):
    owner = make_user("lead")
    project = create_project(owner, "Busy", labels=["bird"])
    label = project.labels.get()
    recording = Recording.objects.create(
        deployment=create_deployment(project, "D"), path="/busy.wav", filename="busy.wav", status=RecordingStatus.DONE
    )
    model = register_embedding_model("test-model", "1", 16, 1.0, 1.0, 16_000)
    n_windows = ANNOTATORS * WINDOWS_EACH
    starts = np.arange(n_windows, dtype=np.float64)
    vectors = np.random.default_rng(0).standard_normal((n_windows, 16)).astype(np.float32)
    replace_windows(recording.pk, model, starts, starts + 1, vectors)
    window_ids = list(Window.objects.filter(recording=recording).order_by("start_s").values_list("id", flat=True))
    tokens = []
    for i in range(ANNOTATORS):
        user = make_user(f"annotator{i}")
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
        tokens.append(Token.objects.create(user=user).key)
    base = f"{live_server.url}/api/projects/{project.pk}"
    deadline = time.monotonic() + TIME_LIMIT_S

    def annotator(i: int) -> list[tuple[int, float]]:
        results = []
        # Everyone labels the same windows (overlapping work), each window twice (a resend).
        for j in range(WINDOWS_EACH):
            if time.monotonic() > deadline:
                break
            body = {
                "window": window_ids[(i + j) % n_windows],
                "label": label.pk,
                "value": ("positive", "negative")[j % 2],
            }
            results.append(request(f"{base}/annotations/", tokens[i], body))
            results.append(request(f"{base}/annotations/", tokens[i], body))
            if j % (WINDOWS_EACH // SEARCHES_EACH) == 0:
                results.append(request(f"{base}/search/", tokens[i], {"window_id": body["window"], "k": 20}))
        return results

    started = time.perf_counter()
    with ThreadPoolExecutor(ANNOTATORS) as pool:
        results = [r for batch in pool.map(annotator, range(ANNOTATORS)) for r in batch]
    elapsed = time.perf_counter() - started

    statuses = [status for status, _ in results]
    latencies = np.array([latency for _, latency in results])
    assert set(statuses) <= {200, 201}, set(statuses)
    expected = ANNOTATORS * WINDOWS_EACH
    assert len(results) >= expected * 2, "the time limit cut the load test short"
    assert Annotation.objects.count() == expected  # every label exactly once
    assert LabelChange.objects.count() == expected  # the resends changed nothing
    report = (
        f"{len(results)} requests from {ANNOTATORS} annotators in {elapsed:.1f} s: "
        f"{len(results) / elapsed:.0f} requests/s, p50 {np.percentile(latencies, 50) * 1000:.0f} ms, "
        f"p99 {np.percentile(latencies, 99) * 1000:.0f} ms"
    )
    OUTPUT_DIR.mkdir(exist_ok=True)
    (OUTPUT_DIR / "load.txt").write_text(report + "\n")
    print(report)
