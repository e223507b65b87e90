"""Exports that work outside the app: classifiers as files, detections as tables.

Two classifier formats:

- ``perch-agile-classifier`` (ours, versioned). JSON with ``weights`` [D][L] and
  ``bias`` [L] as float32 values written exactly, ``labels`` in column order, the
  embedding model and framing it belongs to, and held-out metrics. Apply it with numpy
  alone::

      c = json.load(open("classifier.json"))
      w = np.asarray(c["weights"], np.float32); b = np.asarray(c["bias"], np.float32)
      probability = 1 / (1 + np.exp(-(embeddings.astype(np.float32) @ w + b)))

- perch-hoplite's ``LinearClassifier`` JSON (``model_config``, ``classes``, base64
  float32 ``beta`` [D x L] and ``beta_bias``): load it with
  ``perch_hoplite.agile.classifier.LinearClassifier.load(path)``; its call returns
  logits, to which the same sigmoid applies.
"""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterator

from annotations.models import Classifier, Detection, InferenceRun
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


def perch_agile_classifier(classifier: Classifier) -> dict:
    weights, bias = classifier_arrays(classifier)
    outputs = classifier.outputs.order_by("index").select_related("label")
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "probe_type": classifier.probe_type,
        "score": "probability = 1 / (1 + exp(-(embedding @ weights + bias)))",
        "classifier_version": classifier.version,
        "project": classifier.project.name,
        "created_at": classifier.created_at.isoformat(),
        "embedding_model": _model_config(classifier),
        "labels": [output.label.name for output in outputs],
        # float(np.float32) is exact in JSON, so the file reproduces the app's scores.
        "weights": [[float(v) for v in row] for row in weights],
        "bias": [float(v) for v in bias],
        "metrics": {
            output.label.name: {
                "train_positives": output.train_positives,
                "train_negatives": output.train_negatives,
                "eval_positives": output.eval_positives,
                "eval_negatives": output.eval_negatives,
                "roc_auc": output.roc_auc,
                "average_precision": output.average_precision,
            }
            for output in outputs
        },
    }


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
]


def detections_csv(run: InferenceRun) -> Iterator[str]:
    """CSV lines of a run's detections, best first, streamed."""
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
    detections = (
        Detection.objects.filter(run=run)
        .select_related("window__recording", "label")
        .defer("window__embedding")
        .order_by("-score", "window_id")
    )
    for detection in detections.iterator(chunk_size=2000):
        recording = detection.window.recording
        writer.writerow(
            [
                deployment.name,
                deployment.site,
                deployment.latitude if deployment.latitude is not None else "",
                deployment.longitude if deployment.longitude is not None else "",
                recording.filename,
                recording.path,
                f"{detection.window.start_s:.3f}",
                f"{detection.window.end_s:.3f}",
                detection.label.name,
                f"{detection.score:.6f}",
                run.classifier.version,
            ]
        )
        yield flush()
