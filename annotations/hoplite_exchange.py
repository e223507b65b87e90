"""Exchanging work with perch-hoplite: importing its databases, exporting projects as one.

A hoplite 1.0 database is a folder: ``hoplite.sqlite`` (deployments -> recordings ->
windows with their [start, end] offsets, annotations on recording offsets, a metadata
table of JSON configs) and ``usearch.index`` (the embeddings, float16, keyed by window id).
hoplite 0.x databases (``hoplite_sources``, ``hoplite_embeddings`` tables) are refused:
perch-hoplite's own notebook migrates them.

Embeddings are float16 in both hoplite and here (``halfvec``): an import or an export
copies them bit for bit.

Import: a worker writes each deployment in one transaction (recordings, windows through
the ingest's binary COPY, annotations) and notes it done in the same transaction, so a
retried task goes on where the last one stopped and no deployment is ever half there.
Annotations become labels of the project's vocabulary (added where missing), given by
the ``imported`` annotator, with hoplite's provenance kept on each label. A hoplite
annotation labels the windows of its recording that it covers enough
(``label_import.overlaps_enough``); where several label one window for one label, the
last (by hoplite id) wins.

Export: a worker writes a project's or a deployment's windows of one model, their
recordings, deployments and labels through perch-hoplite's own API, and zips the
database with each linear classifier version as hoplite ``LinearClassifier`` JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Func, Min
from django.utils import timezone

from annotations.deployments import AUDIO_EXTENSIONS, granted_folder, hoplite_folder, metadata_problems, new_recording
from annotations.embedding_store import iter_deployment_embeddings, register_embedding_model, replace_windows
from annotations.errors import InputError
from annotations.exports import hoplite_linear_classifier
from annotations.label_import import covered_windows
from annotations.model_catalogue import ModelSpec
from annotations.models import (
    Annotation,
    Classifier,
    Deployment,
    EmbeddingModel,
    HopliteExport,
    HopliteImport,
    LabelChange,
    LabelValue,
    ProbeType,
    Project,
    Recording,
    RecordingStatus,
    StartTimeSource,
    TaskStatus,
    Window,
)
from annotations.queueing import EXPORT_HOPLITE, IMPORT_HOPLITE, enqueue_on_commit
from annotations.search_index import request_index_build
from annotations.vocabulary import add_label

SQLITE_FILE = "hoplite.sqlite"
USEARCH_FILE = "usearch.index"
SQLITE_MAGIC = b"SQLite format 3\x00"
V1_TABLES = {"hoplite_metadata", "deployments", "recordings", "windows", "annotations"}
V0_TABLES = {"hoplite_sources", "hoplite_embeddings", "hoplite_labels"}
# The metadata key under which an export names the model as this app knows it.
APP_METADATA_KEY = "perch_agile"
IMPORTED_ANNOTATOR = "imported"
# hoplite's LabelType (perch_hoplite.db.datatypes) and our values.
LABEL_TYPES = {0: LabelValue.NEGATIVE, 1: LabelValue.POSITIVE, 2: LabelValue.UNSURE}
LABEL_TYPE_OF = {value: label_type for label_type, value in LABEL_TYPES.items()}
# Deployment fields an export writes as hoplite extra columns, and an import reads back.
# speed_factor, low_hz and high_hz: how a time-expanded deployment's audio was heard. A
# window's offsets are the file's own seconds, and hoplite's model_config the model's own
# framing: a 3 s window heard at 0.1x speed spans 0.3 s of the file.
DEPLOYMENT_EXTRAS = (
    "site",
    "recorder",
    "timezone",
    "deployed_on",
    "retrieved_on",
    "channel",
    "speed_factor",
    "low_hz",
    "high_hz",
)
NUMERIC_EXTRAS = {"channel": int, "speed_factor": float, "low_hz": float, "high_hz": float}
NOT_AVAILABLE = "audio not available: imported from a hoplite database, and no file was found for it"


def _import_folder(import_id: int) -> Path:
    return hoplite_folder("imports", import_id)


def _export_folder(export_id: int) -> Path:
    return hoplite_folder("exports", export_id)


# --- Reading a hoplite database ------------------------------------------------------


def _connect(folder: Path) -> sqlite3.Connection:
    sqlite_path = folder / SQLITE_FILE
    if not sqlite_path.is_file():
        raise InputError(f"no {SQLITE_FILE} in the hoplite database")
    with open(sqlite_path, "rb") as f:
        if f.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise InputError(f"{SQLITE_FILE} is not an SQLite database")
    if not (folder / USEARCH_FILE).is_file():
        raise InputError(f"the usearch index ({USEARCH_FILE}) is missing: hoplite keeps the embeddings there")
    return sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)


def _metadata(db: sqlite3.Connection) -> dict:
    return {key: json.loads(value) for key, value in db.execute("SELECT key, value FROM hoplite_metadata")}


def read_model(folder: Path) -> ModelSpec:
    """Check that ``folder`` holds a hoplite 1.0 database whose model config, usearch
    config and usearch index agree, and return its model. Reads no windows: quick.

    Raises InputError saying what is wrong.
    """
    db = _connect(folder)
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables >= V0_TABLES:
            raise InputError(
                "this is a hoplite 0.x database (hoplite_sources, hoplite_embeddings): only perch-hoplite 1.0 "
                "databases are imported; migrate it with perch-hoplite 1.0's agile/99_migrate_db.ipynb first"
            )
        if missing := V1_TABLES - tables:
            raise InputError(f"not a perch-hoplite 1.0 database: it has no {', '.join(sorted(missing))} table")
        metadata = _metadata(db)
    except sqlite3.DatabaseError as error:
        raise InputError(f"{SQLITE_FILE} cannot be read: {error}") from None
    except json.JSONDecodeError as error:
        raise InputError(f"its metadata is not JSON: {error}") from None
    finally:
        db.close()
    return _model_from_metadata(metadata, folder / USEARCH_FILE)


def _model_from_metadata(metadata: dict, usearch_path: Path) -> ModelSpec:
    from usearch.index import Index  # the web process needs it only here

    model_config, usearch_config = metadata.get("model_config"), metadata.get("usearch_config")
    if not isinstance(model_config, dict) or not isinstance(usearch_config, dict):
        raise InputError("its metadata lacks model_config or usearch_config: it was not written by perch-hoplite 1.0")
    framing = model_config.get("model_config") or {}
    try:
        dim = int(model_config["embedding_dim"])
        window_s, hop_s = float(framing["window_size_s"]), float(framing["hop_size_s"])
        sample_rate = int(framing["sample_rate"])
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"its model_config does not give the model's embedding_dim and framing ({error})") from None
    if int(usearch_config.get("embedding_dim", -1)) != dim:
        raise InputError(
            f"its usearch_config says {usearch_config.get('embedding_dim')} dimensions, "
            f"its model_config {dim}: the database contradicts itself"
        )
    if usearch_config.get("dtype") != "float16":
        raise InputError(f"its embeddings are {usearch_config.get('dtype')}; perch-hoplite 1.0 writes float16")
    index_metadata = Index.metadata(str(usearch_path))
    if index_metadata is None:
        raise InputError(f"{USEARCH_FILE} is not a usearch index")
    if int(index_metadata["dimensions"]) != dim:
        raise InputError(f"{USEARCH_FILE} holds {index_metadata['dimensions']}-d vectors, its model_config says {dim}")
    ours = metadata.get(APP_METADATA_KEY) or {}
    if ours.get("model_name"):
        name, version = str(ours["model_name"]), str(ours["model_version"])
    else:
        # A model is its key and the whole config it was loaded with: two configs never mix.
        config_text = json.dumps(framing, sort_keys=True, default=str)
        name = str(model_config.get("model_key") or "hoplite-model")
        version = "hoplite-" + hashlib.sha256(config_text.encode()).hexdigest()[:12]
    return ModelSpec(name[:100], version[:100], dim, window_s, hop_s, sample_rate)


@contextmanager
def _open(folder: Path) -> Iterator[tuple[sqlite3.Connection, object]]:
    """The database's SQLite connection (read-only) and its usearch index (memory-mapped)."""
    from usearch.index import Index

    db = _connect(folder)
    index = Index.restore(str(folder / USEARCH_FILE), view=True)
    try:
        yield db, index
    finally:
        db.close()


