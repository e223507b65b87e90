"""Ingest survives a worker killed mid-file, and several workers never do a recording twice."""

from __future__ import annotations

import os
import signal
import uuid

import numpy as np
import pytest
import soundfile
from django.db.models import Count

from annotations.deployments import create_deployment, create_project, grant_folder, queue_ingest
from annotations.models import Recording, RecordingStatus, Window
from perch_agile.celery import app as celery_app
from tests.audio_corpus import brown_noise
from tests.conftest import OUTPUT_DIR, start_worker, stop_worker, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PENDING = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]


@pytest.fixture
def own_queue():
    """A queue for this test's workers alone (not the session's worker)."""
    previous = celery_app.conf.task_default_queue
    queue = f"perch_agile_recovery_{uuid.uuid4().hex[:8]}"
    celery_app.conf.task_default_queue = queue
    yield queue
    with celery_app.connection_for_write() as connection:
        connection.default_channel.queue_purge(queue)
    celery_app.conf.task_default_queue = previous


def deployment_of(tmp_path, birdsong, make_user, settings, count: int, seconds: float):
    """``count`` recordings of birdsong over noise, ``seconds`` long each, at 48 kHz."""
    samples, rate = birdsong
    folder = tmp_path / "audio"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(count):
        audio = brown_noise(seconds, rate, rng)
        audio[: len(samples)] += samples[: len(audio)]
        soundfile.write(str(folder / f"rec{i:02d}.wav"), audio, rate)
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    project = create_project(make_user("admin"), "Recovery")
    grant_folder(project, str(folder))
    return create_deployment(project, "D", server_folder=str(folder))


def worker_log(name: str):
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR / f"{name}.log"


def assert_every_window_exactly_once(deployment, windows_per_recording: int) -> None:
    recordings = list(deployment.recordings.all())
    assert {r.status for r in recordings} == {RecordingStatus.DONE}
    windows = Window.objects.filter(recording__deployment=deployment)
    per_recording = dict(windows.values("recording_id").annotate(n=Count("id")).values_list("recording_id", "n"))
    assert per_recording == {r.pk: windows_per_recording for r in recordings}
    assert not windows.values("recording_id", "start_s").annotate(n=Count("id")).filter(n__gt=1).exists()


def test_a_worker_killed_mid_file_loses_nothing_and_duplicates_nothing(
    own_queue, tmp_path, birdsong, make_user, settings
):
    deployment = deployment_of(tmp_path, birdsong, make_user, settings, count=4, seconds=45.0)
    assert queue_ingest(deployment) == 4
    # Two decoders: the worker holds three recordings at once, their windows in shared batches.
    first = start_worker(own_queue, worker_log("worker-killed"), PERCH_AGILE_EMBED_BATCH="2", PERCH_AGILE_DECODERS="2")
    try:
        victim = wait_for(
            lambda: Recording.objects.filter(
                deployment=deployment, status=RecordingStatus.EMBEDDING, windows_done__gte=2
            ).first(),
            timeout=180,
            interval=0.1,
            what="a recording half embedded",
        )
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    victim.refresh_from_db()
    assert victim.status == RecordingStatus.EMBEDDING
    in_flight = list(deployment.recordings.filter(status=RecordingStatus.EMBEDDING).values_list("pk", flat=True))
    assert len(in_flight) >= 2  # the pool held several
    assert not Window.objects.filter(recording_id__in=in_flight).exists()  # nothing half-written

    second = start_worker(own_queue, worker_log("worker-after-kill"))
    try:
        wait_for(
            lambda: not Recording.objects.filter(deployment=deployment, status__in=PENDING).exists(),
            timeout=240,
            what="the second worker to finish",
        )
    finally:
        stop_worker(second)
    assert_every_window_exactly_once(deployment, windows_per_recording=15)  # 45 s in 3 s windows
    attempts = dict(deployment.recordings.values_list("pk", "attempts"))
    assert all(attempts[pk] == 2 for pk in in_flight), attempts


def test_two_workers_embed_every_recording_exactly_once(own_queue, tmp_path, birdsong, make_user, settings):
    deployment = deployment_of(tmp_path, birdsong, make_user, settings, count=8, seconds=12.0)
    logs = [worker_log("worker-a"), worker_log("worker-b")]
    workers = [start_worker(own_queue, log) for log in logs]
    try:
        wait_for(lambda: all("ready" in log.read_text() for log in logs), timeout=120, what="both workers ready")
        assert queue_ingest(deployment) == 8
        wait_for(
            lambda: not Recording.objects.filter(deployment=deployment, status__in=PENDING).exists(),
            timeout=240,
            what="ingest by two workers",
        )
    finally:
        for worker in workers:
            stop_worker(worker)
    assert_every_window_exactly_once(deployment, windows_per_recording=4)
    assert set(deployment.recordings.values_list("attempts", flat=True)) == {1}
    # Both workers took part.
    assert all("ingest_recording" in log.read_text() and "succeeded" in log.read_text() for log in logs)
