"""The hash-chained audit log: schema allow-list, tamper detection, rotation, concurrency."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.session.audit import (
    GENESIS_PREV,
    REASONS,
    SESSION_STATES,
    AuditLog,
    AuditSchemaError,
    canonical_line,
    verify_chain,
)
from appliance.session.state import SessionState, WipeReason

ROOT = Path(__file__).resolve().parent.parent
SESSION_ID = "s1234567890abcdefghijKLM"


def fill(log: AuditLog, count: int) -> None:
    for number in range(count):
        log.record(
            "session.wiped", actor="system", session=SESSION_ID, reason="operator", photos=number
        )


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit" / "audit.log")


# --- the chain ----------------------------------------------------------------------------------


def test_chain_links_each_line_to_the_previous_bytes(log: AuditLog) -> None:
    fill(log, 5)
    lines = lines_of(log.path)
    assert len(lines) == 5
    assert json.loads(lines[0])["prev"] == GENESIS_PREV
    for before, after in itertools.pairwise(lines):
        assert json.loads(after)["prev"] == hashlib.sha256(before).hexdigest()
    result = log.verify()
    assert result.ok and result.good_lines == 5 and result.broken_at is None
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def test_record_fields_and_time(tmp_path: Path) -> None:
    moment = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    log = AuditLog(tmp_path / "audit.log", clock=lambda: moment)
    log.record("session.created", actor="staff:ann", session=SESSION_ID)
    record = json.loads(log.path.read_bytes())
    assert record == {
        "time": "2030-01-02T03:04:05.678Z",
        "event": "session.created",
        "session": SESSION_ID,
        "actor": "staff:ann",
        "outcome": "ok",
        "prev": GENESIS_PREV,
    }
    naive = AuditLog(tmp_path / "other.log", clock=datetime.now)
    with pytest.raises(ValueError):
        naive.record("session.created", actor="system")


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def test_edited_line_breaks_the_chain_at_the_next_line(log: AuditLog) -> None:
    fill(log, 6)
    lines = lines_of(log.path)
    lines[2] = lines[2].replace(b'"photos":2', b'"photos":7')
    rewrite(log.path, lines)
    result = log.verify()
    assert not result.ok
    assert result.broken_at is not None and result.broken_at.line == 4
    assert result.good_lines == 3
    assert "edited" in result.problem


def test_edit_that_breaks_the_schema_is_caught_on_the_line_itself(log: AuditLog) -> None:
    fill(log, 6)
    lines = lines_of(log.path)
    lines[2] = lines[2].replace(b'"photos":2', b'"photos":2,"file":"jane.jpg"')
    rewrite(log.path, lines)
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 3
    assert "schema" in result.problem


def test_edit_of_whitespace_on_last_line_is_caught(log: AuditLog) -> None:
    fill(log, 3)
    lines = lines_of(log.path)
    lines[2] = lines[2].replace(b'","', b'", "', 1)
    rewrite(log.path, lines)
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 3
    assert "canonical" in result.problem


def test_deleted_line_is_detected(log: AuditLog) -> None:
    fill(log, 6)
    lines = lines_of(log.path)
    del lines[2]
    rewrite(log.path, lines)
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 3
    assert result.good_lines == 2


def test_reordered_lines_are_detected(log: AuditLog) -> None:
    fill(log, 6)
    lines = lines_of(log.path)
    lines[2], lines[3] = lines[3], lines[2]
    rewrite(log.path, lines)
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 3


def test_inserted_lines_are_detected(log: AuditLog) -> None:
    fill(log, 6)
    original = lines_of(log.path)
    # A copy of an existing line.
    rewrite(log.path, [*original[:3], original[1], *original[3:]])
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 4
    # A forged line that chains correctly to its predecessor: the next line exposes it.
    forged = json.loads(original[2])
    forged["prev"] = hashlib.sha256(original[2]).hexdigest()
    forged_line = json.dumps(forged, separators=(",", ":")).encode() + b"\n"
    rewrite(log.path, [*original[:3], forged_line, *original[3:]])
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 5
    assert result.good_lines == 4


def test_torn_last_line_is_reported_and_appends_continue(log: AuditLog) -> None:
    fill(log, 3)
    with open(log.path, "ab") as stream:
        stream.write(b'{"time":"2030')  # a crash mid-write
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 4
    assert "truncated" in result.problem
    fill(log, 1)
    result = log.verify()
    assert result.broken_at is not None and result.broken_at.line == 4
    assert len(lines_of(log.path)) == 5


# --- rotation and export --------------------------------------------------------------------


def test_rotation_keeps_the_chain_across_files(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_file_bytes=1024)
    fill(log, 30)
    files = log.files()
    assert len(files) >= 3 and files[-1] == log.path
    assert [path.name for path in files[:2]] == ["audit.log.000001", "audit.log.000002"]
    assert all(path.stat().st_size <= 1024 for path in files)
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in files)
    last_of_first = lines_of(files[0])[-1]
    assert json.loads(lines_of(files[1])[0])["prev"] == hashlib.sha256(last_of_first).hexdigest()
    result = log.verify()
    assert result.ok and result.good_lines == 30


def test_rotation_tampering_is_located_in_the_right_file(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_file_bytes=1024)
    fill(log, 30)
    files = log.files()
    middle = lines_of(files[1])
    del middle[1]
    rewrite(files[1], middle)
    result = log.verify()
    assert result.broken_at is not None
    assert result.broken_at.path == files[1] and result.broken_at.line == 2
    assert result.broken_at.position == len(lines_of(files[0])) + 2


def test_missing_rotated_file_is_detected(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_file_bytes=1024)
    fill(log, 30)
    files = log.files()
    files[1].unlink()
    result = verify_chain(log.files())
    assert result.broken_at is not None and result.broken_at.path == files[2]
    assert result.broken_at.line == 1


def test_oldest_files_are_pruned_and_the_log_says_so(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_file_bytes=1024, max_files=3)
    fill(log, 60)
    files = log.files()
    assert len(files) == 3 and files[-1] == log.path  # two rotated files and the current one
    records = [json.loads(line) for path in files for line in lines_of(path)]
    notes = [r for r in records if r["event"] == "audit.pruned"]
    assert notes and all(n["actor"] == "system" and n["count"] >= 1 for n in notes)
    # The oldest kept line chains to the anchor the latest note recorded.
    assert records[0]["prev"] == notes[-1]["anchor"]
    assert sum(r["event"] == "session.wiped" for r in records) < 60
    result = log.verify()
    assert result.ok and result.after_pruning and "pruned" in str(result)
    assert result.good_lines == len(records)
    # Nothing customer-related in the note: counts and a hash.
    fields = "time event session actor outcome count lines anchor prev"
    assert set(notes[-1]) == set(fields.split())


def test_pruning_the_log_does_not_record_is_detected(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_file_bytes=1024, max_files=4)
    fill(log, 80)
    files = log.files()
    files[0].unlink()  # one more file gone, with no audit.pruned line for it
    result = log.verify()
    assert not result.ok and result.broken_at is not None
    assert result.broken_at.path == files[1] and result.broken_at.line == 1
    # A forged anchor does not help either: the note that carries it must chain too.
    fill(log, 1)
    kept = log.files()
    first = lines_of(kept[0])
    record = json.loads(first[0])
    record["prev"] = "f" * 64
    rewrite(kept[0], [canonical_line(record), *first[1:]])
    assert not log.verify().ok


def test_export_writes_only_verified_lines(log: AuditLog) -> None:
    fill(log, 4)
    exported = io.BytesIO()
    assert log.export(exported).ok
    assert exported.getvalue() == log.path.read_bytes()
    lines = lines_of(log.path)
    lines[3] = lines[3].replace(b'"photos":3', b'"photos":9')
    del lines[2]
    rewrite(log.path, lines)
    exported = io.BytesIO()
    result = log.export(exported)
    assert not result.ok and result.good_lines == 2
    assert exported.getvalue() == b"".join(lines[:2])


# --- the schema allow-list ----------------------------------------------------------------------

FAKE_FILE_NAME = "passport_JaneDoe_1987-04-12.jpg"
CUSTOMER_TEXT = "Jane Q. Doe, 42 Elm Street"
CLIENT_ADDRESS = "192.168.77.213"


@pytest.mark.parametrize(
    ("event", "kwargs"),
    [
        ("session.created", {"actor": "system", "filename": FAKE_FILE_NAME}),
        ("session.created", {"actor": "system", "client": CLIENT_ADDRESS}),
        ("session.created", {"actor": "system", "note": CUSTOMER_TEXT}),
        ("session.created", {"actor": f"staff:{CUSTOMER_TEXT}"}),
        ("session.created", {"actor": "customer:jane"}),
        ("session.created", {"actor": "system", "session": CLIENT_ADDRESS}),
        ("session.created", {"actor": "system", "session": FAKE_FILE_NAME}),
        ("session.created", {"actor": "system", "reason": FAKE_FILE_NAME}),
        ("session.created", {"actor": "system", "outcome": CUSTOMER_TEXT}),
        (FAKE_FILE_NAME, {"actor": "system"}),
        ("session.created", {"actor": "system", "photos": True}),
        ("session.created", {"actor": "system", "photos": -1}),
        ("session.created", {"actor": "system", "photos": "3"}),
        ("session.created", {"actor": "system", "bytes": 2**60}),
        ("session.created", {"actor": "system", "failed_steps": "workspace,jane"}),
        ("session.created", {"actor": "system", "time": "2030-01-01T00:00:00.000Z"}),
        ("session.created", {"actor": "system", "prev": GENESIS_PREV}),
        ("session.created", {"actor": "api-token:" + "x" * 80}),
    ],
)
def test_schema_refuses_data_that_must_not_be_logged(
    log: AuditLog, event: str, kwargs: dict[str, object]
) -> None:
    log.record("session.created", actor="system")
    before = log.path.read_bytes()
    with pytest.raises(AuditSchemaError) as caught:
        log.record(event, **kwargs)  # type: ignore[arg-type]
    assert isinstance(caught.value, ApplianceError) and isinstance(caught.value, ValueError)
    for secret in (FAKE_FILE_NAME, CUSTOMER_TEXT, CLIENT_ADDRESS, "x" * 80):
        assert secret not in str(caught.value)  # the refusal never echoes the value
    assert log.path.read_bytes() == before


def test_schema_accepts_the_actor_forms(log: AuditLog) -> None:
    for actor in ("system", "staff:ann", "button:capture", "api-token:kiosk-2"):
        log.record("session.created", actor=actor)
    assert log.verify().good_lines == 4


def test_audit_enums_cover_the_lifecycle() -> None:
    assert {reason.value for reason in WipeReason} <= REASONS
    assert {state.value for state in SessionState} == SESSION_STATES


# --- concurrency --------------------------------------------------------------------------------

_WRITER = """
import sys
from pathlib import Path
from appliance.session.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), max_file_bytes=4096)
for number in range(int(sys.argv[2])):
    log.record("session.wiped", actor="system", reason="operator", count=number)
"""


def test_threads_and_processes_append_without_breaking_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), "40"],
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(3)
    ]
    log = AuditLog(path, max_file_bytes=4096)
    threads = [threading.Thread(target=fill, args=(log, 40)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        assert process.wait(timeout=120) == 0
    result = log.verify()
    assert result.ok, str(result)
    assert result.good_lines == 240
    assert len(log.files()) > 1


def test_timestamps_come_from_the_clock(tmp_path: Path) -> None:
    start = datetime(2030, 5, 6, tzinfo=UTC)
    ticks = iter(start + timedelta(seconds=n) for n in range(3))
    log = AuditLog(tmp_path / "audit.log", clock=lambda: next(ticks))
    fill(log, 3)
    times = [json.loads(line)["time"] for line in lines_of(log.path)]
    assert times == [f"2030-05-06T00:00:0{n}.000Z" for n in range(3)]
