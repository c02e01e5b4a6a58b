"""Append-only, hash-chained audit log (privacy invariant 4).

One JSON object per line. Each line carries ``prev``: the SHA-256 (hex) of the previous line's
exact bytes, newline included; the very first line has 64 zeros, and after rotation the new file's
first line chains to the old file's last line. Editing, deleting, reordering or inserting a line
therefore breaks the chain at a line :func:`verify_chain` can name. Only the newest
``max_files`` files are kept: when older ones are deleted, an ``audit.pruned`` line records how
many files and lines went and the hash the oldest kept line chains to, so a deletion the log
does not record still breaks the chain. The chain has no secret key:
it makes tampering evident, not impossible, and an edit of the newest line is only caught if it
breaks the schema or the canonical form.

Why a strict allow-list schema: the log lives on persistent storage and outlives every session,
so it must never hold image data, customer text, file names from users or client addresses. A
deny-list cannot anticipate every way such data could slip in; an allow-list of field names,
each with a fixed type, an enum or a tight pattern (and no string longer than 64 characters),
means new kinds of data only enter the log through a reviewed change to this module. Rejection
errors name the field but never echo the value, so a refused value cannot leak through the
error message either.

Appends are safe across threads (a lock) and processes (flock on a side lock file, O_APPEND).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from appliance.errors import ApplianceError
from appliance.statefiles import locked

GENESIS_PREV = "0" * 64
MAX_STRING = 64
DEFAULT_MAX_FILE_BYTES = 1_000_000
# Files kept, the current one included: about 20 MB on the SD card, thousands of sessions.
DEFAULT_MAX_FILES = 20

AUDIT_EVENTS = frozenset(
    {
        "session.created",
        "session.state",
        "session.wiped",  # includes the startup sweep (session null, reason startup_sweep)
        "link.created",
        "link.redeemed",
        "link.refused",
        "print.submitted",
        "staff.login",
        "staff.logout",
        "staff.created",
        "api_token.created",
        "api_token.revoked",
        "setup.completed",
        "config.changed",
        "audit.exported",
        "appliance.started",
        "appliance.stopped",
        "hotfolder.received",
        "hotfolder.refused",
        "printer.resumed",
        "staff.removed",
        "kiosk.paired",
        "kiosk.revoked",
        "audit.pruned",  # the oldest files went (max_files): how many, lines, the anchor hash
        "mfa.enrolled",  # a staff member set up (or replaced) their second factor
        "mfa.disabled",  # ... switched it off themselves (password + code)
        "mfa.reset",  # ... an admin (or `appliance mfa-reset`) removed someone's
        "mfa.recovery_used",  # a recovery code replaced the authenticator at login
        "mfa.recovery_renewed",
        "passkey.added",
        "passkey.removed",
    }
)
OUTCOMES = frozenset({"ok", "failed", "refused", "partial"})
# Must hold every lifecycle.WipeReason value (a test checks).
REASONS = frozenset(
    {
        "finished",
        "idle_timeout",
        "max_lifetime",
        "download_window_end",
        "shutdown",
        "startup_sweep",
        "workspace_full",
        "operator",
        "customer_request",
        "expired",
        "used_up",
        "unknown_token",
        "bad_credentials",
        "rate_limited",
        "bad_code",  # a wrong second-factor code
        "replayed_code",  # a code of a time step that was already used
    }
)
SESSION_STATES = frozenset(
    {"started", "consented", "capturing", "reviewing", "delivering", "finished", "wiped"}
)
WIPE_STEPS = frozenset({"workspace", "key", "links", "hooks"})
INT_FIELDS = frozenset(
    {
        "photos",
        "products",
        "blobs",
        "bytes",
        "links",
        "print_jobs",
        "copies",
        "count",
        "uses_left",
        "duration_s",
        "hooks_failed",
        "lines",
    }
)
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_ACTOR = re.compile(r"system|customer|(staff|button|api-token|kiosk):[A-Za-z0-9_.-]{1,32}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_HASH = re.compile(r"[0-9a-f]{64}")
_STEP_LIST = re.compile(r"[a-z]+(,[a-z]+)*")
_REQUIRED = ("time", "event", "session", "actor", "outcome", "prev")
_MAX_INT = 2**53  # exact in every JSON reader

FieldValue = str | int | None


class AuditError(ApplianceError, OSError):
    """The audit log could not be written or read."""


class AuditSchemaError(ApplianceError, ValueError):
    """A record does not fit the audit schema. The message never contains the value."""


@dataclass(frozen=True)
class AuditLocation:
    path: Path
    line: int  # 1-based within ``path``
    position: int  # 1-based over all files, in chain order


@dataclass(frozen=True)
class AuditVerification:
    """Result of checking a chain: how many lines are good and where it first breaks."""

    ok: bool
    good_lines: int
    broken_at: AuditLocation | None
    problem: str  # empty when ok
    # The chain starts at the anchor an audit.pruned line recorded (older files were deleted).
    after_pruning: bool = False

    def __str__(self) -> str:
        if self.ok:
            pruned = " (older files pruned, as the log records)" if self.after_pruning else ""
            return f"audit chain ok: {self.good_lines} lines{pruned}"
        where = self.broken_at
        place = f"{where.path} line {where.line}" if where else "?"
        return f"audit chain broken at {place} after {self.good_lines} good lines: {self.problem}"


def _check_string(name: str, value: object, allowed: frozenset[str] | re.Pattern[str]) -> None:
    if not isinstance(value, str):
        raise AuditSchemaError(f"audit field {name!r} must be a string")
    if len(value) > MAX_STRING:
        raise AuditSchemaError(f"audit field {name!r} is longer than {MAX_STRING} characters")
    matches = value in allowed if isinstance(allowed, frozenset) else allowed.fullmatch(value)
    if not matches:
        raise AuditSchemaError(f"audit field {name!r} has a value outside its allowed set")


def validate_record(record: dict[str, object], events: frozenset[str] = AUDIT_EVENTS) -> None:
    """Raise AuditSchemaError unless every field is known and has an allowed value."""
    for name in _REQUIRED:
        if name not in record:
            raise AuditSchemaError(f"audit record lacks field {name!r}")
    for name, value in record.items():
        if name == "time":
            _check_string(name, value, _TIME)
        elif name == "event":
            _check_string(name, value, events)
        elif name == "session":
            if value is not None:
                _check_string(name, value, _SESSION_ID)
        elif name == "actor":
            _check_string(name, value, _ACTOR)
        elif name == "outcome":
            _check_string(name, value, OUTCOMES)
        elif name == "reason":
            _check_string(name, value, REASONS)
        elif name in ("state", "from_state"):
            _check_string(name, value, SESSION_STATES)
        elif name == "failed_steps":
            _check_string(name, value, _STEP_LIST)
            if not set(str(value).split(",")) <= WIPE_STEPS:
                raise AuditSchemaError("audit field 'failed_steps' names an unknown step")
        elif name in ("prev", "anchor"):
            _check_string(name, value, _HASH)
        elif name in INT_FIELDS:
            # bool is an int subclass; True in a count field is a bug, not a count.
            if type(value) is not int or not 0 <= value < _MAX_INT:
                raise AuditSchemaError(f"audit field {name!r} must be a non-negative integer")
        else:
            raise AuditSchemaError("audit record has a field outside the schema")


def canonical_line(record: dict[str, object]) -> bytes:
    """The one byte form of a record: fixed key order, compact, ASCII, newline-terminated."""
    head = [name for name in _REQUIRED if name != "prev"]
    rest = sorted(name for name in record if name not in _REQUIRED)
    ordered = {name: record[name] for name in [*head, *rest, "prev"] if name in record}
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii") + b"\n"


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit clock must return timezone-aware datetimes")
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _read_lines(path: Path) -> Iterator[bytes]:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        yield from stream  # keeps each line's newline; a torn last line comes without one


def verify_chain(
    paths: Sequence[Path],
    *,
    events: frozenset[str] = AUDIT_EVENTS,
    sink: Callable[[bytes], object] | None = None,
) -> AuditVerification:
    """Check the chain over ``paths`` (oldest first). ``sink`` receives each good line.

    The first line must chain to the genesis hash, or to the anchor an ``audit.pruned`` line
    further on recorded when the files before it were deleted; that line is itself checked
    in its place in the chain like any other."""
    expected_prev = GENESIS_PREV
    anchor = _pruned_anchor(paths)
    if anchor is not None:
        expected_prev = anchor
    good = 0
    for path in paths:
        try:
            lines = list(_read_lines(path))
        except OSError as error:
            location = AuditLocation(path, 1, good + 1)
            return AuditVerification(False, good, location, f"cannot read: {error.strerror}")
        for number, line in enumerate(lines, start=1):
            location = AuditLocation(path, number, good + 1)
            problem = _line_problem(line, expected_prev, events)
            if problem:
                return AuditVerification(False, good, location, problem)
            if sink is not None:
                sink(line)
            expected_prev = line_hash(line)
            good += 1
    return AuditVerification(True, good, None, "", after_pruning=anchor is not None)


def _pruned_anchor(paths: Sequence[Path]) -> str | None:
    """The first line's prev, if it is not the genesis hash and an audit.pruned line in the
    chain recorded it as its anchor; else None (and the first line must start the chain)."""
    try:
        first = next(iter(_read_lines(paths[0]))) if paths else b""
        prev = json.loads(first).get("prev")
    except (OSError, StopIteration, ValueError, AttributeError):
        return None
    if not isinstance(prev, str) or prev == GENESIS_PREV:
        return None
    for path in paths:
        try:
            lines = list(_read_lines(path))
        except OSError:
            return None
        for line in lines:
            if b'"audit.pruned"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(record, dict)
                and record.get("event") == "audit.pruned"
                and record.get("anchor") == prev
            ):
                return prev
    return None


def _line_problem(line: bytes, expected_prev: str, events: frozenset[str]) -> str:
    if not line.endswith(b"\n"):
        return "line is not terminated (truncated write)"
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        return "line is not valid JSON"
    if not isinstance(record, dict):
        return "line is not a JSON object"
    try:
        validate_record(record, events)
    except AuditSchemaError as error:
        return f"line does not fit the schema ({error})"
    if canonical_line(record) != line:
        return "line is not in canonical form (edited)"
    if record["prev"] != expected_prev:
        return (
            "prev does not match the hash of the line before: that line was edited, or lines "
            "were deleted, inserted or reordered here"
        )
    return ""


class AuditLog:
    """The appliance's audit log at ``path``, rotated to ``path.000001``, ``path.000002``, ..."""

    def __init__(
        self,
        path: Path,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_files: int = DEFAULT_MAX_FILES,
        clock: Callable[[], datetime] = _utc_now,
        extra_events: Iterable[str] = (),
    ) -> None:
        if max_file_bytes < 1024:
            raise ValueError(f"audit max_file_bytes must be at least 1024, got {max_file_bytes}")
        if max_files < 2:
            raise ValueError(f"audit max_files must be at least 2, got {max_files}")
        self.path = path.absolute()
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.events = AUDIT_EVENTS | frozenset(extra_events)
        self._clock = clock
        self._thread_lock = threading.Lock()
        # flock a side file, not the log: rotation renames the log, and a process waiting on the
        # old inode would otherwise append to the rotated file.
        self._lock_path = self.path.with_name(self.path.name + ".lock")

    def files(self) -> list[Path]:
        """Every log file in chain order: rotated ones oldest first, then the current one."""
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d{6,})")
        rotated: list[tuple[int, Path]] = []
        if self.path.parent.is_dir():
            for candidate in self.path.parent.iterdir():
                match = pattern.fullmatch(candidate.name)
                if match:
                    rotated.append((int(match.group(1)), candidate))
        ordered = [path for _, path in sorted(rotated)]
        if self.path.exists():
            ordered.append(self.path)
        return ordered

    @contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        with self._thread_lock, locked(self._lock_path, operation):
            yield

    def record(
        self,
        event: str,
        *,
        actor: str,
        outcome: str = "ok",
        session: str | None = None,
        **fields: FieldValue,
    ) -> None:
        """Validate and append one event. Raises AuditSchemaError before touching the disk."""
        if any(name in _REQUIRED for name in fields):
            raise AuditSchemaError("time and prev are set by the audit log, not by callers")
        record: dict[str, object] = {
            "time": _format_time(self._clock()),
            "event": event,
            "session": session,
            "actor": actor,
            "outcome": outcome,
            **fields,
            "prev": GENESIS_PREV,  # placeholder with the right shape, replaced under the lock
        }
        validate_record(record, self.events)
        try:
            with self._locked(fcntl.LOCK_EX):
                self._append(record)
        except OSError as error:
            if isinstance(error, ApplianceError):
                raise
            raise AuditError(error.errno, f"cannot append to audit log {self.path}") from error

    def _append(self, record: dict[str, object]) -> None:
        last_line, current_size = self._tail()
        if last_line is not None and not last_line.endswith(b"\n"):
            # A crash tore the previous write; terminate it so the torn line stays a separate,
            # detectable line and this one starts clean.
            self._write(b"\n")
            last_line += b"\n"
            current_size += 1
        record["prev"] = line_hash(last_line) if last_line is not None else GENESIS_PREV
        line = canonical_line(record)
        if current_size and current_size + len(line) > self.max_file_bytes:
            self._rotate()
            pruned = self._prune()
            if pruned is not None:
                # Said in the chain itself, before the record that caused it: how much went and
                # the hash the oldest remaining line now chains to.
                files, lines, anchor = pruned
                note: dict[str, object] = {
                    "time": record["time"],
                    "event": "audit.pruned",
                    "session": None,
                    "actor": "system",
                    "outcome": "ok",
                    "count": files,
                    "lines": lines,
                    "anchor": anchor,
                    "prev": record["prev"],
                }
                validate_record(note, self.events)
                note_line = canonical_line(note)
                self._write(note_line)
                record["prev"] = line_hash(note_line)
                line = canonical_line(record)
        self._write(line)

    def _tail(self) -> tuple[bytes | None, int]:
        """Last line of the chain (maybe torn) and the current file's size."""
        current_size = self.path.stat().st_size if self.path.exists() else 0
        source = self.path if current_size else None
        if source is None:
            rotated = [path for path in self.files() if path != self.path]
            source = rotated[-1] if rotated else None
        if source is None:
            return None, current_size
        return _last_line(source), current_size

    def _rotate(self) -> None:
        rotated = [path for path in self.files() if path != self.path]
        number = int(rotated[-1].name.rsplit(".", 1)[1]) + 1 if rotated else 1
        os.rename(self.path, self.path.with_name(f"{self.path.name}.{number:06d}"))

    def _prune(self) -> tuple[int, int, str] | None:
        """Delete the oldest rotated files beyond max_files: (files, lines, anchor) or None.
        The anchor is the hash of the last deleted line, which the oldest kept line chains to."""
        rotated = [path for path in self.files() if path != self.path]
        excess = len(rotated) + 1 - self.max_files
        if excess <= 0:
            return None
        lines, anchor = 0, GENESIS_PREV
        for path in rotated[:excess]:
            content = list(_read_lines(path))
            lines += len(content)
            if content:
                anchor = line_hash(content[-1])
            path.unlink()
        return excess, lines, anchor

    def _write(self, data: bytes) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        descriptor = os.open(self.path, flags, 0o600)
        try:
            os.fchmod(descriptor, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)  # persistent storage: a wipe event must survive a power cut
        finally:
            os.close(descriptor)

    def verify(self) -> AuditVerification:
        with self._locked(fcntl.LOCK_SH):
            return verify_chain(self.files(), events=self.events)

    def export(self, destination: BinaryIO) -> AuditVerification:
        """Write the verified lines (up to the first break) to ``destination``."""
        with self._locked(fcntl.LOCK_SH):
            return verify_chain(self.files(), events=self.events, sink=destination.write)


def _last_line(path: Path) -> bytes | None:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb") as stream:
        end = stream.seek(0, os.SEEK_END)
        if end == 0:
            return None
        chunk_size = 4096
        data = b""
        position = end
        while position > 0:
            step = min(chunk_size, position)
            position -= step
            stream.seek(position)
            data = stream.read(step) + data
            if b"\n" in data[:-1]:
                break
        return data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
