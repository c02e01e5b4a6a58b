"""Doctor rows: does this machine's CUPS keep printed photos or traces of them?

A print sheet is a customer photo. By default CUPS keeps each job's document for a day
(``PreserveJobFiles 86400``), keeps job history forever (``PreserveJobHistory Yes``) and spools
to ``/var/spool/cups`` on the SD card. The appliance needs documents deleted once printed, no
history, and the spool (``RequestRoot``) and filter scratch space (``TempDir``) in RAM. Each
row says exactly which line to change and in which file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from appliance.session.hardening import filesystem_of

RowStatus = Literal["ok", "warn", "fail", "info"]

CUPS_FILES_CONF = Path("/etc/cups/cups-files.conf")
CUPSD_CONF = Path("/etc/cups/cupsd.conf")
DEFAULT_REQUEST_ROOT = Path("/var/spool/cups")  # CUPS's compiled-in default
HISTORY_SECONDS_OK = 600  # titles are neutral; a few minutes of history reveals little

_TRUE = frozenset({"yes", "on", "true", "enabled"})
_FALSE = frozenset({"no", "off", "false", "disabled"})


@dataclass(frozen=True)
class PrivacyRow:
    """One doctor row (the same fields as ``appliance.doctor.DoctorRow``)."""

    name: str
    status: RowStatus
    detail: str


def read_directives(text: str) -> dict[str, str]:
    """Top-level ``Directive value`` lines of a CUPS config file, keys lower-cased.

    Lines inside ``<Location>``/``<Policy>`` blocks are skipped; a later line wins, as in cupsd.
    """
    directives: dict[str, str] = {}
    depth = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("</"):
            depth = max(0, depth - 1)
            continue
        if line.startswith("<"):
            depth += 1
            continue
        if depth == 0:
            name, _, value = line.partition(" ")
            directives[name.lower()] = value.strip()
    return directives


def _read(path: Path) -> dict[str, str] | PrivacyRow:
    try:
        return read_directives(path.read_text(encoding="utf-8", errors="replace"))
    except FileNotFoundError:
        return PrivacyRow(
            "cups",
            "info",
            f"{path} not found: CUPS is not installed (printer.backend cups needs it)",
        )
    except PermissionError:
        return PrivacyRow(
            "cups", "warn", f"cannot read {path}: run `appliance doctor` as root to check CUPS"
        )
    except OSError as error:
        return PrivacyRow("cups", "warn", f"cannot read {path}: {error.strerror}")


def _job_files_row(value: str | None, cupsd_conf: Path) -> PrivacyRow:
    name = "cups job files"
    if value is not None and value.lower() in _FALSE:
        return PrivacyRow(name, "ok", "PreserveJobFiles No: a sheet is deleted once printed")
    shown = f"PreserveJobFiles {value}" if value else "PreserveJobFiles is not set (1 day)"
    return PrivacyRow(
        name,
        "fail",
        f"{shown}: printed photos stay in the spool. Set `PreserveJobFiles No` in {cupsd_conf} "
        "and restart cups",
    )


def _job_history_row(value: str | None, cupsd_conf: Path) -> PrivacyRow:
    name = "cups job history"
    fix = f"Set `PreserveJobHistory No` in {cupsd_conf} and restart cups"
    if value is not None and value.lower() in _FALSE:
        return PrivacyRow(name, "ok", "PreserveJobHistory No: no record of jobs once done")
    if value is not None and value.isdigit():
        seconds = int(value)
        if seconds <= HISTORY_SECONDS_OK:
            return PrivacyRow(name, "ok", f"PreserveJobHistory {seconds}: kept {seconds} s")
        return PrivacyRow(
            name, "warn", f"PreserveJobHistory {seconds}: jobs listed {seconds} s. {fix}"
        )
    shown = f"PreserveJobHistory {value}" if value else "PreserveJobHistory is not set (Yes)"
    return PrivacyRow(name, "fail", f"{shown}: every job's time and user is kept. {fix}")


def _nearest_existing(path: Path) -> Path:
    candidate = path
    while not candidate.exists() and candidate != candidate.parent:
        candidate = candidate.parent
    return candidate


def _in_ram_row(name: str, directive: str, path: Path, fix: str) -> PrivacyRow:
    existing = _nearest_existing(path)
    try:
        info = filesystem_of(existing)
    except OSError as error:
        return PrivacyRow(name, "warn", f"cannot inspect {existing}: {error.strerror}")
    if info.in_ram:
        return PrivacyRow(name, "ok", f"{directive} {path} is on {info.fs_type} (RAM only)")
    where = f" mounted at {info.mount_point}" if info.mount_point else ""
    return PrivacyRow(
        name,
        "fail",
        f"{directive} {path} is on {info.fs_type}{where}: print sheets would reach the card. {fix}",
    )


def cups_privacy_rows(
    cups_files_conf: Path = CUPS_FILES_CONF, cupsd_conf: Path = CUPSD_CONF
) -> list[PrivacyRow]:
    """Rows for ``appliance doctor``: job files, job history, spool and temp dir in RAM."""
    files = _read(cups_files_conf)
    scheduler = _read(cupsd_conf)
    if isinstance(files, PrivacyRow):
        return [files]
    if isinstance(scheduler, PrivacyRow):
        return [scheduler]
    rows = [
        _job_files_row(scheduler.get("preservejobfiles"), cupsd_conf),
        _job_history_row(scheduler.get("preservejobhistory"), cupsd_conf),
    ]
    request_root = Path(files.get("requestroot") or DEFAULT_REQUEST_ROOT)
    rows.append(
        _in_ram_row(
            "cups spool",
            "RequestRoot",
            request_root,
            f"Set `RequestRoot /run/cups/spool` in {cups_files_conf} (/run is tmpfs) and restart "
            "cups",
        )
    )
    temp_dir = files.get("tempdir")
    rows.append(
        _in_ram_row(
            "cups temp dir",
            "TempDir" if temp_dir else "TempDir (default RequestRoot/tmp)",
            Path(temp_dir) if temp_dir else request_root / "tmp",
            f"Remove the TempDir line from {cups_files_conf} (it then follows RequestRoot) or "
            "point it at a tmpfs",
        )
    )
    return rows
