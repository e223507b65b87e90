"""Exported tables hold no spreadsheet formulas and no server paths; neither does the deployment API."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile

import numpy as np
import pytest
from django.test import Client

from annotations.deployment_metadata import parse_metadata_csv
from annotations.deployments import create_deployment, create_project
from annotations.embedding_store import register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.exports import SEQUENCE_TABLE_NAME, detections_csv, raven_tables_zip
from annotations.formula_cells import FORMULA_STARTS, neutral_cell
from annotations.labeling import set_label
from annotations.models import (
    Classifier,
    ClassifierLabel,
    Detection,
    InferenceRun,
    LabelValue,
    Membership,
    Recording,
    RecordingStatus,
    Role,
    TaskStatus,
    Window,
)

pytestmark = pytest.mark.django_db
HOSTILE = ('=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)")


@pytest.fixture
def hostile_run(make_user, tmp_path, settings):
    """A run over a server folder's recordings whose every name starts like a formula."""
    settings.PERCH_AGILE_AUDIO_ROOTS = [tmp_path]
    folder = tmp_path / "site-a" / "2024"
    folder.mkdir(parents=True)
    owner = make_user("owner")
    project = create_project(owner, "P", labels=list(HOSTILE))
    deployment = create_deployment(project, "=cmd|' /C calc'!A0", site="@site")
    type(deployment).objects.filter(pk=deployment.pk).update(server_folder=str(folder))
    deployment.refresh_from_db()
    model = register_embedding_model("test-model", "1", 4, 1.0, 1.0, 16_000)
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status=TaskStatus.DONE)
    run = InferenceRun.objects.create(classifier=classifier, deployment=deployment, status=TaskStatus.DONE)
    names = ("=a.wav", "+b.wav", "\t-c.wav")
    for index, (name, label) in enumerate(zip(names, project.labels.all(), strict=False)):
        ClassifierLabel.objects.create(classifier=classifier, label=label, index=index)
        recording = Recording.objects.create(
            deployment=deployment,
            path=str(folder / "night" / name),
            filename=name,
            status=RecordingStatus.DONE,
            sample_rate=32_000,
            duration_s=60.0,
        )
        replace_windows(recording.pk, model, np.array([0.0]), np.array([1.0]), np.ones((1, 4), np.float32))
        Detection.objects.create(run=run, window=Window.objects.get(recording=recording), label=label, score=0.9)
    for label in project.labels.all()[3:]:  # the other hostile labels, on the first window
        Detection.objects.create(run=run, window=Window.objects.first(), label=label, score=0.8)
    return project, run, tmp_path


def _cells(text: str, delimiter: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text), delimiter=delimiter) for cell in row]


def test_exported_tables_neutralise_formulas_and_show_no_server_path(hostile_run):
    _, run, root = hostile_run
    text = "".join(detections_csv(run))
    tables = zipfile.ZipFile(io.BytesIO(raven_tables_zip(run)))
    cells = {"csv": _cells(text, ",")} | {name: _cells(tables.read(name).decode(), "\t") for name in tables.namelist()}
    assert len(cells) == 5  # the CSV, one table per recording, the sequence table
    for table, values in cells.items():
        # Our own numbers (scores, times) never start with a sign; any text that would is quoted.
        assert not [cell for cell in values if cell.startswith(FORMULA_STARTS)], table
        assert not [cell for cell in values if str(root) in cell], table
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["label"] for r in rows} == {f"'{name}" for name in HOSTILE}
    assert {r["path"] for r in rows} == {"night/=a.wav", "night/+b.wav", "night/\t-c.wav"}  # inside the folder
    assert {r["recording"] for r in rows} == {"'=a.wav", "'+b.wav", "'\t-c.wav"}
    assert rows[0]["deployment"] == "'=cmd|' /C calc'!A0" and rows[0]["site"] == "'@site"
    sequence = list(
        csv.DictReader(io.StringIO(tables.read("all_files.Table.1.selections.txt").decode()), delimiter="\t")
    )
    assert {r["Begin File"] for r in sequence} == {"'=a.wav", "'+b.wav", "'\t-c.wav"}
    assert {r["Begin Path"] for r in sequence} == {"night/=a.wav", "night/+b.wav", "night/\t-c.wav"}


