"""A watched folder on tmpfs: photos dropped into it go into the session, plaintext gone at once.

A tethering program or a share on the studio LAN writes photos into the folder. Each poll
looks at the regular files in it (not in subfolders). A file is taken when its size and
mtime were the same on two polls in a row and no process holds it open for writing; then it
is read into memory, unlinked, and handed to ``deliver(data)`` (the session layer encrypts
it into the workspace). A file that is not an image (JPEG, PNG, WebP, HEIC/HEIF, TIFF by
magic bytes) or is over the size limit is deleted unread and reported to
``on_refused(reason, size)``, which never receives the file's name: names typed by users
stay out of the audit log.

The folder must be on tmpfs/ramfs; anything else is refused at start, since the plaintext
waits there until it is taken.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from appliance.devices.config import HotFolderConfig
from appliance.errors import ApplianceError
from appliance.session.hardening import filesystem_of

logger = logging.getLogger(__name__)

Deliver = Callable[[bytes], None]
OnRefused = Callable[[str, int], None]

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})


class HotFolderError(ApplianceError, OSError):
    """The hot folder cannot be watched."""


class HotFolderNotInRamError(HotFolderError):
    """The hot folder is not on tmpfs/ramfs, so dropped photos would reach persistent storage."""


def image_kind(head: bytes) -> str | None:
    """ "jpeg", "png", "webp", "heif" or "tiff" from a file's first 12 bytes, else None."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "heif"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def open_for_writing(path: Path, proc: Path = Path("/proc")) -> bool:
    """Whether any process we may inspect has ``path`` open for writing.

    Reads /proc/<pid>/fd and fdinfo; processes of other users are invisible unless we are
    root, so this complements the size/mtime check rather than replacing it.
    """
    try:
        target = path.stat()
    except OSError:
        return False
    try:
        pids = [entry for entry in os.listdir(proc) if entry.isdigit()]
    except OSError:
        return False
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                info = os.stat(fd_dir / fd)
                if (info.st_dev, info.st_ino) != (target.st_dev, target.st_ino):
                    continue
                flags_line = next(
                    line
                    for line in (proc / pid / "fdinfo" / fd).read_text().splitlines()
                    if line.startswith("flags:")
                )
            except (OSError, StopIteration):
                continue
            if int(flags_line.split()[1], 8) & (os.O_WRONLY | os.O_RDWR):
                return True
    return False


@dataclass(frozen=True)
class PollResult:
    delivered: int = 0
    refused: int = 0
    waiting: int = 0  # files seen but not complete yet


class HotFolder:
    def __init__(
        self,
        path: Path,
        deliver: Deliver,
        on_refused: OnRefused,
        *,
        max_bytes: int,
        poll_interval_s: float = 0.5,
        check_writers: bool = True,
    ) -> None:
        self.path = path
        self._deliver = deliver
        self._on_refused = on_refused
        self._max_bytes = max_bytes
        self._interval = poll_interval_s
        self._check_writers = check_writers
        # name -> (size, mtime_ns, inode) seen at the previous poll
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prepare()

    @classmethod
    def from_config(
        cls, config: HotFolderConfig, deliver: Deliver, on_refused: OnRefused
    ) -> HotFolder:
        return cls(
            config.path,
            deliver,
            on_refused,
            max_bytes=config.max_bytes,
            poll_interval_s=config.poll_interval_s,
            check_writers=config.check_writers,
        )

    def _prepare(self) -> None:
        try:
            self.path.mkdir(mode=0o770, parents=True, exist_ok=True)
            info = filesystem_of(self.path)
        except OSError as error:
            raise HotFolderError(
                f"cannot use the hot folder {self.path}: {error.strerror}"
            ) from error
        if not self.path.is_dir():
            raise HotFolderError(f"the hot folder {self.path} is not a directory")
        if not info.in_ram:
            where = f" mounted at {info.mount_point}" if info.mount_point else ""
            raise HotFolderNotInRamError(
                f"the hot folder {self.path} is on {info.fs_type}{where}, not tmpfs: dropped "
                "photos would reach persistent storage. Point hotfolder.path at a tmpfs such "
                "as /run/appliance/hotfolder or /dev/shm/appliance-hotfolder",
            )

    # --- polling -------------------------------------------------------------------------------

    def poll(self) -> PollResult:
        """One pass over the folder; safe to call from tests instead of the thread."""
        with self._poll_lock:
            return self._poll()

    def _poll(self) -> PollResult:
        delivered = refused = waiting = 0
        seen: dict[str, tuple[int, int, int]] = {}
        try:
            entries = list(os.scandir(self.path))
        except OSError as error:
            logger.error("cannot list the hot folder: %s", error.strerror)
            return PollResult()
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            if stat.S_ISDIR(info.st_mode):
                continue  # only files at the top level are taken
            if not stat.S_ISREG(info.st_mode):
                self._refuse(entry.path, "not a regular file", 0)
                refused += 1
                continue
            signature = (info.st_size, info.st_mtime_ns, info.st_ino)
            if info.st_size > self._max_bytes:
                self._refuse(entry.path, f"larger than {self._max_bytes} bytes", info.st_size)
                refused += 1
                continue
            if self._seen.get(entry.name) != signature or info.st_size == 0:
                seen[entry.name] = signature  # new or still growing: look again next poll
                waiting += 1
                continue
            if self._check_writers and open_for_writing(Path(entry.path)):
                seen[entry.name] = signature
                waiting += 1
                continue
            outcome = self._take(Path(entry.path), signature)
            if outcome == "delivered":
                delivered += 1
            elif outcome == "refused":
                refused += 1
            elif outcome == "changed":
                waiting += 1
        self._seen = seen
        return PollResult(delivered, refused, waiting)

    def _take(self, path: Path, signature: tuple[int, int, int]) -> str:
        """Read, unlink, then validate and deliver; returns what happened."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError:
            return "gone"
        try:
            info = os.fstat(fd)
            if (info.st_size, info.st_mtime_ns, info.st_ino) != signature:
                return "changed"  # rewritten since the last poll
            chunks = []
            remaining = self._max_bytes + 1  # never read more than the limit
            while remaining > 0:
                chunk = os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        finally:
            os.close(fd)
        _unlink(path)  # the plaintext goes now, whatever happens next
        data = b"".join(chunks)
        if len(data) > self._max_bytes:
            self._report(f"larger than {self._max_bytes} bytes", len(data))
            return "refused"
        if image_kind(data[:12]) is None:
            self._report("not an image (JPEG, PNG, WebP, HEIC or TIFF)", len(data))
            return "refused"
        try:
            self._deliver(data)
        except Exception as error:
            # Type only: the message could name the session or the customer.
            logger.error("hot folder delivery failed: %s", type(error).__name__)
            self._report(f"delivery failed ({type(error).__name__})", len(data))
            return "refused"
        return "delivered"

    def _refuse(self, path: str, reason: str, size: int) -> None:
        _unlink(Path(path))
        self._report(reason, size)

    def _report(self, reason: str, size: int) -> None:
        try:
            self._on_refused(reason, size)
        except Exception as error:
            logger.error("hot folder refusal callback failed: %s", type(error).__name__)

    # --- background thread -------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="hotfolder", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll()
            except Exception:
                logger.exception("hot folder poll failed")

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> HotFolder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        logger.error("cannot delete a file in the hot folder: %s", error.strerror)
