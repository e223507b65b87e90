"""Importing perch-hoplite databases and exporting projects as one, checked with hoplite's own API."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from annotations import hoplite_exchange
from annotations.deployments import create_project, grant_folder
from annotations.embedding_store import window_embeddings
from annotations.errors import InputError
from annotations.models import Annotation, Deployment, HopliteImport, Recording, Window
from annotations.search import nearest_window_ids
from tests.conftest import wait_for

HOP_S, WINDOW_S, RATE = 1.0, 3.0, 48_000
# (deployment, file): the audio, made from the real birdsong so that embeddings differ.
FILES = {
    ("north", "north/a.wav"): lambda x: x,
    ("north", "north/b.wav"): lambda x: x[::-1].copy(),
    ("south", "south/c.wav"): lambda x: np.roll(x, len(x) // 4),
    ("south", "south/d.wav"): lambda x: 0.5 * x + 0.01 * np.random.default_rng(0).standard_normal(len(x)),
}
# (file, start, end, label, hoplite label type, provenance)
ANNOTATIONS = [
    *[("north/a.wav", s, s + WINDOW_S, "owl", 1, "human:tom") for s in range(8)],
    *[("north/b.wav", s, s + WINDOW_S, "owl", 0, "human:tom") for s in range(8)],
    ("south/c.wav", 2.0, 5.0, "wren", 1, "human:ann"),
    ("south/d.wav", 1.0, 4.0, "owl", 2, "linear_classifier_v3"),
]


def _zip_folder(folder: Path, name: str = "db.zip") -> io.BytesIO:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"my-db/{path.name}")
    buffer.seek(0)
    buffer.name = name
    return buffer


@pytest.fixture(scope="module")
def hoplite_source(tmp_path_factory, birdsong):
    """A hoplite database made by perch-hoplite's API: two deployments, real-audio windows
    embedded by the app's model (3 s windows every second), a few annotations; and the
    audio of the north deployment in a folder. Returns (db folder, audio folder, the
    app's float32 embeddings by (file, start))."""
    from perch_hoplite.agile.embed import ModelConfig
    from perch_hoplite.db import datatypes, db_loader

    from workers.embedding_models import configured_model

    root = tmp_path_factory.mktemp("hoplite")
    model = configured_model()
    samples, rate = birdsong
    audio = resample_poly(samples, RATE, rate).astype(np.float32)
    starts = np.arange(0, len(audio) / RATE - WINDOW_S + 1e-9, HOP_S)
    db = db_loader.create_new_usearch_db(str(root / "db"), model.spec.embedding_dim)
    framing = {"model_path": "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite", "class_list_name": "birdnet_v2_4"}
    framing |= {"window_size_s": WINDOW_S, "hop_size_s": HOP_S, "sample_rate": RATE}
    config = ModelConfig(model_key="birdnet", embedding_dim=model.spec.embedding_dim, model_config=framing)
    db.insert_metadata("model_config", config.to_config_dict())
    deployments = {
        name: db.insert_deployment(name=name, project="study", latitude=lat, longitude=-1.5)
        for name, lat in (("north", 52.1), ("south", 51.9))
    }
    recordings, embedded = {}, {}
    for (deployment, filename), make in FILES.items():
        signal = make(audio).astype(np.float32)
        if deployment == "north":
            (root / "audio" / "north").mkdir(parents=True, exist_ok=True)
            soundfile.write(root / "audio" / filename, signal, RATE)
        recordings[filename] = db.insert_recording(filename=filename, deployment_id=deployments[deployment])
        frames = np.stack([signal[int(s * RATE) : int(s * RATE) + int(WINDOW_S * RATE)] for s in starts])
        embeddings = model.embed_windows(frames).embeddings
        db.insert_windows_batch(
            [{"recording_id": recordings[filename], "offsets": [float(s), float(s) + WINDOW_S]} for s in starts],
            embeddings,
            handle_duplicates="allow",
        )
        embedded |= {(filename, float(s)): e for s, e in zip(starts, embeddings, strict=True)}
    for filename, start, end, label, label_type, provenance in ANNOTATIONS:
        db.insert_annotation(
            recording_id=recordings[filename],
            offsets=[float(start), float(end)],
            label=label,
            label_type=datatypes.LabelType(label_type),
            provenance=provenance,
        )
    db.commit()
    db.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in hoplite.sqlite, for the copies below
    return root / "db", root / "audio", embedded


def _hoplite_windows(db) -> dict[tuple[str, float], tuple[int, np.ndarray]]:
    """(file, start) -> (hoplite window id, float16 embedding) of every window."""
    names = {r.id: r.filename for r in db.get_all_recordings()}
    return {(names[w.recording_id], w.offsets[0]): (w.id, db.get_embedding(w.id)) for w in db.get_all_windows()}


@pytest.mark.django_db(transaction=True)
@pytest.mark.worker
def test_a_hoplite_database_imports_and_exports_with_hoplite_agreeing(
    hoplite_source, celery_worker_process, make_user, client_for, media_root, settings, tmp_path
):
    from perch_hoplite.agile import classifier, classifier_data
    from perch_hoplite.db import brutalism, score_functions, sqlite_usearch_impl

    db_folder, audio_folder, embedded = hoplite_source
    settings.PERCH_AGILE_AUDIO_ROOTS = [audio_folder.parent]
    admin = make_user("hoplite-admin")
    project = create_project(admin, "Imported", labels=["owl"])
    grant_folder(project, str(audio_folder))
    client = client_for(admin)

    answer = client.post(
        f"/api/projects/{project.pk}/hoplite-imports/",
        {"file": _zip_folder(db_folder), "audio_folder": str(audio_folder)},
        format="multipart",
    )
    assert answer.status_code == 202, answer.content
    url = f"/api/projects/{project.pk}/hoplite-imports/{answer.json()['id']}/"
    done = wait_for(lambda: (b := client.get(url).json())["status"] in ("done", "failed") and b, what="the import")
    assert done["status"] == "done", done["error"]
    assert done["windows_done"] == done["windows_total"] == len(embedded) == 32
    assert done["annotations_written"] > len(ANNOTATIONS) - 1 and done["labels_added"] == ["wren"]
    assert done["recordings_without_audio"] == 2  # the south files are not in the audio folder

    source = sqlite_usearch_impl.SQLiteUSearchDB.create(str(db_folder), readonly=True)
    hoplite = _hoplite_windows(source)
    windows = {
        (w.recording.filename, w.start_s): w.pk
        for w in Window.objects.filter(project=project).select_related("recording").defer("embedding")
    }
    assert set(windows) == set(hoplite)
    stored = window_embeddings(list(windows.values()))
    for key, window_id in windows.items():
        # hoplite keeps float16, so do we: equal bit for bit, and to the model's output rounded to float16.
        assert stored[window_id].tobytes() == hoplite[key][1].astype(np.float32).tobytes()
        assert np.array_equal(stored[window_id], embedded[key].astype(np.float16).astype(np.float32))
    north = Recording.objects.filter(deployment__name="north")
    assert all(Path(r.path).is_file() and not r.warning for r in north)
    assert all(r.warning == hoplite_exchange.NOT_AVAILABLE for r in Recording.objects.filter(deployment__name="south"))
    assert set(Deployment.objects.filter(project=project).values_list("name", "latitude")) == {
        ("north", 52.1),
        ("south", 51.9),
    }
    values = {0: "negative", 1: "positive", 2: "unsure"}
    for filename, start, _, label, label_type, provenance in ANNOTATIONS:
        annotation = Annotation.objects.get(window_id=windows[(filename, float(start))], label__name=label)
        assert (annotation.value, annotation.provenance) == (values[label_type], provenance)
        assert annotation.annotator.username == "imported"

    # The windows overlap as hoplite cut them: each recording knows its hop.
    assert set(Recording.objects.filter(deployment__project=project).values_list("hop_s", flat=True)) == {HOP_S}

    # Search from an imported window: hoplite's own brute force, cosine, on the same database.
    model = HopliteImport.objects.get().embedding_model
    query_key = ("north/a.wav", 2.0)
    query = hoplite[query_key][1]
    theirs = brutalism.brute_search(source, query, 11, score_functions.get_score_fn("cos"))
    by_id = {window_id: key for key, (window_id, _) in hoplite.items()}
    their_order = [by_id[int(r.window_id)] for r in sorted(theirs, key=lambda r: -r.sort_score)]
    assert their_order[0] == query_key  # itself first
    ours = nearest_window_ids(project, model, query.astype(np.float32), 10, exclude_window_ids=[windows[query_key]])
    by_pk = {pk: key for key, pk in windows.items()}
    assert [by_pk[window_id] for window_id, _ in ours.scored] == their_order[1:]

    # Export the project and open it with hoplite: same windows, embeddings and labels. A
    # deployment heard at another speed (time expansion) says so in its row.
    Deployment.objects.filter(project=project, name="south").update(speed_factor=0.5, low_hz=100.0, high_hz=15_000.0)
    answer = client.post(f"/api/projects/{project.pk}/hoplite-exports/", {}, format="json")
    assert answer.status_code == 202, answer.content
    url = f"/api/projects/{project.pk}/hoplite-exports/{answer.json()['id']}/"
    done = wait_for(lambda: (b := client.get(url).json())["status"] in ("done", "failed") and b, what="the export")
    assert done["status"] == "done", done["error"]
    download = client.get(done["download"])
    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content))) as archive:
        archive.extractall(tmp_path / "exported")
    exported = sqlite_usearch_impl.SQLiteUSearchDB.create(str(tmp_path / "exported" / "hoplite"), readonly=True)
    back = _hoplite_windows(exported)
    assert exported.get_metadata("model_config").model_config.hop_size_s == HOP_S
    assert set(back) == set(hoplite)
    assert all(np.array_equal(back[key][1], hoplite[key][1]) for key in hoplite)
    names = {r.id: r.filename for r in exported.get_all_recordings()}
    labels = {
        (names[a.recording_id], a.offsets[0], a.label, int(a.label_type), a.provenance)
        for a in exported.get_all_annotations()
    }
    ours = {
        (
            a.window.recording.filename,
            a.window.start_s,
            a.label.name,
            {"negative": 0, "positive": 1, "unsure": 2}[a.value],
            a.provenance,
        )
        for a in Annotation.objects.filter(window__project=project).select_related("window__recording", "label")
    }
    assert labels == ours
    assert {(d.name, d.speed_factor, d.low_hz, d.high_hz) for d in exported.get_all_deployments()} == {
        ("north", "1.0", "", ""),
        ("south", "0.5", "100.0", "15000.0"),
    }

    # hoplite's own linear classifier trains on the exported database.
    data = classifier_data.AgileDataManager(
        target_labels=("owl",),
        db=exported,
        train_ratio=0.5,
        min_eval_examples=1,
        batch_size=8,
        weak_negatives_batch_size=4,
        rng=np.random.default_rng(0),
    )
    trained, _ = classifier.train_linear_classifier(data, learning_rate=1e-2, weak_neg_weight=0.05, num_train_steps=20)
    assert trained.beta.shape == (model.embedding_dim, 1)
    assert trained.embedding_model_config.embedding_dim == model.embedding_dim