def test_metadata_imports_refuse_names_that_start_like_formulas():
    with pytest.raises(InputError) as error:
        parse_metadata_csv("name,site,recorder\n=1+1,ok,ok\nok,@x,ok\nfine,ok,-3\n")
    message = str(error.value)
    assert "line 2: name '=1+1' starts like a spreadsheet formula" in message
    assert "line 3: site '@x' starts like" in message and "line 4: recorder '-3' starts like" in message
    assert parse_metadata_csv("name,site\nRidge,North\n")[0].name == "Ridge"


def test_the_deployment_api_shows_the_folder_under_its_root(hostile_run, make_user, client_for):
    project, run, root = hostile_run
    viewer = make_user("viewer")
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    url = f"/api/projects/{project.pk}/deployments/"
    for user in (viewer, project.created_by):
        listed = client_for(user).get(url).json()
        detail = client_for(user).get(f"{url}{run.deployment_id}/")
        assert listed[0]["server_folder"] == "site-a/2024" and detail.json()["server_folder"] == "site-a/2024"
        assert str(root) not in detail.content.decode()
    browser = Client()
    browser.force_login(viewer)
    page = browser.get(f"/projects/{project.pk}/deployments/{run.deployment_id}/").content.decode()
    assert "<code>site-a/2024</code>" in page and str(root) not in page
    # Sent back as shown, the folder stays where it is.
    response = client_for(project.created_by).patch(
        f"{url}{run.deployment_id}/", {"server_folder": "site-a/2024"}, format="json"
    )
    assert response.status_code == 200, response.json()
    run.deployment.refresh_from_db()
    assert run.deployment.server_folder == str(root / "site-a" / "2024")


def test_exports_carry_local_and_utc_times_and_who_reviewed_each_detection(make_user):
    """A deployment in Pacific/Auckland (UTC+13 in January): the CSV's and the Raven
    tables' local and UTC starts are the recording's start plus the window's offset."""
    alice, bob = make_user("alice"), make_user("bob")
    project = create_project(alice, "Kiwi", labels=["kiwi", "morepork"])
    Membership.objects.create(project=project, user=bob, role=Role.ANNOTATOR)
    kiwi, morepork = project.labels.order_by("name")
    deployment = create_deployment(project, "Ridge", site="R1", timezone="Pacific/Auckland")
    model = register_embedding_model("test-model", "1", 4, 5.0, 5.0, 16_000)
    recording = Recording.objects.create(
        deployment=deployment,
        path="/srv/audio/ridge/20240115_073000.wav",
        filename="20240115_073000.wav",
        status=RecordingStatus.DONE,
        sample_rate=16_000,
        duration_s=20.0,
        started_at=dt.datetime(2024, 1, 14, 18, 30, tzinfo=dt.UTC),  # 07:30 on the 15th in Auckland
    )
    starts = np.arange(4) * 5.0
    replace_windows(recording.pk, model, starts, starts + 5, np.ones((4, 4), np.float32))
    windows = list(Window.objects.filter(recording=recording).order_by("start_s"))
    classifier = Classifier.objects.create(project=project, version=1, embedding_model=model, status=TaskStatus.DONE)
    ClassifierLabel.objects.create(classifier=classifier, label=kiwi, index=0)
    run = InferenceRun.objects.create(classifier=classifier, deployment=deployment, status=TaskStatus.DONE)
    for window in windows:
        Detection.objects.create(run=run, window=window, label=kiwi, score=0.9 - window.start_s / 100)
    set_label(project, alice, windows[0].pk, kiwi.pk, LabelValue.POSITIVE)
    set_label(project, bob, windows[0].pk, morepork.pk, LabelValue.NEGATIVE)
    set_label(project, bob, windows[1].pk, kiwi.pk, LabelValue.NEGATIVE)
    set_label(project, alice, windows[2].pk, kiwi.pk, LabelValue.POSITIVE)
    set_label(project, bob, windows[2].pk, kiwi.pk, LabelValue.NEGATIVE)

    rows = list(csv.DictReader(io.StringIO("".join(detections_csv(run)))))
    assert [r["start_s"] for r in rows] == ["0.000", "5.000", "10.000", "15.000"]
    for row, window in zip(rows, windows, strict=True):
        utc = dt.datetime.fromisoformat(row["start_time_utc"])
        local = dt.datetime.fromisoformat(row["start_time_local"])
        assert utc == recording.started_at + dt.timedelta(seconds=window.start_s) == local
        assert local.utcoffset() == dt.timedelta(hours=13) and utc.utcoffset() == dt.timedelta(0)
        assert row["timezone"] == "Pacific/Auckland"
    assert rows[0]["start_time_local"] == "2024-01-15T07:30:00.000+13:00"
    assert rows[2]["start_time_utc"] == "2024-01-14T18:30:10.000+00:00"
    assert [(r["review"], r["reviewed_by"]) for r in rows] == [
        ("verified", "alice"),
        ("rejected", "bob"),
        ("disputed", "alice; bob"),
        ("unreviewed", ""),
    ]
    assert rows[0]["window_labels"] == "kiwi: positive (alice); morepork: negative (bob)"

    tables = zipfile.ZipFile(io.BytesIO(raven_tables_zip(run)))
    for name in ("20240115_073000.Table.1.selections.txt", "all_files.Table.1.selections.txt"):
        selections = list(csv.DictReader(io.StringIO(tables.read(name).decode()), delimiter="\t"))
        # In time order, which is the CSV's order here (earlier windows score higher).
        assert [s["Start Time Local"] for s in selections] == [r["start_time_local"] for r in rows]
        assert [s["Start Time UTC"] for s in selections] == [r["start_time_utc"] for r in rows]
        assert {s["Time Zone"] for s in selections} == {"Pacific/Auckland"}
        assert [s["Review"] for s in selections] == [r["review"] for r in rows]
        assert selections[0]["Window Labels"] == rows[0]["window_labels"]


