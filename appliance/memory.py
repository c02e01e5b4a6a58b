"""Reuse freed image buffers instead of returning them to the kernel after every stage.

Each pipeline stage allocates a few megabytes of pixels and frees them a moment later. With
glibc's default settings a block that size is served by mmap and unmapped on free, so the next
stage takes fresh pages: one page fault per 4 KB, and the kernel zeroes each page first. On the
development VM that cost more than the computation in some stages (a 2.6 MB float32 buffer:
about 4 ms to fault in, 0.2 ms to compute). Raising malloc's mmap threshold keeps such blocks
in the heap, where the next stage reuses them; the trim threshold keeps that much free memory
mapped instead of trimming it after each product.

Nothing here changes what is kept: freed buffers hold no more than glibc's own dynamic
threshold already keeps in the heap, the daemon's memory is never swapped (no swap on the
appliance) and core dumps are off (systemd/). Where the C library is not glibc, this does
nothing.
"""

from __future__ import annotations

import ctypes
import platform
import threading

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX):
# a 12 MP RGB frame (36 MB) still gets its own mapping and goes back to the kernel when freed.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20

_done: bool | None = None
_lock = threading.Lock()


def keep_freed_buffers() -> bool:
    """Set the thresholds once per process; True when glibc accepted them."""
    global _done
    with _lock:
        if _done is None:
            _done = False
            if platform.libc_ver()[0] == "glibc":
                try:
                    mallopt = ctypes.CDLL("libc.so.6").mallopt
                except (OSError, AttributeError):
                    return False
                mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                mallopt.restype = ctypes.c_int
                _done = bool(
                    mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
                )
        return _done
