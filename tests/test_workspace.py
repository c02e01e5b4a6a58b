"""The RAM-only encrypted workspace: refusal off tmpfs, ciphertext only, budgets, wipe, sweep."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from PIL import Image, UnidentifiedImageError

from appliance.errors import ApplianceError
from appliance.session.hardening import filesystem_of
from appliance.session.workspace import (
    BLOB_OVERHEAD,
    NONCE_BYTES,
    BlobIntegrityError,
    BlobNotFoundError,
    Workspace,
    WorkspaceClosedError,
    WorkspaceError,
    WorkspaceFullError,
    WorkspaceNotInRamError,
)

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")
MiB = 1024 * 1024


@pytest.fixture
def shm_root() -> Iterator[Path]:
    """A unique, not yet created workspace root on the real /dev/shm tmpfs."""
    if not SHM.is_dir() or not filesystem_of(SHM).in_ram:
        pytest.skip("/dev/shm is not a tmpfs on this machine")
    root = SHM / f"appliance-test-{uuid.uuid4().hex}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    for candidate in (tmp_path, ROOT):
        if not filesystem_of(candidate).in_ram:
            return candidate
    pytest.skip("no disk-backed directory: both the pytest tmp dir and the repo are in RAM")


def portrait_bytes(fmt: str) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, (64, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


# --- where the workspace may live ------------------------------------------------------------


def test_root_is_created_0700_on_tmpfs(shm_root: Path) -> None:
    Workspace(shm_root / "nested", max_bytes=MiB)
    for path in (shm_root, shm_root / "nested"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_existing_root_is_tightened_to_0700(shm_root: Path) -> None:
    shm_root.mkdir(mode=0o755)
    os.chmod(shm_root, 0o755)
    Workspace(shm_root, max_bytes=MiB)
    assert stat.S_IMODE(shm_root.stat().st_mode) == 0o700


def test_refuses_root_on_disk_and_creates_nothing(disk_dir: Path) -> None:
    root = disk_dir / f"ws-{uuid.uuid4().hex}" / "workspace"
    with pytest.raises(WorkspaceNotInRamError) as caught:
        Workspace(root, max_bytes=MiB)
    message = str(caught.value)
    assert str(root) in message
    assert "tmpfs" in message and "systemd unit" in message
    assert "/dev/shm" in message and "XDG_RUNTIME_DIR" in message
    assert isinstance(caught.value, ApplianceError) and isinstance(caught.value, OSError)
    assert not root.parent.exists()


def test_refuses_existing_root_dir_on_disk(disk_dir: Path) -> None:
    root = disk_dir / f"ws-{uuid.uuid4().hex}"
    root.mkdir()
    try:
        with pytest.raises(WorkspaceNotInRamError):
            Workspace(root, max_bytes=MiB)
    finally:
        root.rmdir()


def test_session_id_cannot_escape_the_root(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=MiB)
    for bad in ("../../etc/passwd-is-long", "short", "a/b" * 8, "x" * 65):
        with pytest.raises(ValueError):
            workspace.open_session(bad)


# --- blobs --------------------------------------------------------------------------------------


def test_put_get_delete_list_usage(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=MiB)
    session = workspace.open_session("session-aaaaaaaaaaaaaaaa")
    assert stat.S_IMODE(session.path.stat().st_mode) == 0o700
    first, second = session.put(b"first photo"), session.put(b"")
    assert session.get(first) == b"first photo" and session.get(second) == b""
    assert {ref.name for ref in session.list()} == {first.name, second.name}
    assert first.name != second.name and len(first.name) == 32
    for ref in (first, second):
        path = session.path / ref.name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.stat().st_size == ref.size + BLOB_OVERHEAD
    assert session.usage() == workspace.usage() == 11 + 2 * BLOB_OVERHEAD
    session.delete(first)
    assert not (session.path / first.name).exists()
    assert session.usage() == workspace.usage() == BLOB_OVERHEAD
    with pytest.raises(BlobNotFoundError):
        session.get(first)
    with pytest.raises(BlobNotFoundError):
        session.delete(first)


def test_every_file_is_ciphertext_not_an_image(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=8 * MiB)
    session = workspace.open_session("session-bbbbbbbbbbbbbbbb")
    originals = [portrait_bytes("JPEG"), portrait_bytes("PNG"), portrait_bytes("JPEG")]
    refs = [session.put(data) for data in originals]
    Image.open(io.BytesIO(originals[0])).verify()  # the plaintext really is an image
    stored = sorted(session.path.iterdir())
    assert len(stored) == 3
    for path in stored:
        content = path.read_bytes()
        with pytest.raises(UnidentifiedImageError):
            Image.open(io.BytesIO(content))
        assert b"JFIF" not in content and b"IHDR" not in content
        assert all(original[20:60] not in content for original in originals)
    # Same plaintext twice: fresh nonces, so different files.
    nonces = {(session.path / ref.name).read_bytes()[:NONCE_BYTES] for ref in refs}
    assert len(nonces) == 3
    assert (session.path / refs[0].name).read_bytes() != (session.path / refs[2].name).read_bytes()
    assert [session.get(ref) for ref in refs] == originals


def test_blob_opens_only_with_its_own_session_key_and_name(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=MiB)
    alice = workspace.open_session("session-alice-aaaaaaaaaa")
    bob = workspace.open_session("session-bob-bbbbbbbbbbbb")
    alice_ref, alice_other = alice.put(b"alice photo"), alice.put(b"alice other")
    bob_ref = bob.put(b"bob photo")

    # Another session's key: Alice's ciphertext placed where Bob expects his blob.
    shutil.copyfile(alice.path / alice_ref.name, bob.path / "copy")
    os.replace(bob.path / "copy", bob.path / bob_ref.name)
    with pytest.raises(BlobIntegrityError):
        bob.get(bob_ref)

    # A random key fails too: the file alone is useless.
    payload = (alice.path / alice_ref.name).read_bytes()
    aad = f"{alice.session_id}/{alice_ref.name}".encode()
    with pytest.raises(InvalidTag):
        AESGCM(AESGCM.generate_key(bit_length=256)).decrypt(payload[:12], payload[12:], aad)

    # Associated data: swapping two of Alice's blobs (same key) is detected.
    first, second = alice.path / alice_ref.name, alice.path / alice_other.name
    first_bytes, second_bytes = first.read_bytes(), second.read_bytes()
    first.write_bytes(second_bytes)
    second.write_bytes(first_bytes)
    with pytest.raises(BlobIntegrityError):
        alice.get(alice_ref)
    first.write_bytes(first_bytes)
    assert alice.get(alice_ref) == b"alice photo"

    # A reference from another session is not found, even with a valid name.
    with pytest.raises(BlobNotFoundError):
        bob.get(alice_ref)


def test_flipped_bit_is_detected(shm_root: Path) -> None:
    session = Workspace(shm_root, max_bytes=MiB).open_session("session-cccccccccccccccc")
    ref = session.put(b"x" * 100)
    path = session.path / ref.name
    content = bytearray(path.read_bytes())
    content[40] ^= 1
    path.write_bytes(bytes(content))
    with pytest.raises(BlobIntegrityError):
        session.get(ref)


# --- budgets ---------------------------------------------------------------------------------


def test_session_budget_full_ends_only_that_session(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=MiB, session_max_bytes=1000)
    greedy = workspace.open_session("session-greedy-gggggggg")
    calm = workspace.open_session("session-calm-cccccccccccc")
    calm_ref = calm.put(b"calm photo")
    greedy.put(b"a" * 500)
    with pytest.raises(WorkspaceFullError) as caught:
        greedy.put(b"b" * 500)
    assert isinstance(caught.value, OSError) and isinstance(caught.value, ApplianceError)
    assert "workspace_full" in str(caught.value)
    assert len(list(greedy.path.iterdir())) == 1  # the refused write left no file
    greedy.wipe()
    assert not greedy.path.exists()
    assert calm.get(calm_ref) == b"calm photo"
    assert calm.get(calm.put(b"c" * 900)) == b"c" * 900
    assert workspace.usage() == calm.usage()


def test_workspace_budget_is_shared(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=2000)
    first = workspace.open_session("session-first-ffffffffff")
    second = workspace.open_session("session-second-ssssssss")
    first.put(b"a" * 1500)
    with pytest.raises(WorkspaceFullError):
        second.put(b"b" * 600)
    assert second.list() == []
    first.wipe()
    assert workspace.usage() == 0
    second.put(b"b" * 600)


def test_invalid_budgets_are_refused(shm_root: Path) -> None:
    with pytest.raises(ValueError):
        Workspace(shm_root, max_bytes=0)
    with pytest.raises(ValueError):
        Workspace(shm_root, max_bytes=100, session_max_bytes=200)


# --- wipe and sweep -----------------------------------------------------------------------------


def test_wipe_removes_files_and_makes_session_unusable(shm_root: Path) -> None:
    workspace = Workspace(shm_root, max_bytes=MiB)
    session = workspace.open_session("session-dddddddddddddddd")
    ref = session.put(b"photo")
    session.wipe()
    assert not session.path.exists()
    assert session.closed
    assert workspace.usage() == 0 and workspace.live_sessions() == []
    for action in (lambda: session.get(ref), lambda: session.put(b"x"), session.list):
        with pytest.raises(WorkspaceClosedError, match="wiped"):
            action()
    session.wipe()  # idempotent


def test_key_is_dropped_even_if_file_removal_fails(
    shm_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = Workspace(shm_root, max_bytes=MiB).open_session("session-eeeeeeeeeeeeeeee")
    session.put(b"photo")

    def refuse(path: object) -> None:
        raise PermissionError("simulated")

    monkeypatch.setattr(shutil, "rmtree", refuse)
    with pytest.raises(PermissionError):
        session.wipe()
    assert session.closed
    monkeypatch.undo()
    session.remove_files()
    assert not session.path.exists()


def test_sweep_removes_leftovers_but_not_live_sessions(shm_root: Path) -> None:
    first = Workspace(shm_root, max_bytes=MiB)
    leftover = first.open_session("session-leftover-llllll")
    leftover.put(b"left behind")
    (shm_root / "stray-file").write_bytes(b"")
    first.close()  # as at a crash: the kernel drops a dead process's lock
    second = Workspace(shm_root, max_bytes=MiB)  # as after a restart
    live = second.open_session("session-live-llllllllll")
    assert second.sweep_leftovers() == 1
    assert not leftover.path.exists() and not (shm_root / "stray-file").exists()
    assert live.path.exists()
    assert second.sweep_leftovers() == 0


def test_symlinked_root_is_refused(shm_root: Path) -> None:
    real = shm_root / "real"
    real.mkdir(parents=True)
    (shm_root / "link").symlink_to(real)
    with pytest.raises(WorkspaceError, match="symlink"):
        Workspace(shm_root / "link", max_bytes=MiB)


_SMALL_TMPFS = """
import sys
from pathlib import Path
from appliance.session.workspace import Workspace, WorkspaceAdmissionError
ws = Workspace(Path(sys.argv[1]) / "ws", max_bytes=512 << 20, session_max_bytes=128 << 20,
               session_reserve_bytes=3 << 20)