def _refusal(client, project, upload) -> str:
    answer = client.post(f"/api/projects/{project.pk}/hoplite-imports/", {"file": upload}, format="multipart")
    assert answer.status_code == 400, answer.content
    return answer.json()["error"]


@pytest.mark.django_db
def test_bad_databases_are_refused_with_their_reasons_and_the_project_unchanged(
    hoplite_source, make_user, client_for, media_root, tmp_path
):
    db_folder = hoplite_source[0]
    admin = make_user("hoplite-admin")
    project = create_project(admin, "Refusing")
    client = client_for(admin)

    not_zip = io.BytesIO(b"just some bytes")
    not_zip.name = "db.zip"
    assert "not a readable zip" in _refusal(client, project, not_zip)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "hoplite.sqlite").write_bytes(np.random.default_rng(1).bytes(4096))
    (corrupt / "usearch.index").write_bytes((db_folder / "usearch.index").read_bytes())
    assert "not an SQLite database" in _refusal(client, project, _zip_folder(corrupt))

    old = tmp_path / "old"
    old.mkdir()
    with sqlite3.connect(old / "hoplite.sqlite") as legacy:
        for table in ("hoplite_metadata", "hoplite_sources", "hoplite_embeddings", "hoplite_labels"):
            legacy.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY)")
    (old / "usearch.index").write_bytes((db_folder / "usearch.index").read_bytes())
    assert "hoplite 0.x database" in _refusal(client, project, _zip_folder(old))

    no_index = tmp_path / "no_index"
    no_index.mkdir()
    (no_index / "hoplite.sqlite").write_bytes((db_folder / "hoplite.sqlite").read_bytes())
    assert "usearch index (usearch.index) is missing" in _refusal(client, project, _zip_folder(no_index))

    contradicting = tmp_path / "contradicting"
    contradicting.mkdir()
    for name in ("hoplite.sqlite", "usearch.index"):
        (contradicting / name).write_bytes((db_folder / name).read_bytes())
    with sqlite3.connect(contradicting / "hoplite.sqlite") as db:
        db.execute(
            "UPDATE hoplite_metadata SET value = json_set(value, '$.embedding_dim', 512) WHERE key = 'model_config'"
        )
    assert "contradicts itself" in _refusal(client, project, _zip_folder(contradicting))

    assert not HopliteImport.objects.exists() and not project.deployments.exists()
    assert not (media_root / "hoplite" / "imports").exists() or not any((media_root / "hoplite" / "imports").iterdir())


