"""The third-party JavaScript the customer's phone runs: @noble/ciphers, pinned, never committed.

The download page decrypts the customer's photos on the phone (see docs/customer-download.md).
WebCrypto's ``crypto.subtle`` exists only in a secure context, and the page is plain HTTP, so
the cipher is @noble/ciphers (Paul Miller; audited by Cure53), whose four ES-module files are
served as they are published, without a bundler. ``appliance js fetch`` gets the pinned tarball
from the npm registry (with ``npm pack`` when npm is installed, else the registry's tarball URL),
checks the tarball's sha256, extracts only the listed files and checks each one's sha256 before
moving it into place; the server re-checks every file when it loads them.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.config import Config, default_cache_dir
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from appliance.doctor import DoctorRow

FIX_COMMAND = "appliance js fetch"


class VendorJsError(ApplianceError, RuntimeError):
    """The pinned JavaScript is missing, does not verify, or could not be fetched."""


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    sha256: str  # of the registry tarball
    files: dict[str, str]  # path inside the tarball (under package/) -> sha256

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def tarball_name(self) -> str:
        return f"{self.name.lstrip('@').replace('/', '-')}-{self.version}.tgz"

    @property
    def tarball_url(self) -> str:
        return f"https://registry.npmjs.org/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"

    @property
    def directory_name(self) -> str:
        return self.tarball_name.removesuffix(".tgz")


NOBLE_CIPHERS = NpmPackage(
    name="@noble/ciphers",
    version="2.4.0",
    sha256="4a398bcc280c8742d474f9162f6d3c153e52ab1078e8ab592b4720410fb3c3e9",
    files={
        "chacha.js": "5f1c00575e227b75163f4bac50b79442dec50ee3047c46c18887808ba8af0a69",
        "_arx.js": "ead142ba410404c0698bb80e0d6f77780799bb77a9e3b098cf0f9fca1c486e37",
        "_poly1305.js": "5d2afd73b40dbafb7b6740c6e6388e7123c79a4e57306861b28c5734925fa84d",
        "utils.js": "a443ec1f60d1aaa25d1b7d8c102d33c0e8e6d683ada1ad17be9c32e69170ff95",
        "LICENSE": "f36671a5487c9c5050efacb58011c37c24c55a889803cb036cf9d9a6347c1e2d",
    },
)


def js_dir(config: Config) -> Path:
    """Beside the models (``~/.local/share/appliance/js``, ``/opt/appliance/js`` in the SD
    image); ``APPLIANCE_JS_DIR`` overrides."""
    override = os.environ.get("APPLIANCE_JS_DIR")
    return Path(override) if override else config.inference.models_dir.parent / "js"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_files(directory: Path, package: NpmPackage = NOBLE_CIPHERS) -> dict[str, bytes]:
    """Every pinned file of ``package`` from ``directory``, each verified; raises if not."""
    root = directory / package.directory_name
    loaded: dict[str, bytes] = {}
    for name, digest in package.files.items():
        try:
            data = (root / name).read_bytes()
        except OSError:
            raise VendorJsError(
                f"{root / name} is missing: run `{FIX_COMMAND}` (it fetches {package.spec})"
            ) from None
        if _sha256(data) != digest:
            raise VendorJsError(
                f"{root / name} does not match its pinned sha256: run `{FIX_COMMAND} --force`"
            )
        loaded[name] = data
    return loaded


def _tarball(package: NpmPackage, cache: Path) -> bytes:
    cached = cache / package.tarball_name
    if cached.is_file() and _sha256(cached.read_bytes()) == package.sha256:
        return cached.read_bytes()
    cache.mkdir(parents=True, exist_ok=True)
    npm = shutil.which("npm")
    if npm:
        subprocess.run(
            [npm, "pack", package.spec, "--pack-destination", str(cache), "--silent"],
            check=True,
            timeout=300,
            capture_output=True,
        )
        data = cached.read_bytes()
    else:
        with urllib.request.urlopen(package.tarball_url, timeout=60) as response:  # noqa: S310
            data = response.read()
        cached.write_bytes(data)
    if _sha256(data) != package.sha256:
        cached.unlink(missing_ok=True)
        raise VendorJsError(f"{package.spec} from the registry does not match its pinned sha256")
    return data


def fetch(directory: Path, cache: Path | None = None, *, force: bool = False,
          package: NpmPackage = NOBLE_CIPHERS) -> Path:  # fmt: skip
    """Fetch, verify and install ``package``'s pinned files under ``directory``; a no-op when
    they already verify (unless ``force``). Returns the package's directory."""
    target = directory / package.directory_name
    if not force:
        try:
            load_files(directory, package)
            return target
        except VendorJsError:
            pass
    try:
        data = _tarball(package, cache or default_cache_dir())
    except (OSError, subprocess.SubprocessError) as error:
        raise VendorJsError(
            f"could not fetch {package.spec} from the npm registry ({type(error).__name__})"
        ) from None
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".js-", dir=directory))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for name, digest in package.files.items():
                member = archive.extractfile(f"package/{name}")
                content = member.read() if member is not None else b""
                if _sha256(content) != digest:
                    raise VendorJsError(f"{package.spec}: {name} does not match its pinned sha256")
                (staging / name).write_bytes(content)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def doctor_rows(config: Config) -> Iterator[DoctorRow]:
    """`appliance doctor`: whether the customer's download page can decrypt on a phone."""
    from appliance.doctor import DoctorRow

    directory = js_dir(config)
    try:
        load_files(directory)
    except VendorJsError as error:
        yield DoctorRow("customer page script", "fail", str(error))
        return
    detail = f"{NOBLE_CIPHERS.spec}, sha256 verified ({directory / NOBLE_CIPHERS.directory_name})"
    yield DoctorRow("customer page script", "ok", detail)