print(ws.max_bytes, ws.session_max_bytes, ws.session_reserve_bytes)
ws.open_session("session-one-oooooooooooo")
ws.open_session("session-two-tttttttttttt")
try:
    ws.open_session("session-three-hhhhhhhhhh")  # 3 x 3 MiB of reserve do not fit in 8 MiB
except WorkspaceAdmissionError:
    print("refused")
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_budgets_shrink_to_a_smaller_tmpfs(tmp_path: Path) -> None:
    # A private mount namespace with its own 8 MiB tmpfs (the host's mounts are untouched).
    mountpoint = tmp_path / "ram"
    mountpoint.mkdir()
    script = (
        f"mount -t tmpfs -o size=8m tmpfs {mountpoint} && "
        f"exec {sys.executable} -c '{_SMALL_TMPFS}' {mountpoint}"
    )
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    sizes, verdict = done.stdout.split("\n")[:2]
    assert [int(n) for n in sizes.split()] == [8 << 20, 8 << 20, 3 << 20]
    assert verdict == "refused"
    assert "its tmpfs holds 8 MiB, less than session.workspace_max_bytes" in done.stderr


def test_a_planted_lock_symlink_is_refused(shm_root: Path) -> None:
    from appliance.session.rootlock import LOCK_NAME, WorkspaceLockError

    shm_root.mkdir(mode=0o700)
    (shm_root / LOCK_NAME).symlink_to("/etc/passwd")
    with pytest.raises(WorkspaceLockError, match="cannot open the workspace lock"):
        Workspace(shm_root, max_bytes=MiB)
