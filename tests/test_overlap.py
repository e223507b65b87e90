"""Windows that overlap: a hop shorter than the window, chosen per deployment, honoured by
the worker, the search, training's held-out split and label imports."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from django.test import Client

from annotations.deployments import create_deployment, create_project, update_deployment
from annotations.embedding_store import window_embeddings
from annotations.errors import InputError
from annotations.label_import import covered_windows
from annotations.model_catalogue import SPECS, hop_choices, hop_problem
from annotations.models import Recording, Window
from annotations.probes import held_out_split
from annotations.search import SearchFilters, nearest_window_ids
from tests.audio_corpus import make_recordings
from tests.conftest import wait_for

BIRDNET = SPECS["birdnet_v2_4"]


def test_the_hops_offered_and_the_hops_refused():
    assert hop_choices(3.0) == [3.0, 1.5, 1.0]
    assert hop_problem(1.5, 3.0, 48_000) == ""
    assert "out of range" in hop_problem(0.5, 3.0, 48_000)  # 6 windows deep
    assert "out of range" in hop_problem(4.0, 3.0, 48_000)  # gaps between windows
    assert "whole number of samples" in hop_problem(1.00001, 3.0, 48_000)


@pytest.mark.django_db
def test_a_deployment_keeps_its_hop_until_its_audio_is_embedded(make_user):
    project = create_project(make_user("lead"), "Overlap")
    with pytest.raises(InputError, match="out of range"):
        create_deployment(project, "Too deep", hop_s=0.25)
    deployment = create_deployment(project, "Reed bed", hop_s=1.5)
    update_deployment(deployment, hop_s=1.0)  # nothing embedded yet: free to change
    Recording.objects.create(deployment=deployment, path="/x.wav", filename="x.wav", windows_done=4, hop_s=1.0)
    update_deployment(deployment, hop_s=1.0, site="R2")  # the same hop, sent back by the form
    with pytest.raises(InputError, match="embedded at a hop of 1 s already"):
        update_deployment(deployment, hop_s=3.0)


def test_no_held_out_window_overlaps_a_window_trained_on():
    """3 s windows every second over an hour: the held-out blocks and the gap around them
    leave no training window sharing a moment with a held-out one."""
    starts = np.arange(0.0, 3600.0, 1.0)
    recording_ids = np.zeros(len(starts), dtype=np.int64)
    labeled = np.ones(len(starts), bool)
    split = held_out_split(recording_ids, starts, starts % 7 == 0, labeled, 0.25, seed=0)
    held, trained = starts[split.held_out], starts[split.train]
    assert len(held) and len(trained)
    # Windows [s, s + 3) overlap when their starts are less than 3 s apart.
    nearest = np.abs(held[:, None] - trained[None, :]).min()
    assert nearest >= 3.0, nearest


def test_a_selection_labels_the_overlapping_windows_it_covers_by_at_least_half():
    starts = np.arange(0.0, 12.0, 1.5)  # 3 s windows every 1.5 s
    ids = np.arange(100, 100 + len(starts))
    # [3, 6) covers [3, 6) whole and half of [1.5, 4.5) and [4.5, 7.5); a third of nothing else.
    assert covered_windows(ids, starts, starts + 3.0, 3.0, 6.0) == [101, 102, 103]
    # A 1 s call inside [3.2, 4.2) is at least half inside... the shorter's half: every window holding it.
    assert covered_windows(ids, starts, starts + 3.0, 3.2, 4.2) == [101, 102]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_cuts_windows_at_the_deployments_hop_and_search_counts_them(
    celery_worker_process, media_root, tmp_path, birdsong, make_user, client_for
):
    samples, rate = birdsong
    recordings = make_recordings(tmp_path / "audio", samples, rate, count=2)
    user = make_user("ecologist")
    client = client_for(user)
    project = client.post("/api/projects/", {"name": "Overlap", "labels": ["bird"]}, format="json").json()
    base = f"/api/projects/{project['id']}"
    made = {}
    for name, hop in (("Every 3 s", None), ("Every 1.5 s", 1.5)):
        data = {"name": name} | ({"hop_s": hop} if hop else {})
        made[name] = deployment = client.post(f"{base}/deployments/", data, format="json").json()
        assert deployment["hop_s"] == hop
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(r.path, "rb")) for r in recordings]
            assert client.post(f"{base}/deployments/{deployment['id']}/files/", {"files": files}).status_code == 201
        client.post(f"{base}/deployments/{deployment['id']}/ingest/")

    def done():
        return not Recording.objects.exclude(status__in=["done", "failed"]).exists()

    wait_for(done, what=f"ingest (worker log: {celery_worker_process})")
    plain, overlapping = (Recording.objects.filter(deployment_id=d["id"]).order_by("filename") for d in made.values())
    for a, b in zip(plain, overlapping, strict=True):
        assert (a.status, b.status) == ("done", "done")
        assert a.hop_s == 3.0 and b.hop_s == 1.5
        starts = np.array(Window.objects.filter(recording=b).order_by("start_s").values_list("start_s", flat=True))
        assert np.allclose(np.diff(starts), 1.5) and b.windows_done == b.windows_expected == len(starts)
        assert len(starts) == 2 * a.windows_done - 1  # 12 s: 4 windows every 3 s, 7 every 1.5 s
        first, second = Window.objects.filter(recording=b).order_by("start_s")[:2]
        assert first.end_s == pytest.approx(3.0) and second.start_s == pytest.approx(1.5)

    example = Window.objects.filter(recording=overlapping[0]).order_by("start_s").first()
    for deployment, expected in ((made["Every 1.5 s"], 14), (made["Every 3 s"], 8)):
        answer = client.post(
            f"{base}/search/", {"window_id": example.pk, "deployment_id": deployment["id"], "k": 50}, format="json"
        ).json()
        assert len(answer["hits"]) == expected - (deployment is made["Every 1.5 s"])  # the example is not a hit
        # What a search counts to choose its path: at each recording's own hop.
        nearest = nearest_window_ids(
            example.recording.deployment.project,
            example.model,
            window_embeddings([example.pk])[example.pk],
            50,
            (),
            SearchFilters(deployment_id=deployment["id"]),
        )
        assert nearest.candidates == expected
    page = Client()
    page.force_login(user)
    html = page.get(f"/projects/{project['id']}/deployments/{made['Every 1.5 s']['id']}/").content.decode()
    assert "3 s windows every 1.5 s (overlapping)" in html, html[html.find("<h1>") : html.find("<h1>") + 1500]
