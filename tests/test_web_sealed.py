"""The pieces under the sealed link: the bundle's cipher and the pinned JavaScript's fetch."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from appliance.config import Config, InferenceConfig
from appliance.web.sealed import SealedFile, seal, unseal
from appliance.web.vendor_js import (
    NOBLE_CIPHERS,
    NpmPackage,
    VendorJsError,
    fetch,
    js_dir,
    load_files,
)

TOKEN = "A" * 43


def test_a_bundle_opens_only_with_its_key_and_token() -> None:
    files = [SealedFile("digital", "id-photo.jpg", b"\xff\xd8\xff" + b"1" * 500),
             SealedFile("sheet", "print-sheet.jpg", b"\xff\xd8\xff" + b"2" * 900)]  # fmt: skip
    sealed = seal(TOKEN, files)
    assert b"\xff\xd8\xff" not in sealed.blob and len(sealed.key) == 32
    opened, secret = unseal(TOKEN, sealed.key, sealed.blob)
    assert opened == {"digital": files[0].data, "sheet": files[1].data}
    assert hashlib.sha256(secret).digest() == sealed.delete_digest
    with pytest.raises(InvalidTag):
        unseal("B" * 43, sealed.key, sealed.blob)  # another link's token
    with pytest.raises(InvalidTag):
        unseal(TOKEN, bytes(32), sealed.blob)
    damaged = bytearray(sealed.blob)
    damaged[40] ^= 1
    with pytest.raises(InvalidTag):
        unseal(TOKEN, sealed.key, bytes(damaged))
    assert seal(TOKEN, files).key != sealed.key  # a fresh key per link


def _fake_package(tmp_path: Path) -> tuple[NpmPackage, bytes]:
    """A tarball shaped like the npm one, with its pins (no network)."""
    contents = {name: f"// {name}\n".encode() for name in NOBLE_CIPHERS.files}
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w:gz") as archive:
        for name, data in contents.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    tarball = stream.getvalue()
    package = replace(
        NOBLE_CIPHERS,
        sha256=hashlib.sha256(tarball).hexdigest(),
        files={n: hashlib.sha256(d).hexdigest() for n, d in contents.items()},
    )
    return package, tarball


def test_the_fetch_verifies_the_tarball_and_every_file(tmp_path: Path) -> None:
    package, tarball = _fake_package(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / package.tarball_name).write_bytes(tarball)
    target = fetch(tmp_path / "js", cache, package=package)
    assert sorted(p.name for p in target.iterdir()) == sorted(NOBLE_CIPHERS.files)
    assert load_files(tmp_path / "js", package) == {
        name: f"// {name}\n".encode() for name in NOBLE_CIPHERS.files
    }
    # An altered file is refused when loaded, and a fetch puts the pinned one back.
    (target / "chacha.js").write_text("steal(location.hash)")
    with pytest.raises(VendorJsError, match="does not match its pinned sha256"):
        load_files(tmp_path / "js", package)
    fetch(tmp_path / "js", cache, package=package)
    assert (target / "chacha.js").read_text() == "// chacha.js\n"


def test_a_missing_library_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(VendorJsError, match="appliance js fetch"):
        load_files(tmp_path)


def test_the_pinned_library_is_installed_beside_the_models(config: Config) -> None:
    """What setup.sh fetched (`appliance js fetch`) verifies against the pins."""
    files = load_files(js_dir(config))
    assert set(files) == set(NOBLE_CIPHERS.files)
    assert b"chacha20poly1305" in files["chacha.js"]
    other = Config(inference=InferenceConfig(models_dir=Path("/opt/appliance/models")))
    assert js_dir(other) == Path("/opt/appliance/js")


def test_doctor_says_whether_the_phone_can_decrypt(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appliance.web.vendor_js import doctor_rows

    [row] = list(doctor_rows(config))
    assert row.status == "ok" and "sha256 verified" in row.detail
    monkeypatch.setenv("APPLIANCE_JS_DIR", str(tmp_path))
    [row] = list(doctor_rows(config))
    assert row.status == "fail" and "appliance js fetch" in row.detail
