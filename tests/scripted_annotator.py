"""A scripted annotator: the labeling loop through the REST API, as a person runs it.

It ingests deployments of tests/loop_corpus.py from server folders, labels deployment B
entirely and holds it out (the app then measures every version on it), and for a label
labels truthfully what the page offers: the first page of a search by an example clip in
deployment A, then page after page of the suggested review queue, training a version
after each page. Both the benchmark (bench/learning_loop.py) and the suite use it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from tests.loop_corpus import WINDOW_S, Recording

# Minutes: training and scoring a few thousand windows take seconds, an ingest a few minutes.
TIMEOUT_S = 900


def wait_until(condition: Callable[[], object], what: str, timeout: float = TIMEOUT_S, interval: float = 0.5):
    """Poll ``condition`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _ok(response, status: int = 200) -> dict | list:
    assert response.status_code == status, (response.status_code, response.content[:500])
    return response.json()


@dataclasses.dataclass(frozen=True)
class LoopProject:
    """A project of two ingested deployments and the truth of their windows."""

    client: object  # a logged-in rest_framework APIClient
    base: str  # /api/projects/<id>
    deployment_a: int
    deployment_b: int
    truth: dict[int, str]  # window id -> species ('' for none)
    windows_a: list[int]
    windows_b: list[int]

    def label_id(self, name: str) -> int:
        labels = _ok(self.client.get(f"{self.base}/labels/"))
        return next(label["id"] for label in labels if label["name"] == name)

    def label(self, label_id: int, species: str, window_ids: list[int]) -> None:
        """Label windows truthfully for ``species``, 500 a request."""
        for value in ("positive", "negative"):
            chosen = [w for w in window_ids if (self.truth[w] == species) == (value == "positive")]
            for first in range(0, len(chosen), 500):
                body = {"windows": chosen[first : first + 500], "label": label_id, "value": value}
                _ok(self.client.post(f"{self.base}/annotations/bulk/", body, format="json"))

    def train(self, label_id: int, probe_type: str) -> dict:
        """Train a version for the label (weak negatives left to the labels); wait until
        it is trained and has scored every window. Returns its API data."""
        body = {"labels": [label_id], "probe_type": probe_type}
        created = _ok(self.client.post(f"{self.base}/classifiers/", body, format="json"), 202)
        url = f"{self.base}/classifiers/{created['id']}/"

        def finished():
            data = _ok(self.client.get(url))
            if data["status"] == "failed":
                raise AssertionError(f"training failed: {data['error']}")
            return data if data["status"] == "done" and data["scoring_status"] == "done" else None

        return wait_until(finished, f"classifier v{created['version']}")

    def clip_search(self, clip: Path, k: int) -> list[int]:
        """The first page of a search by an uploaded example clip, in deployment A."""
        with open(clip, "rb") as upload:
            created = _ok(self.client.post(f"{self.base}/clip-queries/", {"file": upload}, format="multipart"), 201)
        url = f"{self.base}/clip-queries/{created['id']}/"
        wait_until(lambda: _ok(self.client.get(url))["status"] == "done", "the example clip's embedding")
        body = {"clip_query_id": created["id"], "deployment_id": self.deployment_a, "k": k}
        return [hit["window_id"] for hit in _ok(self.client.post(f"{self.base}/search/", body, format="json"))["hits"]]

    def queue(self, classifier: dict, label_id: int, size: int) -> tuple[str, list[int]]:
        """(the suggested queue's kind, its first ``size`` windows)."""
        url = f"{self.base}/classifiers/{classifier['id']}"
        suggestion = _ok(self.client.get(f"{url}/queue-suggestion/?label={label_id}"))
        items = _ok(self.client.get(f"{url}/queue/?label={label_id}&kind=suggested&size={size}"))
        return suggestion["kind"], [item["window_id"] for item in items]


def create_loop_project(
    client,
    name: str,
    labels: list[tuple[str, str]],
    folders: dict[str, Path],
    grant: Callable[[int, Path], None],
    recordings: dict[str, list[Recording]],
) -> LoopProject:
    """The project with deployments "A" and "B" (held out for evaluation) read from
    ``folders`` (``grant(project_id, folder)`` lets the project read one, a staff
    decision), both ingested, B labeled entirely for every label given in ``labels``
    as (label name, species)."""
    project = _ok(client.post("/api/projects/", {"name": name, "labels": [n for n, _ in labels]}, format="json"), 201)
    base = f"/api/projects/{project['id']}"
    deployments = {}
    for side, folder in folders.items():
        grant(project["id"], folder)
        body = {"name": side, "server_folder": str(folder), "held_out": side == "B"}
        deployments[side] = _ok(client.post(f"{base}/deployments/", body, format="json"), 201)["id"]
        _ok(client.post(f"{base}/deployments/{deployments[side]}/ingest/"), 202)

    def ingested(deployment_id: int):
        progress = _ok(client.get(f"{base}/deployments/{deployment_id}/"))["progress"]
        return progress if progress["files_queued"] + progress["files_embedding"] == 0 else None

    truth: dict[int, str] = {}
    window_ids: dict[str, list[int]] = {}
    for side, deployment_id in deployments.items():
        progress = wait_until(lambda d=deployment_id: ingested(d), f"the ingest of deployment {side}")
        assert progress["files_failed"] == 0, progress
        by_name = {r.name: r for r in recordings[side]}
        window_ids[side] = []
        for row in _ok(client.get(f"{base}/deployments/{deployment_id}/recordings/")):
            species = by_name[row["filename"]].truth
            for window in _ok(client.get(f"{base}/recordings/{row['id']}/windows/")):
                truth[window["id"]] = species[int(round(window["start_s"] / WINDOW_S))]
                window_ids[side].append(window["id"])
    loop = LoopProject(client, base, deployments["A"], deployments["B"], truth, window_ids["A"], window_ids["B"])
    for label_name, species in labels:
        loop.label(loop.label_id(label_name), species, loop.windows_b)
    return loop


@dataclasses.dataclass(frozen=True)
class Step:
    """One version of the loop: labels in A so far (positives among them), the queue that
    brought the last page, and the version's ROC-AUC on deployment B as the app measured it."""

    labels: int
    positives: int
    queue: str
    roc_auc: float | None
    weak_negatives: int
    weak_left_out: int


def run_loop(
    loop: LoopProject, label_name: str, species: str, probe_type: str, clip: Path, page: int, pages: int
) -> list[Step]:
    """The first page of a clip search, then ``pages - 1`` pages of the suggested queue,
    a version trained after each."""
    label_id = loop.label_id(label_name)
    labeled: list[int] = []
    offered, kind = loop.clip_search(clip, page), "clip search"
    steps = []
    for _ in range(pages):
        new = [w for w in offered if w not in set(labeled)][:page]
        loop.label(label_id, species, new)
        labeled += new
        classifier = loop.train(label_id, probe_type)
        output = classifier["outputs"][0]
        assert output["evaluated_on"] == "deployments", output
        positives = sum(loop.truth[w] == species for w in labeled)
        steps.append(
            Step(
                len(labeled),
                positives,
                kind,
                output["roc_auc"],
                output["weak_negatives_used"],
                output["weak_negatives_left_out"],
            )
        )
        kind, offered = loop.queue(classifier, label_id, page)
    return steps
