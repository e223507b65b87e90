"""Label imports: planned before written, never overwriting silently, large ones on a worker."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.labeling import set_label
from annotations.models import Annotation, LabelChange, LabelImport, Membership, Recording, RecordingStatus, Role
from tests.conftest import wait_for

WINDOWS_PER_RECORDING = 4000


def deployment_with_windows(user, recordings: int = 2, windows: int = 20):
    """A project ("owl" label) whose deployment holds ``recordings`` files of ``windows``
    one-second windows each (rec0.wav, rec1.wav, ...)."""
    project = create_project(user, "Imports", labels=["owl"])
    deployment = create_deployment(project, "D")
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    for n in range(recordings):
        recording = Recording.objects.create(
            deployment=deployment, path=f"/x/rec{n}.wav", filename=f"rec{n}.wav", status=RecordingStatus.DONE
        )
        starts = np.arange(windows, dtype=np.float64)
        replace_windows(recording.pk, model, starts, starts + 1, np.ones((windows, 4), np.float32))
    return project, deployment


def window_id(deployment, recording: int, start_s: float) -> int:
    return deployment.recordings.get(filename=f"rec{recording}.wav").windows.get(start_s=start_s).pk


def upload(api, project, deployment, text: str, name: str = "labels.csv", **fields):
    return api.post(
        f"/api/projects/{project.pk}/deployments/{deployment.pk}/label-import/",
        {"file": io.BytesIO(text.encode()), **fields},
        format="multipart",
    )


@pytest.mark.django_db
def test_new_labels_are_written_at_once_and_the_trail_names_the_import(make_user, client_for):
    user = make_user("ana")
    project, deployment = deployment_with_windows(user)
    response = upload(client_for(user), project, deployment, "file,start,end,label\nrec0.wav,2.0,3.0,owl\n")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["new"], body["written"]) == ("done", 1, 1)
    change = LabelChange.objects.get(window_id=window_id(deployment, 0, 2.0))
    assert change.label_import_id == body["id"] and change.new_value == "positive"


@pytest.mark.django_db
def test_an_import_that_would_change_labels_waits_for_a_decision(make_user, client_for):
    user, other = make_user("ana"), make_user("ben")
    project, deployment = deployment_with_windows(user)
    Membership.objects.create(project=project, user=other, role=Role.ANNOTATOR)
    owl = project.labels.get()
    mine, theirs = window_id(deployment, 0, 2.0), window_id(deployment, 0, 5.0)
    set_label(project, user, mine, owl.pk, "positive")
    set_label(project, other, theirs, owl.pk, "positive")
    table = (
        "file,start,end,label,value\nrec0.wav,2,3,owl,negative\nrec0.wav,5,6,owl,negative\nrec1.wav,0,1,owl,negative\n"
    )
    api = client_for(user)
    body = upload(api, project, deployment, table).json()
    assert (body["status"], body["new"], body["same"], body["changed"]) == ("planned", 2, 0, 1)
    assert (body["disagreeing"], body["disagreeing_annotators"]) == (1, ["ben"])
    # Nothing at all is written before the decision.
    assert Annotation.objects.filter(annotator=user).count() == 1
    assert Annotation.objects.get(annotator=user).value == "positive"

    url = f"/api/projects/{project.pk}/label-imports/{body['id']}/"
    assert client_for(other).get(url).status_code == 404  # someone else's import
    decided = api.post(url, {"mode": "keep"}, format="json").json()
    assert (decided["status"], decided["written"]) == ("done", 2)
    assert Annotation.objects.get(annotator=user, window_id=mine).value == "positive"
    assert Annotation.objects.get(annotator=other, window_id=theirs).value == "positive"  # others' stay
    assert api.post(url, {"mode": "overwrite"}, format="json").status_code == 400  # decided once

    again = upload(api, project, deployment, table, mode="overwrite").json()
    assert (again["status"], again["written"]) == ("done", 1)
    assert Annotation.objects.get(annotator=user, window_id=mine).value == "negative"
    change = LabelChange.objects.filter(window_id=mine).first()
    assert (change.old_value, change.new_value, change.label_import_id) == ("positive", "negative", again["id"])


@pytest.mark.django_db
def test_a_raven_table_finds_its_recording_by_its_own_file_name(make_user, client_for):
    user = make_user("ana")
    project, deployment = deployment_with_windows(user)
    raven = (
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tLabel\n"
        "1\tSpectrogram 1\t1\t4.0\t5.0\t0\t8000\towl\n"
    )
    response = client_for(user).post(
        f"/api/projects/{project.pk}/deployments/{deployment.pk}/label-import/",
        {"file": SimpleUploadedFile("rec1.Table.1.selections.txt", raven.encode())},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    assert response.json()["unmatched_files"] == []
    assert Annotation.objects.get().window_id == window_id(deployment, 1, 4.0)


@pytest.mark.django_db
def test_a_bad_table_is_refused_and_nothing_is_kept(make_user, client_for):
    user = make_user("ana")
    project, deployment = deployment_with_windows(user)
    response = upload(client_for(user), project, deployment, "file,start,end,label\nrec0.wav,2,3,heron\n")
    assert response.status_code == 400 and "heron" in response.json()["error"]
    assert not LabelImport.objects.exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_16000_row_import_runs_on_a_worker_while_the_server_answers(celery_worker_process, make_user, client_for):
    user = make_user("ana")
    project, deployment = deployment_with_windows(user, recordings=4, windows=WINDOWS_PER_RECORDING)
    rows = [f"rec{n}.wav,{s}.0,{s + 1}.0,owl" for n in range(4) for s in range(WINDOWS_PER_RECORDING)]
    api = client_for(user)
    response = upload(api, project, deployment, "file,start,end,label\n" + "\n".join(rows) + "\n")
    assert response.status_code == 202, response.content  # queued: no request grows with the table
    started = time.monotonic()
    assert api.get(f"/api/projects/{project.pk}/").status_code == 200
    assert time.monotonic() - started < 1.0
    url = f"/api/projects/{project.pk}/label-imports/{response.json()['id']}/"
    done = wait_for(lambda: (body := api.get(url).json())["status"] == "done" and body, timeout=120, what="import")
    assert (done["selections"], done["written"]) == (16_000, 16_000)
    assert Annotation.objects.filter(annotator=user).count() == 16_000
    assert LabelChange.objects.filter(label_import_id=done["id"]).count() == 16_000


@pytest.mark.django_db
def test_a_raven_selections_band_becomes_its_labels_box_unless_it_spans_the_whole_band(make_user, client_for):
    """Low and High Freq of a selection are its labels' box, capped at the Nyquist
    frequency; a selection of 0 Hz to the Nyquist frequency (Raven's whole band, and what
    this app's exports write for an unboxed detection) labels the whole window, as does a
    band that is no band of the audio. Importing again with another box overwrites it."""
    user = make_user("ana")
    project, deployment = deployment_with_windows(user)
    deployment.recordings.update(sample_rate=16_000)
    columns = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]
    header = "\t".join([*columns, "Begin File", "Label"]) + "\n"
    rows = [
        "1\tSpectrogram 1\t1\t2.0\t3.0\t2500.0\t6000.0\trec0.wav\towl",
        "2\tSpectrogram 1\t1\t5.0\t6.0\t0.0\t8000.0\trec0.wav\towl",
        "3\tSpectrogram 1\t1\t7.0\t8.0\t3000.0\t12000.0\trec0.wav\towl",  # capped at 8 kHz
        "4\tSpectrogram 1\t1\t9.0\t10.0\t9000.0\t12000.0\trec0.wav\towl",  # above all the audio
    ]
    api = client_for(user)
    body = upload(api, project, deployment, header + "\n".join(rows) + "\n", name="rec0.Table.1.selections.txt").json()
    assert (body["status"], body["written"]) == ("done", 4), body

    def box(start_s: float) -> tuple:
        label = Annotation.objects.get(annotator=user, window_id=window_id(deployment, 0, start_s))
        return label.value, label.low_hz, label.high_hz

    assert box(2.0) == ("positive", 2500.0, 6000.0)
    assert box(5.0) == box(9.0) == ("positive", None, None)
    assert box(7.0) == ("positive", 3000.0, 8000.0)
    again = upload(api, project, deployment, header + rows[0].replace("2500.0", "1000.0") + "\n", mode="overwrite")
    assert again.json()["written"] == 1
    assert box(2.0) == ("positive", 1000.0, 6000.0)
    moved = LabelChange.objects.filter(window_id=window_id(deployment, 0, 2.0)).latest("id")  # in the audit trail
    assert (moved.old_value, moved.old_low_hz, moved.new_value, moved.new_low_hz) == (
        "positive",
        2500.0,
        "positive",
        1000.0,
    )
