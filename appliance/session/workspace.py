"""The RAM-only, encrypted workspace where a session's photos live (privacy invariants 1-3).

``Workspace`` owns the root directory, which must be on tmpfs/ramfs, and a byte budget.
``Workspace.open_session`` hands out a ``SessionWorkspace``: one 0700 directory plus one
AES-256-GCM key that exists only in this process's memory. Every blob on disk is
``nonce || ciphertext+tag`` with the session id and blob name as associated data, so a file is
useless without the key, and cannot be swapped between names or sessions undetected. Blob names
are random; a caller never chooses a file name, so a customer's file name cannot reach disk.
A crash loses the key, which makes whatever it left unreadable; ``sweep_leftovers`` then
removes the files at the next start. The running daemon holds an exclusive lock on the root
(``rootlock``), so a second instance refuses to start instead of sweeping live sessions.

Budgets keep customers apart. Each session may hold at most ``session_max_bytes``, and each
open session is guaranteed ``session_reserve_bytes`` (room for one product): the workspace
counts a session as at least its reserve, admits a new session only while a reserve is still
free, and lets a session grow past its reserve only into room no other session was promised.
So a session writing within its reserve never finds the workspace full, and when the shared
room runs out the write that asked for more is refused without touching anyone's photos.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ApplianceError
from appliance.session.hardening import filesystem_of, not_in_ram_message
from appliance.session.rootlock import LOCK_NAME, RootLock

NONCE_BYTES = 12  # 96-bit GCM nonce, fresh and random per blob
TAG_BYTES = 16
BLOB_OVERHEAD = NONCE_BYTES + TAG_BYTES
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_WRITE_FLAGS = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
logger = logging.getLogger(__name__)


class WorkspaceError(ApplianceError, OSError):
    """The workspace cannot be used as asked."""


class WorkspaceNotInRamError(WorkspaceError):
    """The workspace root is not on tmpfs/ramfs, so photos could reach persistent storage."""


class WorkspaceFullError(WorkspaceError):
    """A write would exceed the workspace's shared room (or tmpfs is full): refused, no wipe."""


class SessionBudgetError(WorkspaceFullError):
    """A write would take the session past its own budget: that session caused it."""


class WorkspaceAdmissionError(WorkspaceFullError):
    """No room for a new session: the open ones hold (or are promised) the whole budget."""


class WorkspaceClosedError(ApplianceError, RuntimeError):
    """The session workspace was wiped: its files are gone and its key dropped."""


class BlobNotFoundError(ApplianceError, FileNotFoundError):
    """No blob by that reference in this session."""


class BlobIntegrityError(ApplianceError, ValueError):
    """A blob failed authentication: altered, truncated, or not written by this session."""


@dataclass(frozen=True)
class BlobRef:
    """Handle to one encrypted blob. ``size`` is the plaintext length."""

    session_id: str
    name: str
    size: int

    @property
    def stored_bytes(self) -> int:
        return self.size + BLOB_OVERHEAD


