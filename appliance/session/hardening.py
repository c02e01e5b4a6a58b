"""Process hardening and the host checks that keep customer images in RAM.

Privacy invariant 1 says no plaintext image reaches flash: not through a core dump, not through
swap, not through a workspace that is really on the SD card. This module closes the first
(:func:`disable_core_dumps`) and inspects the other two (:func:`swap_status`,
:func:`filesystem_of`, :func:`workspace_fs_status`). Each inspection returns a
:class:`CheckResult` row for the ``appliance doctor`` table.

Everything here is Linux-specific and runs only when called: no libc lookup at import time.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from appliance.config import Config
    from appliance.doctor import DoctorRow

TMPFS_MAGIC = 0x01021994
RAMFS_MAGIC = 0x858458F6
RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})

# Only used to name the filesystem in messages; anything not listed is shown by its magic.
_FS_NAMES_BY_MAGIC = {
    TMPFS_MAGIC: "tmpfs",
    RAMFS_MAGIC: "ramfs",
    0xEF53: "ext2/3/4",
    0x794C7630: "overlay",
    0x9123683E: "btrfs",
    0x58465342: "xfs",
    0x4D44: "vfat",
    0x2011BAB0: "exfat",
    0x6969: "nfs",
    0x65735546: "fuse",
}

_PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4

CheckStatus = Literal["ok", "warn", "fail"]

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class HardeningError(ApplianceError, OSError):
    """A process-hardening step (core dumps off) could not be applied."""


@dataclass(frozen=True)
class CheckResult:
    """One row of the ``appliance doctor`` table."""

    name: str
    status: CheckStatus
    detail: str


@dataclass(frozen=True)
class FilesystemInfo:
    """Which filesystem holds a path, and whether it lives only in RAM."""

    path: Path
    fs_type: str  # "tmpfs", "ext2/3/4", ... or "unknown"
    mount_point: Path | None  # from /proc/self/mountinfo; None when it could not be read
    magic: int | None  # statfs f_type; None when statfs was unavailable
    in_ram: bool


@dataclass(frozen=True)
class SwapDevice:
    """One line of /proc/swaps."""

    path: str
    kind: str  # "partition" or "file"
    size_kib: int
    used_kib: int
    priority: int
    is_zram: bool  # compressed RAM: pages never reach the SD card


@dataclass(frozen=True)
class SwapStatus:
    devices: tuple[SwapDevice, ...]
    check: CheckResult


# --- libc -----------------------------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    # CDLL(None) is the running interpreter's own symbol table, which includes libc on glibc and
    # musl; ctypes.util.find_library would spawn ldconfig/gcc subprocesses instead.
    return ctypes.CDLL(None, use_errno=True)


def _statfs_magic(path: Path) -> int | None:
    """f_type of statfs(path), or None when libc has no usable statfs."""
    try:
        statfs = _libc().statfs
    except (OSError, AttributeError):
        return None
    # f_type is the first member and is a C long on both LP64 (arm64) and ILP32 (armhf); the
    # buffer is larger than any struct statfs so the rest can be ignored.
    buffer = ctypes.create_string_buffer(512)
    if statfs(os.fsencode(path), buffer) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(path))
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF


def _unescape_mountinfo(field: str) -> str:
    # The kernel escapes space, tab, newline and backslash in mountinfo and swaps as \ooo octal.
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[Path, str]]:
    """(mount point, filesystem type) for each line of a /proc/<pid>/mountinfo text."""
    mounts: list[tuple[Path, str]] = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        fields = before.split()
        if not separator or len(fields) < 5 or not after.split():
            continue
        mounts.append((Path(_unescape_mountinfo(fields[4])), after.split()[0]))
    return mounts


def _mount_of(path: Path, mountinfo: Path) -> tuple[Path, str] | None:
    try:
        mounts = parse_mountinfo(mountinfo.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None
    best: tuple[Path, str] | None = None
    for mount_point, fs_type in mounts:  # later lines are mounted on top: keep the last match
        contains = path == mount_point or mount_point in path.parents
        if contains and (best is None or len(mount_point.parts) >= len(best[0].parts)):
            best = (mount_point, fs_type)
    return best


def filesystem_of(path: Path, *, mountinfo: Path = Path("/proc/self/mountinfo")) -> FilesystemInfo:
    """Identify the filesystem holding ``path`` (which must exist).

    statfs is authoritative; mountinfo names the mount point for messages and is the fallback
    when statfs cannot be called.
    """
    resolved = path.resolve(strict=True)
    magic = _statfs_magic(resolved)
    mount = _mount_of(resolved, mountinfo)
    mount_point = mount[0] if mount else None
    if magic is not None:
        fs_type = _FS_NAMES_BY_MAGIC.get(magic) or (mount[1] if mount else f"magic {magic:#x}")
        in_ram = magic in (TMPFS_MAGIC, RAMFS_MAGIC)
    else:
        fs_type = mount[1] if mount else "unknown"
        in_ram = fs_type in RAM_FILESYSTEMS
    return FilesystemInfo(resolved, fs_type, mount_point, magic, in_ram)


def _nearest_existing(path: Path) -> Path:
    candidate = path.absolute()
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate


def workspace_fs_status(root: Path) -> CheckResult:
    """Doctor row: is the workspace root (or the directory it will be created in) in RAM?"""
    existing = _nearest_existing(root)
    try:
        info = filesystem_of(existing)
    except OSError as error:
        return CheckResult("workspace", "fail", f"cannot inspect {existing}: {error.strerror}")
    if info.in_ram:
        return CheckResult("workspace", "ok", f"{root} is on {info.fs_type} (RAM only)")
    return CheckResult("workspace", "fail", not_in_ram_message(root, info))


def not_in_ram_message(root: Path, info: FilesystemInfo) -> str:
    where = f" mounted at {info.mount_point}" if info.mount_point else ""
    return (
        f"workspace root {root} is on {info.fs_type}{where}, not tmpfs/ramfs: customer photos "
        "would reach persistent storage. Run under the appliance systemd unit (it mounts a "
        "tmpfs for the workspace), or for a demo set the workspace to a RAM directory such as "
        "/dev/shm/appliance or $XDG_RUNTIME_DIR/appliance"  # noqa: S108 - advice, not a path we use
    )


# --- core dumps -------------------------------------------------------------------------------


def _prctl(option: int, argument: int) -> int:
    result = _libc().prctl(
        ctypes.c_int(option),
        ctypes.c_ulong(argument),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
        ctypes.c_ulong(0),
    )
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return int(result)


def disable_core_dumps() -> None:
    """Stop this process from ever writing a core dump (which would hold decoded photos).

    RLIMIT_CORE 0 stops ordinary dumps; PR_SET_DUMPABLE 0 also stops dumps piped to a handler
    such as systemd-coredump (which ignores RLIMIT_CORE) and blocks ptrace by other users.
    Both are inherited by threads; dumpable resets on execve, so children must do their own.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _prctl(_PR_SET_DUMPABLE, 0)
    except (OSError, ValueError, AttributeError) as error:
        raise HardeningError(f"could not disable core dumps: {error}") from error