def test_a_label_given_to_a_box_is_its_detections_band_in_raven_tables(hostile_run, make_user, client_for):
    """Boxes labeled positive (two annotators' together) give a detection's low and high
    frequency; a label of the whole window, or a negative, leaves the whole band. Undo
    puts a box label back with its band."""
    project, run, _ = hostile_run
    owner = project.memberships.get().user
    other = make_user("second")
    Membership.objects.create(project=project, user=other, role=Role.ANNOTATOR)
    first, second, third = (d for d in Detection.objects.filter(run=run).order_by("window__recording__filename")[:3])
    base = f"/api/projects/{project.pk}/annotations/"

    def label(user, detection, value, band=None):
        body = {"window": detection.window_id, "label": detection.label_id, "value": value}
        response = client_for(user).post(base, {**body, **(band or {})}, format="json")
        assert response.status_code == 201, response.content
        return response.json()

    assert label(owner, first, "positive", {"low_hz": 2000, "high_hz": 6000})["low_hz"] == 2000
    label(other, first, "positive", {"low_hz": 3000, "high_hz": 9000})
    label(owner, second, "positive")  # the whole window
    label(owner, third, "negative", {"low_hz": 1000, "high_hz": 2000})
    refused = client_for(owner).post(
        base,
        {"window": first.window_id, "label": first.label_id, "value": "positive", "low_hz": 17000, "high_hz": 18000},
        format="json",
    )
    assert refused.status_code == 400 and "nothing above 16000 Hz" in refused.json()["error"]

    def bands() -> dict[str, tuple[str, str]]:
        tables = zipfile.ZipFile(io.BytesIO(raven_tables_zip(run)))
        rows = csv.DictReader(io.StringIO(tables.read(SEQUENCE_TABLE_NAME).decode()), delimiter="\t")
        return {(r["Begin File"], r["Label"]): (r["Low Freq (Hz)"], r["High Freq (Hz)"]) for r in rows}

    found = bands()

    def name(detection) -> tuple[str, str]:  # as the table writes them, formula-safe
        return neutral_cell(detection.window.recording.filename), neutral_cell(detection.label.name)

    assert found[name(first)] == ("2000.0", "9000.0")
    assert found[name(second)] == found[name(third)] == ("0.0", "16000.0")

    # A plain relabel clears the band; undo (restore) brings the box back.
    label(owner, first, "positive")
    label(other, first, "negative")
    assert bands()[name(first)] == ("0.0", "16000.0")
    restored = client_for(owner).post(
        f"{base}restore/",
        {
            "label": first.label_id,
            "changes": [{"window": first.window_id, "value": "positive", "low_hz": 2000, "high_hz": 6000}],
        },
        format="json",
    )
    assert restored.json() == {"changed": 1}
    beyond = {"window": first.window_id, "value": "positive", "low_hz": 17000, "high_hz": 18000}
    refused = client_for(owner).post(f"{base}restore/", {"label": first.label_id, "changes": [beyond]}, format="json")
    assert refused.status_code == 400 and "nothing above 16000 Hz" in refused.json()["error"]
    assert bands()[name(first)] == ("2000.0", "6000.0")
