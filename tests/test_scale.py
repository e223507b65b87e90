"""bench/scale.py at 20,000 windows: every filter keeps its hits, queues read only scores."""

from __future__ import annotations

import pytest
from django.db import connection

from annotations.models import TaskStatus, WindowScore
from annotations.review_queues import KINDS
from annotations.search_index import build_search_index, index_summaries
from annotations.stored_scores import score_project, windows_above
from bench import scale
from perch_agile.embedded import database_tuning

pytestmark = pytest.mark.django_db


@pytest.fixture
def season(make_user):
    """20,000 windows x 1024-d in a big project (18 deployments, 6 sites) and a small one,
    minute-long recordings spread over 35 days, each project behind its own index."""
    user = make_user("ecologist")
    big, small, model, corpus, _ = scale.build_corpus(user, 20_000, 1024, recording_s=60.0)
    build_search_index(big, model)
    build_search_index(small, model)
    return user, big, small, model, corpus


def test_every_filter_keeps_its_hits_on_either_path(season):
    _, big, small, model, corpus = season
    # The default cross-over (these filtered sets are small: exact), then the index forced.
    for exact_scan_max, path in ((None, "exact"), (0, "index")):
        figures = scale.measure_searches(big, small, model, corpus, queries=8, exact_scan_max=exact_scan_max)
        assert len(figures) == 7
        for figure in figures:
            assert figure.recall >= 0.95, (path, figure)
            if figure.name != "best per recording":
                assert figure.paths == path, figure


def table_reads(table: str) -> int:
    """Rows this transaction has read from ``table`` so far, by scans and index fetches."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
            "WHERE relname = %s",
            [table],
        )
        return cursor.fetchone()[0]


def test_queues_read_stored_scores_not_embeddings(season, client_for):
    user, big, _, model, corpus = season
    classifier, label = scale.trained_classifier(user, big, model, corpus)
    client = client_for(user)
    url = f"/api/projects/{big.pk}/classifiers/{classifier.pk}/queue/?label={label.pk}&size=50"
    refused = client.get(url + "&kind=top")
    assert refused.status_code == 400 and "still scoring" in refused.json()["error"]

    scored = score_project(classifier)
    classifier.refresh_from_db()
    windows = int((corpus.project == 0).sum())
    assert scored == windows == classifier.windows_scored and classifier.scoring_status == TaskStatus.DONE
    assert WindowScore.objects.filter(classifier=classifier).count() == windows  # once each
    assert score_project(classifier) == 0  # nothing left to score
    output = classifier.outputs.get()
    assert sum(output.score_histogram) == windows
    assert windows_above(output, 0.0) == windows
    assert windows_above(output, 0.5) == WindowScore.objects.filter(classifier=classifier, score__gte=0.5).count()

    for kind in KINDS:
        before = table_reads("annotations_window")
        response = client.get(f"{url}&kind={kind}")
        assert response.status_code == 200, response.content
        queue = response.json()
        assert 1 <= len(queue) <= 50 and len({item["window_id"] for item in queue}) == len(queue)
        read = table_reads("annotations_window") - before
        # Only the diverse queue reads embeddings, of its few candidates (5 per place).
        assert read <= (250 if kind == "diverse" else 0), (kind, read)
    top = client.get(f"{url}&kind=top").json()
    scores = WindowScore.objects.filter(classifier=classifier).order_by("-score").values_list("score", flat=True)
    assert [item["score"] for item in top] == pytest.approx(list(scores[:50]))


def test_the_deployment_page_reports_the_projects_index(season):
    _, big, small, model, corpus = season
    (summary,) = index_summaries(big)
    assert summary.status == TaskStatus.DONE and summary.windows_indexed == int((corpus.project == 0).sum())
    assert summary.windows_not_indexed == 0


def test_database_settings_are_sized_to_the_machine():
    tuning = database_tuning(24 * 2**30, 2)
    assert tuning == {
        "shared_buffers": "6144MB",
        "effective_cache_size": "18432MB",
        "maintenance_work_mem": "6144MB",
        "max_parallel_maintenance_workers": "1",
    }
    small = database_tuning(256 * 2**20, 1)
    assert small["shared_buffers"] == "128MB" and small["max_parallel_maintenance_workers"] == "1"
    assert database_tuning(512 * 2**30, 64)["maintenance_work_mem"] == "16384MB"
