"""Running BirdNET's species-range meta-model for a place (see annotations.species_range)."""

from __future__ import annotations

import numpy as np

from annotations.species_range import RANGE_MODEL, WEEKS, birdnet_file, store_table


def compute_range_table(latitude: float, longitude: float) -> np.ndarray:
    """Each BirdNET class's occurrence at the place in each week: float [WEEKS, classes]."""
    import tensorflow as tf  # the worker has it loaded already

    interpreter = tf.lite.Interpreter(model_path=str(birdnet_file(RANGE_MODEL)), num_threads=1)
    interpreter.allocate_tensors()
    given, taken = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    weeks = []
    for week in range(1, WEEKS + 1):
        interpreter.set_tensor(given, np.array([[latitude, longitude, week]], np.float32))
        interpreter.invoke()
        weeks.append(interpreter.get_tensor(taken)[0].copy())
    return np.stack(weeks)


def store_range_table(latitude: float, longitude: float) -> str:
    path = store_table(latitude, longitude, compute_range_table(latitude, longitude))
    return f"species range at {latitude}, {longitude}: {path.name}"