def core_dump_status() -> CheckResult:
    """Doctor row for the current process: are core dumps off?"""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    try:
        dumpable: int | None = _prctl(_PR_GET_DUMPABLE, 0)
    except (OSError, AttributeError):
        dumpable = None
    limit_text = f"RLIMIT_CORE soft={soft} hard={hard}, dumpable={dumpable}"
    if soft == 0 and hard == 0 and dumpable == 0:
        return CheckResult("core dumps", "ok", f"disabled ({limit_text})")
    return CheckResult(
        "core dumps",
        "warn",
        f"not fully disabled ({limit_text}); the daemon calls disable_core_dumps() at start "
        "and the systemd unit sets LimitCORE=0",
    )


# --- swap -------------------------------------------------------------------------------------


def parse_proc_swaps(text: str) -> list[SwapDevice]:
    """Parse the text of /proc/swaps (header line, then one device per line)."""
    devices: list[SwapDevice] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5:
            continue
        path = _unescape_mountinfo(fields[0])
        try:
            size, used, priority = int(fields[2]), int(fields[3]), int(fields[4])
        except ValueError:
            continue
        is_zram = os.path.basename(path).startswith("zram")
        devices.append(SwapDevice(path, fields[1], size, used, priority, is_zram))
    return devices


def swap_status(proc_swaps: Path = Path("/proc/swaps")) -> SwapStatus:
    """Active swap devices and a doctor verdict: any swap not on zram can page photos to flash."""
    try:
        devices = tuple(parse_proc_swaps(proc_swaps.read_text(encoding="utf-8")))
    except OSError as error:
        check = CheckResult("swap", "warn", f"cannot read {proc_swaps}: {error.strerror}")
        return SwapStatus((), check)
    on_disk = [device for device in devices if not device.is_zram]
    if on_disk:
        names = ", ".join(device.path for device in on_disk)
        detail = (
            f"swap active on {names} (not zram): customer images could be paged to the SD "
            "card; disable it (dphys-swapfile uninstall / swapoff)"
        )
        return SwapStatus(devices, CheckResult("swap", "warn", detail))
    if devices:
        names = ", ".join(device.path for device in devices)
        return SwapStatus(devices, CheckResult("swap", "ok", f"swap only on zram ({names})"))
    return SwapStatus(devices, CheckResult("swap", "ok", "no swap active"))


# --- doctor -----------------------------------------------------------------------------------


def doctor_rows(config: Config) -> Iterator[DoctorRow]:
    """Rows for ``appliance doctor``: is the workspace in RAM, could swap page photos to flash.

    Core dumps are not listed: the doctor is a separate process, so its own limits say nothing
    about the daemon's (the daemon calls disable_core_dumps; the unit sets LimitCORE=0).
    """
    from appliance.doctor import DoctorRow  # the caller's row type; imported only when it runs

    for check in (workspace_fs_status(config.workspace_dir), swap_status().check):
        yield DoctorRow(check.name, check.status, check.detail)
