"""Exports that work outside the app: classifiers as files, detections as tables.

Two classifier formats:

- ``perch-agile-classifier`` (ours, versioned): ``labels`` in column order, the chosen
  ``thresholds``, the embedding model and framing it belongs to, held-out metrics, the
  ``probe_type`` and its parameters as float32 values written exactly. Apply it with
  numpy alone. A linear probe (``weights`` [D][L], ``bias`` [L])::

      c = json.load(open("classifier.json"))
      w = np.asarray(c["weights"], np.float32); b = np.asarray(c["bias"], np.float32)
      probability = 1 / (1 + np.exp(-(embeddings.astype(np.float32) @ w + b)))

  A prototype probe (``prototypes`` [L][K][D] and ``negative_prototypes`` [L][J][D] unit
  rows, J may be 0; ``calibration`` [L] of a, b and the temperature t, 0 meaning the max)::

      def smax(s, t):
          return s.max(axis=1) if t == 0 else t * np.log(np.exp(s / t).sum(axis=1))

      unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
      k = c["calibration"][i]
      evidence = smax(unit @ np.asarray(c["prototypes"][i], np.float32).T, k["temperature"])
      if c["negative_prototypes"][i]:
          evidence -= smax(unit @ np.asarray(c["negative_prototypes"][i], np.float32).T, k["temperature"])
      probability = 1 / (1 + np.exp(-(k["a"] * evidence + k["b"])))

- perch-hoplite's ``LinearClassifier`` JSON (``model_config``, ``classes``, base64
  float32 ``beta`` [D x L] and ``beta_bias``): load it with
  ``perch_hoplite.agile.classifier.LinearClassifier.load(path)``; its call returns
  logits, to which the same sigmoid applies.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime as dt
import io
import itertools
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path, PurePath
from zoneinfo import ZoneInfo

import numpy as np

from annotations.deployments import upload_folder
from annotations.detection_filters import DetectionFilters, filtered_detections, filtered_events
from annotations.formula_cells import neutral_cell
from annotations.labeling import labels_by_window
from annotations.models import Classifier, Deployment, InferenceRun, Label, LabelValue, ProbeType, Recording
from annotations.raven import FileSpan, Selection, write_file_sequence_table, write_selection_table
from annotations.scoring import Scorer, prototype_head
from annotations.training import classifier_arrays

FORMAT_NAME = "perch-agile-classifier"
FORMAT_VERSION = 1


def _model_config(classifier: Classifier) -> dict:
    model = classifier.embedding_model
    return {
        "model_name": model.name,
        "model_version": model.version,
        "embedding_dim": model.embedding_dim,
        "window_size_s": model.window_s,
        "hop_size_s": model.hop_s,
        "sample_rate": model.sample_rate,
    }


def _label_names(classifier: Classifier) -> list[str]:
    return [output.label.name for output in classifier.outputs.order_by("index").select_related("label")]


def _floats(array: np.ndarray) -> list:
    """float32 values as JSON numbers: float(np.float32) is exact, so the file reproduces the app's scores."""
    return array.astype(np.float32).tolist()


def perch_agile_classifier(classifier: Classifier) -> dict:
    scorer = Scorer(classifier)
    outputs = scorer.outputs
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "probe_type": classifier.probe_type,
        "classifier_version": classifier.version,
        "project": classifier.project.name,
        "created_at": classifier.created_at.isoformat(),
        "embedding_model": _model_config(classifier),
        "labels": [output.label.name for output in outputs],
        "thresholds": [output.threshold for output in outputs],
    }
    if classifier.probe_type == ProbeType.PROTOTYPE:
        dim = classifier.embedding_model.embedding_dim
        heads = [prototype_head(output, dim) for output in outputs]
        document["score"] = (
            "probability[label] = 1 / (1 + exp(-(a * (smax_t(unit(embedding) @ prototypes[label].T)"
            " - smax_t(unit(embedding) @ negative_prototypes[label].T)) + b))),"
            " smax_t(s) = t * log(sum_k exp(s_k / t)) (max_k s_k where t = 0);"
            " the negative term is 0 without negative_prototypes"
        )
        document["prototypes"] = [_floats(head.prototypes) for head in heads]
        document["negative_prototypes"] = [_floats(head.negative_prototypes) for head in heads]
        document["calibration"] = [
            {"a": float(head.a), "b": float(head.b), "temperature": head.temperature} for head in heads
        ]
    else:
        weights, bias = classifier_arrays(classifier)
        document["score"] = "probability = 1 / (1 + exp(-(embedding @ weights + bias)))"
        document["weights"] = _floats(weights)
        document["bias"] = _floats(bias)
    document["metrics"] = {
        output.label.name: {
            "train_positives": output.train_positives,
            "train_negatives": output.train_negatives,
            "weak_negatives": output.weak_negatives_used,
            "eval_positives": output.eval_positives,
            "eval_negatives": output.eval_negatives,
            "roc_auc": output.roc_auc,
            "average_precision": output.average_precision,
        }
        for output in outputs
    }
    return document