@pytest.mark.django_db
def test_duplicate_windows_fail_the_import_before_anything_is_written(hoplite_source, make_user, media_root, tmp_path):
    db_folder = hoplite_source[0]
    duplicated = tmp_path / "duplicated"
    duplicated.mkdir()
    for name in ("hoplite.sqlite", "usearch.index"):
        (duplicated / name).write_bytes((db_folder / name).read_bytes())
    with sqlite3.connect(duplicated / "hoplite.sqlite") as db:
        db.execute("INSERT INTO windows (recording_id, offsets) SELECT recording_id, offsets FROM windows LIMIT 1")
    project = create_project(make_user("hoplite-admin"), "Duplicates")
    started = hoplite_exchange.start_import(project, None, upload=_zip_folder(duplicated))
    with pytest.raises(InputError, match="start at 0 s"):
        hoplite_exchange.run_import(started.pk)
    assert not project.deployments.exists() and not Window.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_exporting_is_an_annotators_right_and_needs_embedded_windows(make_user, client_for):
    from annotations.models import Membership, Role

    admin, viewer = make_user("hoplite-admin"), make_user("hoplite-viewer")
    project = create_project(admin, "Nothing yet")
    Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    assert client_for(viewer).get(f"/api/projects/{project.pk}/hoplite-exports/").status_code == 403
    assert client_for(viewer).post(f"/api/projects/{project.pk}/hoplite-exports/", {}, format="json").status_code == 403
    answer = client_for(admin).post(f"/api/projects/{project.pk}/hoplite-exports/", {}, format="json")
    assert answer.status_code == 400 and "nothing embedded" in answer.json()["error"]


