"""Process hardening and host inspection: core dumps, swap, tmpfs detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.session import hardening
from appliance.session.hardening import (
    RAMFS_MAGIC,
    TMPFS_MAGIC,
    filesystem_of,
    parse_mountinfo,
    parse_proc_swaps,
    swap_status,
    workspace_fs_status,
)

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")

SWAPS_HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    if not SHM.is_dir() or not filesystem_of(SHM).in_ram:
        pytest.skip("/dev/shm is not a tmpfs on this machine")
    path = SHM / f"appliance-test-{uuid.uuid4().hex}"
    path.mkdir(mode=0o700)
    yield path
    path.rmdir()


@pytest.fixture
def disk_dir(tmp_path: Path) -> Path:
    """A directory on persistent storage (pytest's tmp dir or, failing that, the repo)."""
    for candidate in (tmp_path, ROOT):
        if not filesystem_of(candidate).in_ram:
            return candidate
    pytest.skip("no disk-backed directory: both the pytest tmp dir and the repo are in RAM")


# --- swap ---------------------------------------------------------------------------------


def test_swap_file_on_sd_card_warns_with_fix() -> None:
    text = SWAPS_HEADER + (
        "/var/swap                               file\t\t102396\t\t0\t\t-2\n"
        "/dev/zram0                              partition\t\t1020332\t\t512\t\t100\n"
    )
    devices = parse_proc_swaps(text)
    assert [(d.path, d.is_zram) for d in devices] == [("/var/swap", False), ("/dev/zram0", True)]
    assert devices[0].kind == "file" and devices[0].size_kib == 102396
    assert devices[1].used_kib == 512 and devices[1].priority == 100


def test_swap_status_verdicts(tmp_path: Path) -> None:
    swaps = tmp_path / "swaps"
    swaps.write_text(SWAPS_HEADER + "/var/swap file 102396 0 -2\n/dev/zram0 partition 10 0 100\n")
    status = swap_status(swaps)
    assert status.check.status == "warn"
    assert "swap active on /var/swap (not zram)" in status.check.detail
    assert "dphys-swapfile uninstall" in status.check.detail and "swapoff" in status.check.detail
    assert "zram0" not in status.check.detail

    swaps.write_text(SWAPS_HEADER + "/dev/zram0 partition 1020332 0 100\n")
    assert swap_status(swaps).check.status == "ok"
    assert "zram" in swap_status(swaps).check.detail

    swaps.write_text(SWAPS_HEADER)
    assert swap_status(swaps).check == hardening.CheckResult("swap", "ok", "no swap active")


def test_swap_path_with_space_is_unescaped() -> None:
    devices = parse_proc_swaps(SWAPS_HEADER + "/mnt/my\\040swap file 10 0 -2\n")
    assert devices[0].path == "/mnt/my swap"


def test_swap_status_of_this_machine_runs() -> None:
    status = swap_status()
    assert status.check.status in ("ok", "warn")
    assert all(device.path for device in status.devices)


def test_unreadable_swaps_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    assert swap_status(tmp_path / "missing").check.status == "warn"


# --- filesystems --------------------------------------------------------------------------------


def test_dev_shm_is_tmpfs_by_statfs(shm_dir: Path) -> None:
    info = filesystem_of(shm_dir)
    assert info.magic in (TMPFS_MAGIC, RAMFS_MAGIC)
    assert info.in_ram and info.fs_type in ("tmpfs", "ramfs")
    assert info.mount_point is not None


def test_disk_dir_is_not_in_ram(disk_dir: Path) -> None:
    info = filesystem_of(disk_dir)
    assert not info.in_ram
    assert info.magic not in (TMPFS_MAGIC, RAMFS_MAGIC)


def test_mountinfo_fallback_agrees_with_statfs(
    shm_dir: Path, disk_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hardening, "_statfs_magic", lambda path: None)
    assert filesystem_of(shm_dir).in_ram
    assert filesystem_of(shm_dir).magic is None
    assert not filesystem_of(disk_dir).in_ram


def test_parse_mountinfo_unescapes_and_reads_type() -> None:
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "25 24 0:23 / /run/my\\040dir rw,relatime shared:3 - tmpfs tmpfs rw,size=10k\n"
        "garbage\n"
    )
    assert parse_mountinfo(text) == [(Path("/proc"), "proc"), (Path("/run/my dir"), "tmpfs")]


def test_workspace_fs_status_rows(shm_dir: Path, disk_dir: Path) -> None:
    assert workspace_fs_status(shm_dir / "not-yet-created").status == "ok"
    row = workspace_fs_status(disk_dir / "workspace")
    assert row.status == "fail"
    assert str(disk_dir / "workspace") in row.detail
    assert "systemd unit" in row.detail and "/dev/shm" in row.detail
    assert not (disk_dir / "workspace").exists()


def test_doctor_rows_use_the_configured_workspace(disk_dir: Path) -> None:
    from appliance.config import Config, SessionConfig
    from appliance.doctor import DoctorRow

    config = Config(session=SessionConfig(workspace_dir=disk_dir / "workspace"))
    rows = list(hardening.doctor_rows(config))
    assert all(isinstance(row, DoctorRow) for row in rows)
    assert [row.name for row in rows] == ["workspace", "swap"]
    assert rows[0].status == "fail" and str(disk_dir / "workspace") in rows[0].detail


# --- core dumps ---------------------------------------------------------------------------------

_CORE_PROBE = """
import ctypes, json, resource
from appliance.session.hardening import core_dump_status, disable_core_dumps
before = core_dump_status().status
disable_core_dumps()
libc = ctypes.CDLL(None, use_errno=True)
print(json.dumps({
    "before": before,
    "after": core_dump_status().status,
    "rlimit": list(resource.getrlimit(resource.RLIMIT_CORE)),
    "dumpable": libc.prctl(3, 0, 0, 0, 0),
}))
"""


def test_disable_core_dumps_in_a_child_process() -> None:
    # In a child: a non-dumpable pytest process would change other tests' environment.
    result = subprocess.run(
        [sys.executable, "-c", _CORE_PROBE],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    report = json.loads(result.stdout)
    assert report["before"] == "warn"  # a fresh process is dumpable
    assert report["rlimit"] == [0, 0]
    assert report["dumpable"] == 0
    assert report["after"] == "ok"