def hoplite_linear_classifier(classifier: Classifier) -> dict:
    weights, bias = classifier_arrays(classifier)
    return {
        "model_config": _model_config(classifier),
        "classes": _label_names(classifier),
        "beta": base64.b64encode(weights.astype("<f4").tobytes()).decode("ascii"),
        "beta_bias": base64.b64encode(bias.astype("<f4").tobytes()).decode("ascii"),
    }


DETECTION_COLUMNS = [
    "deployment",
    "site",
    "latitude",
    "longitude",
    "recording",
    "path",
    "start_s",
    "end_s",
    "label",
    "score",
    "classifier_version",
    "start_time_local",
    "start_time_utc",
    "timezone",
    "review",
    "reviewed_by",
    "window_labels",
    "windows",  # 1 for a window; an event's number of windows
]
# The CSV's columns after classifier_version, as extra columns of the Raven tables (Raven keeps any).
RAVEN_EXTRA_COLUMNS = [
    "Start Time Local",
    "Start Time UTC",
    "Time Zone",
    "Review",
    "Reviewed By",
    "Window Labels",
    "Windows",
]
CHUNK = 2000


@dataclasses.dataclass(frozen=True)
class DetectedSpan:
    """A detection or an event as the exports write it. ``window_id``: the window whose
    labels say what people made of it (an event's peak window)."""

    recording: Recording
    label: Label
    window_id: int
    start_s: float
    end_s: float
    score: float
    started_at: dt.datetime | None
    windows: int


def _spans(run: InferenceRun, filters: DetectionFilters, in_files: bool = False) -> Iterator[DetectedSpan]:
    """The run's detections or events (``filters.unit``) that pass ``filters``, in their
    order (or by recording and start with ``in_files``), streamed."""
    if filters.unit == "events":
        events = filtered_events(run, filters).select_related("recording", "label")
        if in_files:
            events = events.order_by("recording_id", "start_s")
        for event in events.iterator(chunk_size=CHUNK):
            yield DetectedSpan(
                event.recording,
                event.label,
                event.peak_window_id,
                event.start_s,
                event.end_s,
                event.peak_score,
                event.started_at,
                event.windows,
            )
        return
    detections = filtered_detections(run, filters).select_related("window__recording", "label")
    if in_files:
        detections = detections.order_by("window__recording_id", "window__start_s")
    for detection in detections.defer("window__embedding").iterator(chunk_size=CHUNK):
        window = detection.window
        yield DetectedSpan(
            window.recording,
            detection.label,
            window.pk,
            window.start_s,
            window.end_s,
            detection.score,
            window.started_at,
            1,
        )


def _with_labels(spans: Iterator[DetectedSpan]) -> Iterator[tuple[DetectedSpan, list[dict]]]:
    """Each span with every annotator's labels on its window (``labeling.labels_by_window``),
    read a chunk at a time."""
    while chunk := list(itertools.islice(spans, CHUNK)):
        labels = labels_by_window([span.window_id for span in chunk])
        for span in chunk:
            yield span, labels.get(span.window_id, [])


def review_state(values: set[str]) -> str:
    """What people said of a detection: verified (all positive), rejected (all negative),
    unsure, disputed (annotators disagree) or unreviewed."""
    if not values:
        return "unreviewed"
    if len(values) > 1:
        return "disputed"
    (value,) = values
    return {LabelValue.POSITIVE: "verified", LabelValue.NEGATIVE: "rejected"}.get(value, "unsure")


def times_and_review(span: DetectedSpan, zone: ZoneInfo, window_labels: list[dict]) -> tuple[str, ...]:
    """The span's start in the deployment's zone and in UTC (ISO 8601, empty while the
    recording's start is unknown), the zone, the review of the span's label on its
    window, who reviewed it, and every label on that window: the values of
    RAVEN_EXTRA_COLUMNS."""
    started = span.started_at
    mine = [label for label in window_labels if label["label_id"] == span.label.pk]
    return (
        started.astimezone(zone).isoformat(timespec="milliseconds") if started else "",
        started.astimezone(dt.UTC).isoformat(timespec="milliseconds") if started else "",
        zone.key,
        review_state({label["value"] for label in mine}),
        "; ".join(sorted({label["annotator"] for label in mine})),
        "; ".join(sorted(f"{label['label']}: {label['value']} ({label['annotator']})" for label in window_labels)),
    )


