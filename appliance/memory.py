"""Reuse freed image buffers instead of returning them to the kernel after every stage.

Each pipeline stage allocates a few megabytes of pixels and frees them a moment later. With
glibc's default settings a block that size is served by mmap and unmapped on free, so the next
stage takes fresh pages: one page fault per 4 KB, and the kernel zeroes each page first. On the
development VM that cost more than the computation in some stages (a 2.6 MB float32 buffer:
about 4 ms to fault in, 0.2 ms to compute). Raising malloc's mmap threshold keeps such blocks
in the heap, where the next stage reuses them; the trim threshold keeps that much free memory
mapped instead of trimming it after each product.

The price is resident memory: up to TRIM_THRESHOLD of freed buffers stays mapped. The daemon
gives it back when it goes idle (`IdleTrimmer`: malloc_trim a few seconds after the last
product), so a customer's retakes in quick succession run at full speed and the idle appliance
stays small beside CUPS on a 1 GB Pi. All threads share one malloc arena: malloc_trim shrinks
only the main arena's free top, so a worker thread's own arena would keep its peak for good
(measured with `benchmarks/bench_daemon.py` after a 12 MP product: 198 MB idle with per-thread
arenas, 147 MB with one).

Nothing here changes what is kept: freed buffers hold no more than glibc's own dynamic
threshold already keeps in the heap, the daemon's memory is never swapped (no swap on the
appliance) and core dumps are off (systemd/). Where the C library is not glibc, this does
nothing.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import threading
import time
from pathlib import Path

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_PERTURB = -6
_M_ARENA_MAX = -8
# What freed memory is overwritten with (any byte but 0, which turns the feature off).
SCRUB_BYTE = 0xA5
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX):
# a 12 MP RGB frame (36 MB) still gets its own mapping and goes back to the kernel when freed.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20

_done: bool | None = None
_lock = threading.Lock()
_last_use = 0.0  # time.monotonic() of the last mark_busy()
logger = logging.getLogger(__name__)


def _libc() -> ctypes.CDLL | None:
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def keep_freed_buffers() -> bool:
    """Set the thresholds once per process; True when glibc accepted them."""
    global _done
    with _lock:
        if _done is None:
            _done = False
            mallopt = getattr(_libc(), "mallopt", None)
            if mallopt is not None:
                mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                mallopt.restype = ctypes.c_int
                _done = bool(
                    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                    # One arena for every thread: glibc trims only the main arena's free top,
                    # so memory a worker thread freed would otherwise stay resident for good.
                    and mallopt(_M_ARENA_MAX, 1)
                )
        return _done


def scrub_freed_memory() -> bool:
    """Have glibc overwrite every heap block as it is freed (mallopt M_PERTURB); True if set.

    Python's ``bytes``, Werkzeug's request body, cryptography's decrypted plaintext, Pillow's,
    NumPy's and OpenCV's buffers and OpenSSL's record buffers are all freed without being
    cleared, and glibc keeps freed blocks in the heap with their contents: right after a wipe
    most sampled blocks of a session's photos were still there (16-64 copies each). With this,
    a block's contents go the moment it is freed, whoever made the copy, so there is no need to
    chase every copy through the request path. What it does not reach, and how long that lives:
    blocks of at most 1 KB that glibc caches per thread (tcache) and Python's small-object
    pools (at most 512 bytes) keep their bytes until reused: small pieces only, such as the
    JPEG marker segments Pillow reads one by one or a short last read of a request body; the
    interpreters' tensor arenas are never freed (the wipe overwrites them, see
    InferenceService.forget); blocks still referenced live as long as their owner (a keep-alive
    connection's buffers, until reused or closed; the scan test keeps one open and finds
    nothing). Blocks over the mmap threshold go back to the kernel when freed.
    Cost: each malloc and free also writes the block once (benchmarks/RESULTS.md: 2-7 %).
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_PERTURB, SCRUB_BYTE))


def release_free_memory() -> bool:
    """Give every freed heap page back to the kernel now (glibc's malloc_trim)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def mark_busy() -> None:
    """Called at the start and end of each product: the idle clock starts from here."""
    global _last_use
    _last_use = time.monotonic()


class IdleTrimmer:
    """Releases freed memory once the pipeline has been idle for `idle_s` seconds."""

    def __init__(self, idle_s: float = 15.0, interval_s: float = 5.0) -> None:
        self.idle_s = idle_s
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trimmed_at = -1.0  # the _last_use value the last trim followed

    def check(self) -> bool:
        """Trim if idle long enough and not yet trimmed since the last use; True if it did."""
        used = _last_use
        if used == self._trimmed_at or time.monotonic() - used < self.idle_s:
            return False
        self._trimmed_at = used
        return release_free_memory()

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval_s):
                try:
                    self.check()
                except Exception as error:  # never let housekeeping take the daemon down
                    logger.error("memory trim failed (%s)", type(error).__name__)

        self._thread = threading.Thread(target=run, name="memory-trim", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None


@functools.cache
def memory_limit_bytes() -> int:
    """What this process may use: its cgroup's memory limit (systemd's MemoryMax=, a
    container's limit) when there is one, else the machine's RAM. Read once."""
    limits = [_physical_memory()]
    limits += [value for value in (_cgroup_limit(),) if value is not None]
    return min(limits)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 1 << 30  # unknown: plan for the smallest supported board


def _cgroup_limit() -> int | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    candidates: list[Path] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # cgroup v2
            candidates.append(Path("/sys/fs/cgroup", relative, "memory.max"))
        elif "memory" in controllers.split(","):  # cgroup v1
            candidates.append(Path("/sys/fs/cgroup/memory", relative, "memory.limit_in_bytes"))
    found = []
    for candidate in candidates:
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            found.append(int(text))  # "max" (v2) means no limit; v1 says a huge number
    return min(found) if found else None
