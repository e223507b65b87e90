"""Shared fixtures: real audio, users, and a real Celery worker process.

The worker is a separate ``celery -A perch_agile worker`` process that talks to the same
Redis and to pytest-django's test database, on a queue of its own so that a
development worker never takes the tests' tasks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import soundfile
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection
from rest_framework.test import APIClient

from annotations.demo import birdsong_wav
from perch_agile.celery import app as celery_app

PROJECT_DIR = Path(__file__).resolve().parent.parent
OUTPUT_DIR = PROJECT_DIR / "test-output"


@pytest.fixture(scope="session")
def birdsong() -> tuple[np.ndarray, int]:
    """Ten seconds of real birdsong: (float32 [samples], sample_rate 32000)."""
    samples, rate = soundfile.read(str(birdsong_wav()), dtype="float32")
    return samples, rate


def _database_url(settings_dict: dict) -> str:
    host = settings_dict.get("HOST") or ""
    user = quote(settings_dict.get("USER") or "")
    password = quote(settings_dict.get("PASSWORD") or "")
    credentials = f"{user}:{password}@" if password else f"{user}@"
    name = settings_dict["NAME"]
    if host.startswith("/"):
        return f"postgresql://{credentials}/{name}?host={host}"
    port = settings_dict.get("PORT") or 5432
    return f"postgresql://{credentials}{host}:{port}/{name}"


@pytest.fixture(scope="session")
def worker_queue() -> str:
    """A queue of the test session's own; whatever is left in it is purged at the end."""
    queue = f"perch_agile_test_{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    yield queue
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)


def start_worker(queue: str, log_path: Path, **extra_env: str) -> subprocess.Popen:
    """Start ``celery worker`` on the test database and ``queue``, in a process group of
    its own (so a test can SIGKILL the whole worker, pool included)."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict),
        "REDIS_URL": settings.CELERY_BROKER_URL,
        "PERCH_AGILE_QUEUE": queue,
        "PERCH_AGILE_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "DJANGO_DEBUG": "1",
        **extra_env,
    }
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "perch_agile",
        "worker",
        "-Q",
        queue,
        "--concurrency=1",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--hostname",  # one name per test session: workers of two sessions on one Redis stay apart
        f"{log_path.stem}-{queue}@%h",
    ]
    with open(log_path, "w") as log:
        return subprocess.Popen(
            command, cwd=PROJECT_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, worker_queue):
    """A real Celery worker process on the test database; yields its log path."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    log_path = OUTPUT_DIR / "worker.log"
    with django_db_blocker.unblock():
        process = start_worker(worker_queue, log_path)
    yield log_path
    stop_worker(process)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def wait_for(condition, timeout: float = 240, interval: float = 0.5, what: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def make_user(db):
    def make(username: str):
        return get_user_model().objects.create_user(username=username, password="a-long-test-password")

    return make


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return make