def _offsets(blob: bytes) -> tuple[float, float]:
    """hoplite's FLOAT_LIST column: little-endian float64 values."""
    start, end = np.frombuffer(blob, dtype="<f8")[:2]
    return float(start), float(end)


def _check_windows(db: sqlite3.Connection, index) -> int:
    """Refuse duplicate windows and windows without embeddings; returns the window count."""
    # Here a window is its recording, model and start: hoplite tells them apart by offsets.
    duplicate = db.execute(
        "SELECT recording_id, offsets, count(*) FROM windows GROUP BY recording_id, substr(offsets, 1, 8) "
        "HAVING count(*) > 1 LIMIT 1"
    ).fetchone()
    if duplicate:
        recording_id, offsets, count = duplicate
        raise InputError(
            f"{count} windows of hoplite recording {recording_id} start at {_offsets(offsets)[0]:g} s "
            "(duplicates, or one per channel): each window must start at its own time"
        )
    windows = db.execute("SELECT count(*) FROM windows").fetchone()[0]
    if len(index) != windows:
        raise InputError(f"{windows} windows but {len(index)} embeddings in {USEARCH_FILE}: they must match")
    return windows


# --- Import ----------------------------------------------------------------------------


def _safe_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The zip's hoplite files, by name, wherever they are in it (one database only)."""
    found: dict[str, zipfile.ZipInfo] = {}
    for member in archive.infolist():
        name = PurePosixPath(member.filename).name
        # A database still open in hoplite has part of its content in the write-ahead log.
        if name in (SQLITE_FILE, SQLITE_FILE + "-wal", USEARCH_FILE) and not member.is_dir():
            if name in found:
                raise InputError(f"the zip holds more than one {name}: send one hoplite database")
            found[name] = member
    if SQLITE_FILE not in found:
        raise InputError(f"the zip holds no {SQLITE_FILE}: zip the hoplite database's folder")
    if sum(member.file_size for member in found.values()) > settings.PERCH_AGILE_MAX_REQUEST_BYTES:
        raise InputError("the database unpacks to more than this server accepts (PERCH_AGILE_MAX_REQUEST_BYTES)")
    return found


