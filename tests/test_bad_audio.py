"""A corpus of hostile files in one deployment: each gets a state and a clear reason, or
is ingested correctly; the good files beside them all ingest."""

from __future__ import annotations

import pytest

from annotations.deployments import create_deployment, create_project, grant_folder, queue_ingest
from annotations.models import Recording, RecordingStatus
from tests.audio_corpus import make_hostile_corpus
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_every_hostile_file_gets_a_state_and_the_good_ones_ingest(
    celery_worker_process, tmp_path, birdsong, make_user, settings
):
    samples, rate = birdsong
    expected = make_hostile_corpus(tmp_path / "field", samples, rate)
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    project = create_project(make_user("admin"), "Hostile")
    grant_folder(project, str(tmp_path / "field"))
    deployment = create_deployment(project, "Field", server_folder=str(tmp_path / "field"))
    assert queue_ingest(deployment) == len(expected)
    pending = [RecordingStatus.QUEUED, RecordingStatus.EMBEDDING]
    wait_for(
        lambda: not Recording.objects.filter(deployment=deployment, status__in=pending).exists(),
        timeout=400,
        what=f"ingest of the hostile corpus (worker log: {celery_worker_process})",
    )
    recordings = {r.filename: r for r in deployment.recordings.all()}
    for name, (status, detail) in expected.items():
        recording = recordings[name]
        assert recording.status == status, (name, recording.status, recording.error)
        if status == RecordingStatus.FAILED:
            assert recording.error and detail in recording.error, (name, recording.error)
        else:
            assert recording.windows_done == detail, (name, recording.windows_done, recording.warning)
            assert recording.windows.count() == detail
    assert "truncated" in recordings["claims_2e31_frames.wav"].warning
    assert recordings["eight_channels.wav"].channels == 8