@pytest.mark.django_db
def test_a_resumed_import_goes_on_after_the_deployments_already_written(hoplite_source, make_user, media_root):
    project = create_project(make_user("hoplite-admin"), "Resumed")
    started = hoplite_exchange.start_import(project, None, upload=_zip_folder(hoplite_source[0]))
    with sqlite3.connect(Path(started.database_folder) / "hoplite.sqlite") as db:
        (north,) = db.execute("SELECT id FROM deployments WHERE name = 'north'").fetchone()
    HopliteImport.objects.filter(pk=started.pk).update(done_deployments=[north])  # as if a worker died after it
    finished = hoplite_exchange.run_import(started.pk)
    assert list(project.deployments.values_list("name", flat=True)) == ["south"]
    assert finished.status == "done" and finished.windows_done == 16 and len(finished.done_deployments) == 2
    assert not Path(started.database_folder).exists()  # an uploaded database is deleted once imported


def test_a_hoplite_deployment_row_brings_back_how_its_audio_was_heard(make_user):
    project = create_project(make_user("bats"), "Bats")
    source = {"id": 1, "name": "cave", "project": "p", "latitude": None, "longitude": None}
    heard = hoplite_exchange._new_deployment(
        project, {**source, "speed_factor": "0.1", "low_hz": "15000.0", "high_hz": "140000.0"}, several_projects=False
    )
    heard.refresh_from_db()
    assert (heard.speed_factor, heard.low_hz, heard.high_hz) == (0.1, 15_000.0, 140_000.0)
    with pytest.raises(InputError, match="speed"):
        hoplite_exchange._new_deployment(project, {**source, "name": "odd", "speed_factor": "50"}, False)
    assert not project.deployments.filter(name="odd").exists()