def boxed_band(span: DetectedSpan, window_labels: list[dict]) -> tuple[float, float] | None:
    """The band that annotators' positive labels of the span's label, given to boxes on
    its window, cover together (lowest low to highest high); None where none was boxed."""
    bands = [
        (label["low_hz"], label["high_hz"])
        for label in window_labels
        if label["label_id"] == span.label.pk and label["value"] == LabelValue.POSITIVE and label["low_hz"] is not None
    ]
    return (min(low for low, _ in bands), max(high for _, high in bands)) if bands else None


def relative_path(recording: Recording, deployment: Deployment) -> str:
    """A recording's path inside its deployment's folder (server folder or upload folder):
    what an export shows, never where the server keeps it."""
    folder = Path(deployment.server_folder) if deployment.server_folder else upload_folder(deployment.pk)
    path = Path(recording.path)
    return str(path.relative_to(folder)) if folder in path.parents else path.name


def detections_csv(run: InferenceRun, filters: DetectionFilters = DetectionFilters()) -> Iterator[str]:
    """CSV lines of a run's detections (or events) that pass ``filters``, in their order
    (best first unless asked otherwise), streamed. Text cells are neutralised
    (``formula_cells``); paths are relative to the deployment's folder; times are in the
    deployment's zone and in UTC (``times_and_review``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(DETECTION_COLUMNS)
    yield flush()
    deployment = run.deployment
    zone = ZoneInfo(deployment.timezone)
    for span, window_labels in _with_labels(_spans(run, filters)):
        recording = span.recording
        writer.writerow(
            [
                neutral_cell(deployment.name),
                neutral_cell(deployment.site),
                deployment.latitude if deployment.latitude is not None else "",
                deployment.longitude if deployment.longitude is not None else "",
                neutral_cell(recording.filename),
                neutral_cell(relative_path(recording, deployment)),
                f"{span.start_s:.3f}",
                f"{span.end_s:.3f}",
                neutral_cell(span.label.name),
                f"{span.score:.6f}",
                run.classifier.version,
                *map(neutral_cell, times_and_review(span, zone, window_labels)),
                span.windows,
            ]
        )
        yield flush()


SEQUENCE_TABLE_NAME = "all_files.Table.1.selections.txt"


def raven_tables_zip(run: InferenceRun, filters: DetectionFilters = DetectionFilters()) -> bytes:
    """A ZIP with one Raven selection table per recording that has detections (or events)
    passing ``filters``, and one
    table over the deployment's files in time order (``SEQUENCE_TABLE_NAME``) for
    opening them in Raven as one sequence."""
    by_recording: dict = defaultdict(list)
    zone = ZoneInfo(run.deployment.timezone)
    deployment = run.deployment
    # Unboxed, a detection spans what the model heard: the deployment's band, or all of it.
    heard_band = None if deployment.low_hz is None else (deployment.low_hz, deployment.high_hz)
    for span, window_labels in _with_labels(_spans(run, filters, in_files=True)):
        by_recording[span.recording].append(
            Selection(
                span.start_s,
                span.end_s,
                span.label.name,
                score=span.score,
                extra=(*times_and_review(span, zone, window_labels), str(span.windows)),
                band_hz=boxed_band(span, window_labels) or heard_band,
            )
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for recording, selections in by_recording.items():
            stem = PurePath(recording.filename).stem.replace("/", "_")
            archive.writestr(
                f"{stem}.Table.1.selections.txt",
                write_selection_table(selections, _nyquist(recording), RAVEN_EXTRA_COLUMNS),
            )
        if by_recording:
            spans = _sequence_spans(run.deployment)
            rows = [(s, spans[r.pk]) for r, selections in by_recording.items() for s in selections]
            rows.sort(key=lambda row: row[1].sequence_start_s + row[0].start_s)
            nyquist = min(_nyquist(r) for r in by_recording)
            archive.writestr(SEQUENCE_TABLE_NAME, write_file_sequence_table(rows, nyquist, RAVEN_EXTRA_COLUMNS))
    return buffer.getvalue()


def _nyquist(recording) -> float:
    return (recording.sample_rate or 48_000) / 2


def _sequence_spans(deployment) -> dict[int, FileSpan]:
    """Each recording's place in the deployment's files played one after another, in the
    order of their start times (file names where none is known); paths relative to the
    deployment's folder, so that Raven finds them from a table saved there."""
    recordings = sorted(
        deployment.recordings.all(), key=lambda r: (r.started_at is None, r.started_at or 0, r.filename, r.pk)
    )
    spans, elapsed = {}, 0.0
    for recording in recordings:
        spans[recording.pk] = FileSpan(relative_path(recording, deployment), elapsed)
        elapsed += recording.duration_s or 0.0
    return spans
