"""One daemon per workspace root: an exclusive ``flock`` on a lock file inside the root.

The startup sweep treats every session directory it did not open as a crash leftover, so a
second daemon on the same root would delete the first one's live sessions. The lock is taken
before the sweep and held for the daemon's lifetime; the kernel drops it when the process dies
(even on ``kill -9``), so a crash never leaves a stale lock behind. The file lives on the
tmpfs, holds only the holder's pid (for the refusal message), and its name cannot be a session
id (those never start with a dot), so the sweep leaves it alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from appliance.errors import ApplianceError

LOCK_NAME = ".appliance.lock"
_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class WorkspaceLockError(ApplianceError, OSError):
    """The workspace root's lock file cannot be opened (planted symlink, foreign owner...)."""


class WorkspaceInUseError(WorkspaceLockError):
    """Another running appliance daemon holds this workspace root."""


class RootLock:
    """Holds the exclusive lock on ``root`` until :meth:`release` (or the process ends)."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_NAME
        self._descriptor: int | None = None
        try:
            descriptor = os.open(self.path, _FLAGS, 0o600)
        except OSError as error:  # O_NOFOLLOW: a symlink planted as the lock file is refused
            raise WorkspaceLockError(
                f"cannot open the workspace lock {self.path} ({error.strerror}): remove it, or "
                "choose another session.workspace_dir"
            ) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            by = f" (pid {holder})" if holder and holder != os.getpid() else " (this process)"
            raise WorkspaceInUseError(
                f"the workspace {root} is in use by another running appliance daemon{by}: "
                "stop that one first, or give this instance its own --state-dir (the default "
                "workspace follows it) or its own session.workspace_dir"
            ) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        self._descriptor = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock). Idempotent."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def __del__(self) -> None:  # a Workspace dropped without close() must not keep the root
        self.release()


def _read_pid(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