def _unpack(upload: UploadedFile, folder: Path) -> None:
    try:
        with zipfile.ZipFile(upload) as archive:
            for name, member in _safe_members(archive).items():
                with archive.open(member) as source, open(folder / name, "wb") as target:
                    shutil.copyfileobj(source, target, 1024 * 1024)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise InputError(f"not a readable zip file ({error}): zip the hoplite database's folder") from None


def _imported_annotator():
    """The account that imported labels are given by; nobody can log in as it."""
    user, created = get_user_model().objects.get_or_create(username=IMPORTED_ANNOTATOR, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def start_import(
    project: Project, user, *, upload: UploadedFile | None = None, folder: str = "", audio_folder: str = ""
) -> HopliteImport:
    """Check a hoplite database (a zip upload, or a server folder granted to the project)
    and queue its import. Bad input raises InputError and leaves nothing behind."""
    if (upload is None) == (not folder):
        raise InputError("send either a zipped hoplite database (multipart 'file') or a server 'folder'")
    audio = str(granted_folder(project, audio_folder)) if audio_folder else ""
    with transaction.atomic():
        hoplite_import = HopliteImport.objects.create(
            project=project,
            created_by=user,
            source_name=upload.name[:300] if upload is not None else folder[:300],
            uploaded=upload is not None,
            audio_folder=audio,
        )
        if upload is None:
            database = granted_folder(project, folder)
        else:
            database = _import_folder(hoplite_import.pk)
            database.mkdir(parents=True, exist_ok=True)
        try:
            if upload is not None:
                _unpack(upload, database)
            model = read_model(database)
        except BaseException:
            if upload is not None:
                shutil.rmtree(database, ignore_errors=True)
            raise
        hoplite_import.database_folder = str(database)
        hoplite_import.embedding_model = _register(model)
        hoplite_import.save(update_fields=["database_folder", "embedding_model"])
        _enqueue_import(hoplite_import)
    return hoplite_import


def _register(model: ModelSpec) -> EmbeddingModel:
    try:
        return register_embedding_model(
            model.name, model.version, model.embedding_dim, model.window_s, model.hop_s, model.sample_rate
        )
    except ValueError as error:
        raise InputError(f"the database's model contradicts one known here: {error}") from None


def _enqueue_import(hoplite_import: HopliteImport) -> None:
    enqueue_on_commit(
        IMPORT_HOPLITE,
        hoplite_import.pk,
        on_failure=lambda why: fail_import(hoplite_import.pk, why),
    )


def resume_import(hoplite_import: HopliteImport) -> HopliteImport:
    """Queue a failed import again: it goes on after the deployments already written."""
    if hoplite_import.status != TaskStatus.FAILED:
        raise InputError(f"only a failed import can be resumed; this one is {hoplite_import.status}")
    if not (Path(hoplite_import.database_folder) / SQLITE_FILE).is_file():
        raise InputError("the database is no longer on the server: import it again")
    with transaction.atomic():
        HopliteImport.objects.filter(pk=hoplite_import.pk).update(status=TaskStatus.QUEUED, error="")
        _enqueue_import(hoplite_import)
    hoplite_import.refresh_from_db()
    return hoplite_import


def fail_import(import_id: int, reason: str, refused: bool = False) -> None:
    """Record why an import stopped. An uploaded database ``refused`` for its content is
    deleted: resuming could not help."""
    HopliteImport.objects.filter(pk=import_id).update(status=TaskStatus.FAILED, error=reason[:2000])
    hoplite_import = HopliteImport.objects.get(pk=import_id)
    if refused and hoplite_import.uploaded:
        shutil.rmtree(hoplite_import.database_folder, ignore_errors=True)


def run_import(import_id: int) -> HopliteImport:
    """Import every deployment not yet done, each in one transaction (see the module doc)."""
    hoplite_import = HopliteImport.objects.select_related("project", "embedding_model").get(pk=import_id)
    if hoplite_import.status == TaskStatus.DONE:
        return hoplite_import
    HopliteImport.objects.filter(pk=import_id).update(status=TaskStatus.RUNNING)
    folder, model = Path(hoplite_import.database_folder), hoplite_import.embedding_model
    annotator = _imported_annotator()
    try:
        with _open(folder) as (db, index):
            windows = _check_windows(db, index)
            deployments = db.execute("SELECT * FROM deployments ORDER BY id").fetchall()
            columns = [column[0] for column in db.execute("SELECT * FROM deployments LIMIT 0").description]
            HopliteImport.objects.filter(pk=import_id).update(deployments_total=len(deployments), windows_total=windows)
            several_projects = len({row[columns.index("project")] for row in deployments}) > 1
            for row in deployments:
                source = dict(zip(columns, row, strict=True))
                if source["id"] in hoplite_import.done_deployments:
                    continue
                with transaction.atomic():
                    counts = _import_deployment(hoplite_import, db, index, source, several_projects, model, annotator)
                    HopliteImport.objects.filter(pk=import_id).update(
                        done_deployments=Func(F("done_deployments"), source["id"], function="array_append"),
                        windows_done=F("windows_done") + counts.windows,
                        annotations_written=F("annotations_written") + counts.annotations,
                        recordings_without_audio=F("recordings_without_audio") + counts.without_audio,
                        labels_added=Func(F("labels_added"), list(counts.labels_added), function="array_cat"),
                    )
    except sqlite3.DatabaseError as error:
        raise InputError(f"{SQLITE_FILE} cannot be read: {error}") from None
    HopliteImport.objects.filter(pk=import_id).update(status=TaskStatus.DONE)
    if hoplite_import.uploaded:
        shutil.rmtree(folder, ignore_errors=True)
    request_index_build(hoplite_import.project, model)
    hoplite_import.refresh_from_db()
    return hoplite_import


@dataclasses.dataclass(frozen=True)
class DeploymentCounts:
    windows: int
    annotations: int
    without_audio: int
    labels_added: tuple[str, ...]


def _new_deployment(project: Project, source: dict, several_projects: bool) -> Deployment:
    name = f"{source['project']}/{source['name']}" if several_projects else str(source["name"])
    deployment = Deployment(
        project=project, name=name[:200], latitude=source["latitude"], longitude=source["longitude"]
    )
    for field in DEPLOYMENT_EXTRAS:
        value = source.get(field)
        if value in (None, ""):
            continue
        if field in ("deployed_on", "retrieved_on"):
            value = dt.date.fromisoformat(str(value))
        setattr(deployment, field, NUMERIC_EXTRAS[field](value) if field in NUMERIC_EXTRAS else value)
    if problems := metadata_problems(deployment):
        raise InputError(f"hoplite deployment {source['name']!r}: {'; '.join(problems)}")
    deployment.save()
    return deployment


def _recording(deployment: Deployment, audio_folder: str, filename: str, started: str | None) -> Recording:
    """The recording of a hoplite file name: its audio where the audio folder has it."""
    folder = Path(audio_folder) if audio_folder else None
    path = (folder / filename).resolve() if folder else None
    if path is not None and folder in path.parents and path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
        recording = new_recording(deployment, path, filename, path.name)
    else:
        # Not a path on this server: an unmatched recording must never open a file.
        recording = Recording(
            deployment=deployment, path=f"hoplite:{filename}", filename=filename, warning=NOT_AVAILABLE
        )
    if started:
        start = dt.datetime.fromisoformat(started)
        if timezone.is_naive(start):
            start = start.replace(tzinfo=dt.UTC)
        recording.started_at, recording.started_at_source = start, StartTimeSource.HOPLITE
    recording.status = RecordingStatus.DONE
    return recording


def _import_deployment(
    hoplite_import: HopliteImport,
    db: sqlite3.Connection,
    index,
    source: dict,
    several_projects: bool,
    model: EmbeddingModel,
    annotator,
) -> DeploymentCounts:
    deployment = _new_deployment(hoplite_import.project, source, several_projects)
    recordings, without_audio, windows = {}, 0, 0
    for recording_id, filename, started in db.execute(
        "SELECT id, filename, datetime FROM recordings WHERE deployment_id = ? ORDER BY id", [source["id"]]
    ):
        recording = _recording(deployment, hoplite_import.audio_folder, filename, started)
        recording.hop_s = model.hop_s  # the database's framing (annotations.search.calls reads it)
        rows = db.execute("SELECT id, offsets FROM windows WHERE recording_id = ?", [recording_id]).fetchall()
        spans = np.array([_offsets(blob) for _, blob in rows], dtype=np.float64).reshape(-1, 2)
        order = np.argsort(spans[:, 0], kind="stable")
        keys, spans = np.array([key for key, _ in rows], dtype=np.uint64)[order], spans[order]
        recording.duration_s = float(spans[:, 1].max()) if len(spans) else None
        recording.save()
        without_audio += recording.warning == NOT_AVAILABLE
        if not len(keys):
            continue  # a recording without windows: nothing to search or label
        if not np.all(index.contains(keys)):
            raise InputError(f"windows of hoplite recording {filename!r} have no embedding in {USEARCH_FILE}")
        # One array, or a tuple of rows for a memory-mapped index: stacked either way.
        embeddings = np.stack(index.get(keys, dtype=np.float16)).reshape(len(keys), model.embedding_dim)
        windows += replace_windows(recording.pk, model, spans[:, 0], spans[:, 1], embeddings)
        recordings[recording_id] = recording.pk
    annotations, labels_added = _import_annotations(hoplite_import.project, db, source["id"], recordings, annotator)
    return DeploymentCounts(windows, annotations, without_audio, labels_added)


def _import_annotations(
    project: Project, db: sqlite3.Connection, deployment_id: int, recordings: dict[int, int], annotator
) -> tuple[int, tuple[str, ...]]:
    """Give the windows the deployment's hoplite annotations cover; returns how many
    labels were written and the vocabulary labels added for them."""
    rows = db.execute(
        "SELECT a.recording_id, a.offsets, a.label, a.label_type, a.provenance FROM annotations a "
        "JOIN recordings r ON r.id = a.recording_id WHERE r.deployment_id = ? ORDER BY a.id",
        [deployment_id],
    ).fetchall()
    labels = dict(project.labels.values_list("name", "pk"))
    added = []
    for name in dict.fromkeys(row[2] for row in rows):
        if name not in labels:
            labels[name] = add_label(project, name[:100]).pk
            added.append(name)
    windows: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    chosen: dict[tuple[int, int], tuple[str, str]] = {}
    for recording_id, offsets, label, label_type, provenance in rows:
        ours = recordings[recording_id]
        if ours not in windows:
            found = np.array(
                Window.objects.filter(recording_id=ours).order_by("start_s").values_list("pk", "start_s", "end_s"),
                dtype=np.float64,
            ).reshape(-1, 3)
            windows[ours] = (found[:, 0].astype(np.int64), found[:, 1], found[:, 2])
        if label_type not in LABEL_TYPES:
            raise InputError(f"annotation label_type {label_type} is not one of hoplite's (0, 1, 2)")
        for window_id in covered_windows(*windows[ours], *_offsets(offsets)):
            chosen[(window_id, labels[label])] = (LABEL_TYPES[label_type], str(provenance)[:200])
    Annotation.objects.bulk_create(
        Annotation(window_id=w, label_id=lbl, value=value, annotator=annotator, provenance=provenance)
        for (w, lbl), (value, provenance) in chosen.items()
    )
    LabelChange.objects.bulk_create(
        LabelChange(window_id=w, label_id=lbl, annotator=annotator, new_value=value)
        for (w, lbl), (value, _) in chosen.items()
    )
    return len(chosen), tuple(added)


# --- Export ----------------------------------------------------------------------------


def start_export(project: Project, user, deployment: Deployment | None = None, model_id: int | None = None):
    """Queue an export of the project's (or one deployment's) windows of one model."""
    recordings = Recording.objects.filter(deployment__project=project, embedding_model__isnull=False)
    if deployment is not None:
        recordings = recordings.filter(deployment=deployment)
    models = set(recordings.values_list("embedding_model", flat=True).distinct())
    if model_id is not None and model_id not in models:
        raise InputError(f"no windows of model {model_id} to export")
    if model_id is None and len(models) != 1:
        raise InputError(
            "nothing embedded to export"
            if not models
            else f"windows of {len(models)} models: a hoplite database holds one; name it with 'model'"
        )
    with transaction.atomic():
        export = HopliteExport.objects.create(
            project=project, deployment=deployment, embedding_model_id=model_id or models.pop(), created_by=user
        )
        enqueue_on_commit(
            EXPORT_HOPLITE,
            export.pk,
            on_failure=lambda why: HopliteExport.objects.filter(pk=export.pk).update(
                status=TaskStatus.FAILED, error=why
            ),
        )
    return export


def _hoplite_model_config(model: EmbeddingModel, hop_s: float | None = None):
    """hoplite's ModelConfig as a ConfigDict: what its LinearClassifier carries too
    (``hop_s``: the windows' hop, by default the model's)."""
    from ml_collections import config_dict

    return config_dict.ConfigDict(
        {
            "model_key": model.name,
            "embedding_dim": model.embedding_dim,
            "model_config": {
                "window_size_s": model.window_s,
                "hop_size_s": model.hop_s if hop_s is None else hop_s,
                "sample_rate": model.sample_rate,
            },
            "logits_key": None,
            "logits_idxes": None,
        }
    )


def _extras(deployment: Deployment) -> dict[str, str]:
    """The deployment's metadata as hoplite extra columns: text, "" where unknown, so
    every deployment row has the same columns."""
    return {
        field: "" if getattr(deployment, field) is None else str(getattr(deployment, field))
        for field in DEPLOYMENT_EXTRAS
    }


def run_export(export_id: int) -> HopliteExport:
    """Write the export's hoplite database and zip it with the linear classifiers."""
    from ml_collections import config_dict
    from perch_hoplite.db import datatypes, db_loader

    export = HopliteExport.objects.select_related("project", "deployment", "embedding_model").get(pk=export_id)
    model, project = export.embedding_model, export.project
    HopliteExport.objects.filter(pk=export_id).update(status=TaskStatus.RUNNING, windows_done=0)
    folder = _export_folder(export_id)
    shutil.rmtree(folder, ignore_errors=True)  # a retried task starts again
    database_folder = folder / "hoplite"
    deployments = Deployment.objects.filter(pk=export.deployment_id) if export.deployment_id else project.deployments
    windows = Window.objects.filter(project=project, model=model)
    if export.deployment_id:
        windows = windows.filter(deployment_id=export.deployment_id)
    HopliteExport.objects.filter(pk=export_id).update(windows_total=windows.count())
    db = db_loader.create_new_usearch_db(str(database_folder), model.embedding_dim)
    # hoplite keeps one hop per database: the exported recordings' (the shortest, where
    # deployments differ; each window's offsets are exact whatever the hop).
    hops = Recording.objects.filter(deployment__in=deployments.all(), embedding_model=model).aggregate(hop=Min("hop_s"))
    db.insert_metadata("model_config", _hoplite_model_config(model, hops["hop"] or model.hop_s))
    db.insert_metadata(
        APP_METADATA_KEY,
        config_dict.ConfigDict(
            {
                "model_name": model.name,
                "model_version": model.version,
                "project": project.name,
                "exported_at": timezone.now().isoformat(),
            }
        ),
    )
    done = 0
    for deployment in deployments.order_by("pk"):
        hoplite_deployment = db.insert_deployment(
            name=deployment.name,
            project=project.name,
            latitude=deployment.latitude,
            longitude=deployment.longitude,
            **_extras(deployment),
        )
        recording_ids = {
            recording.pk: db.insert_recording(
                filename=recording.filename, datetime=recording.started_at, deployment_id=hoplite_deployment
            )
            for recording in deployment.recordings.filter(embedding_model=model).order_by("pk")
        }
        for ids, embeddings in iter_deployment_embeddings(deployment.pk, model):
            spans = dict(
                (pk, (recording, start, end))
                for pk, recording, start, end in Window.objects.filter(pk__in=ids.tolist()).values_list(
                    "pk", "recording_id", "start_s", "end_s"
                )
            )
            batch = [
                {"recording_id": recording_ids[spans[pk][0]], "offsets": [spans[pk][1], spans[pk][2]]}
                for pk in ids.tolist()
            ]
            db.insert_windows_batch(batch, embeddings.astype(np.float16), handle_duplicates="allow")
            done += len(ids)
            HopliteExport.objects.filter(pk=export_id).update(windows_done=done)
        labels = Annotation.objects.filter(window__deployment_id=deployment.pk, window__model=model).values_list(
            "window__recording_id",
            "window__start_s",
            "window__end_s",
            "label__name",
            "value",
            "provenance",
            "annotator__username",
        )
        for recording, start, end, label, value, provenance, username in labels.iterator(chunk_size=2000):
            db.insert_annotation(
                recording_id=recording_ids[recording],
                offsets=[start, end],
                label=label,
                label_type=datatypes.LabelType(LABEL_TYPE_OF[value]),
                provenance=provenance or username,
                handle_duplicates="allow",
            )
        db.commit()
    # One self-contained file: fold the write-ahead log into it before zipping.
    db.db.execute("PRAGMA journal_mode = DELETE")
    db.db.close()
    archive_path = folder / f"hoplite-export-{export_id}.zip"
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in (SQLITE_FILE, USEARCH_FILE):
            archive.write(database_folder / name, f"hoplite/{name}")
        classifiers = Classifier.objects.filter(
            project=project, embedding_model=model, probe_type=ProbeType.LINEAR, status=TaskStatus.DONE
        )
        for classifier in classifiers.order_by("version"):
            archive.writestr(
                f"classifiers/linear_v{classifier.version}.json", json.dumps(hoplite_linear_classifier(classifier))
            )
    shutil.rmtree(database_folder)
    HopliteExport.objects.filter(pk=export_id).update(
        status=TaskStatus.DONE, path=str(archive_path), size_bytes=archive_path.stat().st_size
    )
    export.refresh_from_db()
    return export


def export_file_name(export: HopliteExport) -> str:
    scope = export.deployment.name if export.deployment_id else export.project.name
    return f"hoplite-{scope}-{export.embedding_model.name}.zip"