class Workspace:
    """The workspace root: RAM-only directory, shared byte budget, live session workspaces.

    One daemon per root: the constructor takes the root's lock (``WorkspaceInUseError`` when
    another process holds it) and ``close`` releases it; ``sweep_leftovers`` treats every
    directory it did not open as a crash leftover.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        session_max_bytes: int | None = None,
        session_reserve_bytes: int = 0,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"workspace max_bytes must be positive, got {max_bytes}")
        if session_max_bytes is not None and not 0 < session_max_bytes <= max_bytes:
            raise ValueError(
                f"session_max_bytes must be between 1 and max_bytes ({max_bytes}), "
                f"got {session_max_bytes}"
            )
        self.root = root.absolute()
        self.max_bytes = max_bytes
        self.session_max_bytes = session_max_bytes if session_max_bytes is not None else max_bytes
        if not 0 <= session_reserve_bytes <= self.session_max_bytes:
            raise ValueError(
                f"session_reserve_bytes must be between 0 and session_max_bytes "
                f"({self.session_max_bytes}), got {session_reserve_bytes}"
            )
        self.session_reserve_bytes = session_reserve_bytes
        self._lock = threading.Lock()
        self._sessions: dict[str, SessionWorkspace] = {}
        self._used_bytes = 0
        # Sum over open sessions of max(used, reserve): what the sessions hold or were promised.
        self._committed_bytes = 0
        self._prepare_root()
        self._root_lock = RootLock(self.root)
        self._fit_filesystem()

    def _fit_filesystem(self) -> None:
        """A budget larger than the tmpfs would promise reserves the RAM disk cannot hold (a
        1 GB Pi's 25 % tmpfs is 256 MB): the budgets shrink to the filesystem's size."""
        info = os.statvfs(self.root)
        size = info.f_blocks * info.f_frsize
        if 0 < size < self.max_bytes:
            logger.warning(
                "workspace: its tmpfs holds %s, less than session.workspace_max_bytes (%s): "
                "using %s",
                _mib(size),
                _mib(self.max_bytes),
                _mib(size),
            )
            self.max_bytes = size
            self.session_max_bytes = min(self.session_max_bytes, size)
            self.session_reserve_bytes = min(self.session_reserve_bytes, size)

    def close(self) -> None:
        """Release the root's lock (at daemon stop, after every session was wiped)."""
        self._root_lock.release()

    def _prepare_root(self) -> None:
        # Check before creating anything, so a wrong path leaves no directory behind on flash.
        missing: list[Path] = []
        existing = self.root
        while not existing.exists() and existing != existing.parent:
            missing.append(existing)
            existing = existing.parent
        self._require_ram(existing)
        for directory in reversed(missing):  # every directory we create is private, not just root
            with contextlib.suppress(FileExistsError):
                directory.mkdir(mode=0o700)
                os.chmod(directory, 0o700)  # mkdir's mode is masked by umask
        info = os.lstat(self.root)
        if not stat.S_ISDIR(info.st_mode):
            raise WorkspaceError(
                f"workspace root {self.root} is not a directory (a symlink is refused too)"
            )
        if info.st_uid != os.geteuid():
            raise WorkspaceError(
                f"workspace root {self.root} belongs to uid {info.st_uid}, not to this process "
                f"(uid {os.geteuid()}): choose a directory the appliance owns"
            )
        os.chmod(self.root, 0o700)  # an existing root may be 0755
        self._require_ram(self.root)  # a mount could sit on the root itself

    def _require_ram(self, path: Path) -> None:
        info = filesystem_of(path)
        if not info.in_ram:
            raise WorkspaceNotInRamError(not_in_ram_message(self.root, info))

    def open_session(self, session_id: str) -> SessionWorkspace:
        """Create the session's directory and its in-memory key, if a reserve is still free."""
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            raise ValueError("session id must be 16-64 URL-safe characters")
        with self._lock:
            if session_id in self._sessions:
                raise WorkspaceError(f"session {session_id} already has a workspace")
            # A session needs room for at least one byte even when no reserve is configured.
            needed = max(1, self.session_reserve_bytes)
            if self._committed_bytes + needed > self.max_bytes:
                raise WorkspaceAdmissionError(
                    f"no room for another customer session: the {len(self._sessions)} open "
                    f"session(s) hold the workspace's {_mib(self.max_bytes)}; finish one and "
                    "start again"
                )
            path = self.root / session_id
            try:
                path.mkdir(mode=0o700)
            except FileExistsError as error:
                raise WorkspaceError(f"workspace directory {path} already exists") from error
            os.chmod(path, 0o700)
            session = SessionWorkspace(self, session_id, path)
            self._sessions[session_id] = session
            self._committed_bytes += self.session_reserve_bytes
            return session

    def usage(self) -> int:
        """Bytes on disk held by live sessions."""
        with self._lock:
            return self._used_bytes

    def committed(self) -> int:
        """Bytes held or promised (each open session counts as at least its reserve)."""
        with self._lock:
            return self._committed_bytes

    def live_sessions(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def sweep_leftovers(self) -> int:
        """Remove every session directory this process did not open; return how many.

        Called at startup, with the root's lock held: whatever is there was left by a crash,
        and its key died with it.
        """
        with self._lock:
            live = set(self._sessions)
        removed = 0
        with os.scandir(self.root) as entries:
            leftovers = [e for e in entries if e.name not in live and e.name != LOCK_NAME]
        for entry in leftovers:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
                removed += 1
            else:
                os.unlink(entry.path)  # stray files or links are not sessions; remove, don't count
        return removed

    # --- budget bookkeeping, called by SessionWorkspace ----------------------------------------

    def _charge(self, old_used: int, new_used: int) -> int:
        reserve = self.session_reserve_bytes
        return max(new_used, reserve) - max(old_used, reserve)

    def _reserve(self, session_id: str, session_used: int, stored_bytes: int) -> None:
        new_used = session_used + stored_bytes
        with self._lock:
            if new_used > self.session_max_bytes:
                raise SessionBudgetError(
                    f"this session would exceed its budget of {_mib(self.session_max_bytes)} "
                    "(session.session_max_bytes): it ends here (wipe reason workspace_full)",
                )
            growth = self._charge(session_used, new_used)
            if self._committed_bytes + growth > self.max_bytes:
                raise WorkspaceFullError(
                    "the workspace is full (other sessions hold the rest of it): finish a "
                    "session, or discard this one's retakes, and try again",
                )
            self._committed_bytes += growth
            self._used_bytes += stored_bytes

    def _release(self, session_used: int, stored_bytes: int) -> None:
        """``session_used`` is the session's usage including the bytes being released."""
        with self._lock:
            self._committed_bytes += self._charge(session_used, session_used - stored_bytes)
            self._used_bytes -= stored_bytes

    def _forget(self, session: SessionWorkspace, stored_bytes: int) -> None:
        with self._lock:
            if self._sessions.get(session.session_id) is session:
                del self._sessions[session.session_id]
                self._committed_bytes -= max(stored_bytes, self.session_reserve_bytes)
            self._used_bytes -= stored_bytes


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f} MiB"


class SessionWorkspace:
    """One session's encrypted blobs. Made by :meth:`Workspace.open_session`."""

    def __init__(self, workspace: Workspace, session_id: str, path: Path) -> None:
        self.session_id = session_id
        self.path = path
        self._workspace = workspace
        self._lock = threading.RLock()
        self._blobs: dict[str, BlobRef] = {}
        self._used_bytes = 0
        self._files_removed = False
        # Only the AESGCM object keeps the key; the raw bytes go out of scope here. Python cannot
        # promise the key is zeroed in memory (bytes are immutable and OpenSSL keeps a copy);
        # dropping every reference is the best it can do, and the process dies at worst.
        self._aead: AESGCM | None = AESGCM(AESGCM.generate_key(bit_length=256))

    def _associated_data(self, name: str) -> bytes:
        return f"{self.session_id}/{name}".encode("ascii")

    def _require_key(self) -> AESGCM:
        if self._aead is None:
            raise WorkspaceClosedError(
                f"session {self.session_id} was wiped: its workspace can no longer be used"
            )
        return self._aead

    @property
    def closed(self) -> bool:
        return self._aead is None

    def put(self, data: bytes) -> BlobRef:
        """Encrypt ``data`` into a new randomly named blob."""
        with self._lock:
            aead = self._require_key()
            ref = BlobRef(self.session_id, secrets.token_hex(16), len(data))
            self._workspace._reserve(self.session_id, self._used_bytes, ref.stored_bytes)
            nonce = os.urandom(NONCE_BYTES)
            payload = nonce + aead.encrypt(nonce, data, self._associated_data(ref.name))
            try:
                self._write_new_file(self.path / ref.name, payload)
            except BaseException:
                self._workspace._release(self._used_bytes + ref.stored_bytes, ref.stored_bytes)
                raise
            self._blobs[ref.name] = ref
            self._used_bytes += ref.stored_bytes
            return ref

    @staticmethod
    def _write_new_file(path: Path, payload: bytes) -> None:
        # O_EXCL|O_NOFOLLOW: never overwrite or follow a planted file. No fsync: tmpfs is RAM.
        descriptor = os.open(path, _WRITE_FLAGS, 0o600)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(descriptor, view) :]
        except OSError as error:
            os.close(descriptor)
            os.unlink(path)
            if error.errno == errno.ENOSPC:
                raise WorkspaceFullError(
                    "the workspace's RAM disk is full: finish a session and try again"
                ) from error
            raise
        except BaseException:
            os.close(descriptor)
            os.unlink(path)
            raise
        os.close(descriptor)

    def get(self, ref: BlobRef) -> bytes:
        """Decrypt and return a blob's plaintext."""
        with self._lock:
            aead = self._require_key()
            if ref.session_id != self.session_id or ref.name not in self._blobs:
                raise BlobNotFoundError(f"no blob {ref.name} in session {self.session_id}")
            descriptor = os.open(self.path / ref.name, _READ_FLAGS)
            with os.fdopen(descriptor, "rb") as stored:
                payload = stored.read()
            nonce, ciphertext = payload[:NONCE_BYTES], payload[NONCE_BYTES:]
            try:
                return aead.decrypt(nonce, ciphertext, self._associated_data(ref.name))
            except InvalidTag as error:
                raise BlobIntegrityError(
                    f"blob {ref.name} in session {self.session_id} failed authentication"
                ) from error

    def delete(self, ref: BlobRef) -> None:
        """Remove one blob (for example a discarded retake)."""
        with self._lock:
            self._require_key()
            known = self._blobs.pop(ref.name, None) if ref.session_id == self.session_id else None
            if known is None:
                raise BlobNotFoundError(f"no blob {ref.name} in session {self.session_id}")
            os.unlink(self.path / known.name)
            self._workspace._release(self._used_bytes, known.stored_bytes)
            self._used_bytes -= known.stored_bytes

    def list(self) -> list[BlobRef]:
        with self._lock:
            self._require_key()
            return list(self._blobs.values())

    def usage(self) -> int:
        """Bytes on disk (ciphertext, nonces and tags) held by this session."""
        with self._lock:
            return self._used_bytes

    # --- wipe: two steps, so the session manager can run and report each one -------------------

    def remove_files(self) -> None:
        """Delete the session directory and return its bytes to the budget. Idempotent."""
        with self._lock:
            if self._files_removed:
                return
            with contextlib.suppress(FileNotFoundError):  # already gone is the goal
                shutil.rmtree(self.path)
            self._files_removed = True
            self._workspace._forget(self, self._used_bytes)
            self._used_bytes = 0
            self._blobs.clear()

    def drop_key(self) -> None:
        """Forget the key: every later put/get/delete/list raises WorkspaceClosedError."""
        with self._lock:
            self._aead = None

    def wipe(self) -> None:
        """Remove the files and drop the key; the key goes even if removal fails. Idempotent."""
        try:
            self.remove_files()
        finally:
            self.drop_key()
