"""SessionManager: state machine, one wipe path, timeouts, links, crash sweep, write confinement."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from appliance.session import (
    LEGAL_TRANSITIONS,
    AuditLog,
    IllegalTransitionError,
    LinkInvalidError,
    RetentionPolicy,
    RetentionTooLongError,
    Session,
    SessionManager,
    SessionNotFoundError,
    SessionState,
    SessionStateError,
    WipeReason,
    Workspace,
    WorkspaceClosedError,
    WorkspaceFullError,
)
from appliance.session.hardening import filesystem_of
from appliance.session.rootlock import LOCK_NAME, WorkspaceInUseError
from appliance.session.workspace import (
    BLOB_OVERHEAD,
    SessionBudgetError,
    WorkspaceAdmissionError,
)

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")
MiB = 1024 * 1024
S = SessionState

FAKE_FILE_NAME = "passport_JaneDoe_1987-04-12.jpg"
CUSTOMER_TEXT = "Jane Q. Doe, 42 Elm Street"
CLIENT_ADDRESS = "192.168.77.213"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def shm_root() -> Iterator[Path]:
    if not SHM.is_dir() or not filesystem_of(SHM).in_ram:
        pytest.skip("/dev/shm is not a tmpfs on this machine")
    root = SHM / f"appliance-test-{uuid.uuid4().hex}"
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def audit(tmp_path: Path) -> AuditLog:
    return AuditLog(tmp_path / "audit" / "audit.log")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(shm_root: Path, audit: AuditLog, clock: FakeClock) -> SessionManager:
    return SessionManager(Workspace(shm_root, max_bytes=MiB), audit, clock=clock)


def events(audit: AuditLog, name: str | None = None) -> list[dict[str, object]]:
    records = [
        json.loads(line) for path in audit.files() for line in path.read_bytes().splitlines()
    ]
    return [record for record in records if name is None or record["event"] == name]


def advance_to(manager: SessionManager, session: Session, target: SessionState) -> None:
    path = [S.CONSENTED, S.CAPTURING, S.REVIEWING, S.DELIVERING, S.FINISHED]
    for state in path[: path.index(target) + 1]:
        manager.transition(session.session_id, state)


def delivering_session_with_link(manager: SessionManager) -> tuple[Session, str]:
    session = manager.create(actor="staff:ann")
    advance_to(manager, session, S.CAPTURING)
    manager.add_photo(session.session_id, b"raw photo")
    manager.transition(session.session_id, S.REVIEWING)
    manager.transition(session.session_id, S.DELIVERING)
    product = manager.add_product(session.session_id, b"id photo", {"spec": "icao-35x45"})
    link = manager.create_link(session.session_id, product.item_id)
    return session, link.token


# --- state machine ------------------------------------------------------------------------------

# Written out by hand (not derived from LEGAL_TRANSITIONS) so a change to the table fails here.
EXPECTED_LEGAL = {
    (S.STARTED, S.CONSENTED),
    (S.CONSENTED, S.CAPTURING),
    (S.CAPTURING, S.REVIEWING),
    (S.REVIEWING, S.CAPTURING),
    (S.REVIEWING, S.DELIVERING),
    (S.DELIVERING, S.REVIEWING),
    (S.DELIVERING, S.FINISHED),
}
ILLEGAL = [
    (current, requested)
    for current in S
    for requested in S
    if current not in (S.WIPED, S.FINISHED)  # a finished session without links is already gone
    and (current, requested) not in EXPECTED_LEGAL
]


def test_transition_table_is_the_documented_one() -> None:
    actual = {
        (current, after) for current, targets in LEGAL_TRANSITIONS.items() for after in targets
    }
    assert actual == EXPECTED_LEGAL


@pytest.mark.parametrize(("current", "requested"), ILLEGAL)
def test_illegal_transitions_name_both_states(
    manager: SessionManager, current: SessionState, requested: SessionState
) -> None:
    session = manager.create()
    if current is not S.STARTED:
        advance_to(manager, session, current)
    with pytest.raises(IllegalTransitionError) as caught:
        manager.transition(session.session_id, requested)
    assert isinstance(caught.value, ValueError)
    assert f"from {current} to {requested}" in str(caught.value)
    assert session.state is current


def test_retake_loop_is_legal(manager: SessionManager) -> None:
    session = manager.create()
    advance_to(manager, session, S.DELIVERING)
    for state in (S.REVIEWING, S.CAPTURING, S.REVIEWING, S.DELIVERING):
        manager.transition(session.session_id, state)
    assert session.state is S.DELIVERING


def test_no_photo_before_consent(manager: SessionManager) -> None:
    session = manager.create()
    with pytest.raises(SessionStateError):
        manager.add_photo(session.session_id, b"photo")
    manager.transition(session.session_id, S.CONSENTED)
    with pytest.raises(SessionStateError):
        manager.add_photo(session.session_id, b"photo")
    assert list(session.workspace.path.iterdir()) == []


# --- the full flow --------------------------------------------------------------------------------


def test_full_session_ends_in_a_wipe_after_the_download(
    manager: SessionManager, audit: AuditLog
) -> None:
    session, token = delivering_session_with_link(manager)
    manager.add_print_job(session.session_id, "studio-7")
    assert manager.link_is_valid(token)
    finished = manager.finish(session.session_id)
    assert finished.state is S.FINISHED  # a live link keeps it for the download window
    download = manager.redeem_link(token)
    assert download.data == b"id photo" and download.metadata == {"spec": "icao-35x45"}
    assert session.state is S.WIPED and session.wipe_reason is WipeReason.FINISHED
    assert not session.workspace.path.exists()
    assert manager.find(session.session_id) is None
    with pytest.raises(LinkInvalidError):
        manager.redeem_link(token)
    [wiped] = events(audit, "session.wiped")
    assert wiped["reason"] == "finished" and wiped["print_jobs"] == 1 and wiped["photos"] == 1
    assert audit.verify().ok


def test_finishing_without_links_wipes_at_once(manager: SessionManager) -> None:
    session = manager.create()
    advance_to(manager, session, S.FINISHED)
    assert session.state is S.WIPED and session.wipe_reason is WipeReason.FINISHED
    with pytest.raises(SessionNotFoundError):
        manager.get(session.session_id)


def test_link_uses_are_counted(manager: SessionManager, audit: AuditLog) -> None:
    session, _ = delivering_session_with_link(manager)
    product_id = next(iter(session.products))
    token = manager.create_link(session.session_id, product_id, uses=2).token
    manager.redeem_link(token)
    manager.redeem_link(token)
    assert not manager.link_is_valid(token)
    with pytest.raises(LinkInvalidError):
        manager.redeem_link(token)
    assert [e["reason"] for e in events(audit, "link.refused")] == ["used_up"]
    with pytest.raises(LinkInvalidError):
        manager.redeem_link("not-a-token")


# --- wipe ---------------------------------------------------------------------------------------


def test_wipe_removes_everything_and_audits_once(manager: SessionManager, audit: AuditLog) -> None:
    session, token = delivering_session_with_link(manager)
    blob = next(iter(session.photos.values())).blob
    seen: list[tuple[str, list[str]]] = []
    manager.add_wipe_hook(lambda s: seen.append((s.session_id, list(s.print_jobs))))
    manager.add_print_job(session.session_id, "job-1")

    outcome = manager.wipe(session.session_id, WipeReason.OPERATOR, actor="staff:ann")
    assert outcome.performed and outcome.failed_steps == ()
    assert not session.workspace.path.exists()
    with pytest.raises(WorkspaceClosedError):
        session.workspace.get(blob)
    assert not manager.link_is_valid(token) and session.links == {}
    with pytest.raises(LinkInvalidError):
        manager.redeem_link(token)
    assert seen == [(session.session_id, ["job-1"])]

    again = manager.wipe(session.session_id, WipeReason.SHUTDOWN)
    assert not again.performed
    assert seen == [(session.session_id, ["job-1"])]
    [wiped] = events(audit, "session.wiped")
    assert wiped["reason"] == "operator" and wiped["actor"] == "staff:ann"
    assert wiped["outcome"] == "ok" and wiped["from_state"] == "delivering"


def test_failing_steps_do_not_skip_the_others(
    manager: SessionManager,
    audit: AuditLog,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, token = delivering_session_with_link(manager)
    ran: list[str] = []

    def broken_hook(_: Session) -> None:
        raise RuntimeError(f"printer said: {FAKE_FILE_NAME} for {CUSTOMER_TEXT}")

    manager.add_wipe_hook(broken_hook)
    manager.add_wipe_hook(lambda s: ran.append(s.session_id))

    def broken_remove() -> None:
        raise PermissionError(f"cannot remove {FAKE_FILE_NAME}")

    monkeypatch.setattr(session.workspace, "remove_files", broken_remove)
    with caplog.at_level(logging.DEBUG):
        outcome = manager.wipe(session.session_id, WipeReason.IDLE_TIMEOUT)
    assert outcome.failed_steps == ("hooks", "workspace")
    assert session.workspace.closed  # key dropped although removal failed
    assert not manager.link_is_valid(token)
    assert ran == [session.session_id]  # the second hook ran after the first failed
    [wiped] = events(audit, "session.wiped")
    assert wiped["outcome"] == "partial" and wiped["failed_steps"] == "hooks,workspace"
    assert wiped["hooks_failed"] == 1
    for secret in (FAKE_FILE_NAME, CUSTOMER_TEXT):
        assert secret not in caplog.text
    assert "step hooks failed (RuntimeError)" in caplog.text
    monkeypatch.undo()
    session.workspace.remove_files()


def test_audit_failure_during_wipe_still_wipes(
    manager: SessionManager, audit: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    session, token = delivering_session_with_link(manager)

    def broken_record(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(audit, "record", broken_record)
    outcome = manager.wipe(session.session_id, WipeReason.OPERATOR)
    assert outcome.performed and outcome.failed_steps == ("audit",)
    assert not session.workspace.path.exists() and session.workspace.closed
    assert not manager.link_is_valid(token)


def test_full_workspace_wipes_that_session_only(
    shm_root: Path, audit: AuditLog, clock: FakeClock
) -> None:
    workspace = Workspace(shm_root, max_bytes=MiB, session_max_bytes=4096)
    manager = SessionManager(workspace, audit, clock=clock)
    greedy, calm = manager.create(), manager.create()
    for session in (greedy, calm):
        advance_to(manager, session, S.CAPTURING)
    calm_photo = manager.add_photo(calm.session_id, b"calm")
    manager.add_photo(greedy.session_id, b"a" * 3000)
    with pytest.raises(WorkspaceFullError):
        manager.add_photo(greedy.session_id, b"b" * 3000)
    assert greedy.state is S.WIPED and greedy.wipe_reason is WipeReason.WORKSPACE_FULL
    assert not greedy.workspace.path.exists()
    assert manager.read_photo(calm.session_id, calm_photo.item_id) == b"calm"
    manager.add_photo(calm.session_id, b"c" * 3000)
    assert [e["reason"] for e in events(audit, "session.wiped")] == ["workspace_full"]


def test_full_workspace_refuses_the_write_and_wipes_nobody(
    shm_root: Path, audit: AuditLog, clock: FakeClock
) -> None:
    # Issue 15 #2, scaled down: one session holds nearly all of the workspace; another
    # customer's upload must not get the *other* customer's session wiped.
    workspace = Workspace(
        shm_root, max_bytes=512 * 1024, session_max_bytes=508 * 1024, session_reserve_bytes=8192
    )
    manager = SessionManager(workspace, audit, clock=clock)
    second, first = manager.create(), manager.create()
    for session in (first, second):
        advance_to(manager, session, S.CAPTURING)
    big = manager.add_photo(first.session_id, b"a" * (490 * 1024))
    upload = manager.add_photo(second.session_id, b"b" * 6000)  # within its reserve: room kept
    with pytest.raises(WorkspaceFullError) as caught:
        manager.add_photo(second.session_id, b"c" * (20 * 1024))  # past it: no room left
    assert not isinstance(caught.value, SessionBudgetError)
    assert "full" in str(caught.value) and str(shm_root) not in str(caught.value)
    assert first.state is S.CAPTURING and second.state is S.CAPTURING
    assert manager.read_photo(second.session_id, upload.item_id) == b"b" * 6000
    assert len(manager.read_photo(first.session_id, big.item_id)) == 490 * 1024
    assert events(audit, "session.wiped") == []
    # The session that did fill it gets the refusal for its next write, and is not wiped either.
    with pytest.raises(WorkspaceFullError):
        manager.add_photo(first.session_id, b"d" * (16 * 1024))  # within its own budget
    assert first.state is S.CAPTURING and events(audit, "session.wiped") == []


def test_new_session_is_refused_when_no_reserve_is_free(
    shm_root: Path, audit: AuditLog, clock: FakeClock
) -> None:
    workspace = Workspace(
        shm_root, max_bytes=4 * MiB, session_max_bytes=3 * MiB, session_reserve_bytes=MiB
    )
    manager = SessionManager(workspace, audit, clock=clock)
    holder, other = manager.create(), manager.create()
    advance_to(manager, holder, S.CAPTURING)
    manager.add_photo(holder.session_id, b"x" * (2 * MiB + 512 * 1024))
    assert workspace.committed() == 3 * MiB + 512 * 1024 + BLOB_OVERHEAD
    with pytest.raises(WorkspaceAdmissionError, match="no room for another customer session"):
        manager.create()
    assert sorted(s.session_id for s in manager.sessions()) == sorted(
        [holder.session_id, other.session_id]
    )
    assert len([p for p in shm_root.iterdir() if p.is_dir()]) == 2  # nothing half made
    assert len(events(audit, "session.created")) == 2
    manager.wipe(holder.session_id, WipeReason.OPERATOR)
    assert workspace.committed() == MiB
    manager.create()  # room again


def test_shutdown_wipes_every_session(manager: SessionManager, audit: AuditLog) -> None:
    sessions = [manager.create() for _ in range(3)]
    outcomes = manager.shutdown()
    assert sorted(o.session_id for o in outcomes) == sorted(s.session_id for s in sessions)
    assert all(not s.workspace.path.exists() for s in sessions)
    assert [e["reason"] for e in events(audit, "session.wiped")] == ["shutdown"] * 3
    assert manager.sessions() == []


# --- timeouts -------------------------------------------------------------------------------------


def test_idle_timeout_and_activity(manager: SessionManager, clock: FakeClock) -> None:
    session = manager.create()
    clock.advance(599)
    manager.touch(session.session_id)
    clock.advance(599)
    assert manager.tick() == []
    clock.advance(1)
    [outcome] = manager.tick()
    assert outcome.reason is WipeReason.IDLE_TIMEOUT and session.state is S.WIPED


def test_max_lifetime_despite_activity(manager: SessionManager, clock: FakeClock) -> None:
    session = manager.create()
    for _ in range(12):
        clock.advance(299)
        manager.touch(session.session_id)
        assert manager.tick() == []
    clock.advance(3600 - 12 * 299)
    [outcome] = manager.tick()
    assert outcome.reason is WipeReason.MAX_LIFETIME


def test_download_window_after_finish(manager: SessionManager, clock: FakeClock) -> None:
    session, token = delivering_session_with_link(manager)
    clock.advance(550)  # the link was made 550 s ago; finishing restarts its clock
    manager.finish(session.session_id)
    clock.advance(599)  # idle timeout does not apply to a finished session
    assert manager.tick() == []
    assert manager.link_is_valid(token)
    clock.advance(1)
    [outcome] = manager.tick()
    assert outcome.reason is WipeReason.DOWNLOAD_WINDOW_END
    assert not manager.link_is_valid(token) and session.state is S.WIPED


def test_link_that_expired_before_finish_means_an_immediate_wipe(
    manager: SessionManager, clock: FakeClock
) -> None:
    session, token = delivering_session_with_link(manager)
    clock.advance(600)
    assert not manager.link_is_valid(token)
    manager.finish(session.session_id)
    assert session.wipe_reason is WipeReason.FINISHED


def test_finished_session_goes_as_soon_as_its_links_are_used(
    manager: SessionManager, clock: FakeClock
) -> None:
    session, token = delivering_session_with_link(manager)
    product_id = next(iter(session.products))
    second = manager.create_link(session.session_id, product_id).token
    manager.finish(session.session_id)
    manager.redeem_link(token)
    assert session.state is S.FINISHED  # one link still live
    clock.advance(10)
    assert manager.tick() == []
    manager.redeem_link(second)
    assert session.wipe_reason is WipeReason.FINISHED


def test_lower_retention_is_honoured(shm_root: Path, audit: AuditLog, clock: FakeClock) -> None:
    policy = RetentionPolicy(idle_timeout_s=60, max_lifetime_s=120, download_window_s=30)
    manager = SessionManager(
        Workspace(shm_root, max_bytes=MiB), audit, retention=policy, clock=clock
    )
    session = manager.create()
    clock.advance(60)
    assert [o.reason for o in manager.tick()] == [WipeReason.IDLE_TIMEOUT]
    assert session.state is S.WIPED


@pytest.mark.parametrize(
    "setting",
    [{"idle_timeout_s": 601}, {"max_lifetime_s": 3601}, {"download_window_s": 86400}],
)
def test_retention_above_the_defaults_is_refused(setting: dict[str, float]) -> None:
    with pytest.raises(RetentionTooLongError) as caught:
        RetentionPolicy(**setting)
    assert next(iter(setting)) in str(caught.value) and "no keep option" in str(caught.value)


@pytest.mark.parametrize("value", [0, -5, float("nan")])
def test_retention_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError):
        RetentionPolicy(idle_timeout_s=value)


def test_background_reaper_wipes_expired_sessions(
    manager: SessionManager, clock: FakeClock
) -> None:
    wiped = threading.Event()
    manager.add_wipe_hook(lambda _: wiped.set())
    session = manager.create()
    manager.start_reaper(interval_s=0.01)
    try:
        with pytest.raises(RuntimeError):
            manager.start_reaper()
        clock.advance(600)
        assert wiped.wait(timeout=10)
        assert session.wipe_reason is WipeReason.IDLE_TIMEOUT
    finally:
        manager.stop_reaper()


# --- crash, sweep, and what reaches disk ---------------------------------------------------------

_CRASHING_CHILD = """
import sys
from pathlib import Path
from appliance.session import AuditLog, SessionManager, SessionState, Workspace
manager = SessionManager(Workspace(Path(sys.argv[1]), max_bytes=2**20), AuditLog(Path(sys.argv[2])))
session = manager.create()
manager.transition(session.session_id, SessionState.CONSENTED)
manager.transition(session.session_id, SessionState.CAPTURING)
for number in range(3):
    manager.add_photo(session.session_id, b"photo %d" % number)
print(session.session_id, flush=True)
sys.stdin.read()
"""


def test_crash_leaves_only_ciphertext_and_startup_sweeps_it(
    shm_root: Path, audit: AuditLog
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_CHILD, str(shm_root), str(audit.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child never created its session"
        session_id = child.stdout.readline().decode().strip()
        assert len(list((shm_root / session_id).iterdir())) == 3
        # While the child runs, a second instance on its root is refused before any sweep.
        with pytest.raises(WorkspaceInUseError, match=f"pid {child.pid}"):
            Workspace(shm_root, max_bytes=MiB)
        assert len(list((shm_root / session_id).iterdir())) == 3
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    assert (shm_root / session_id).is_dir()  # the crash left it behind

    manager = SessionManager(Workspace(shm_root, max_bytes=MiB), audit)
    assert manager.sweep_leftovers() == 1
    assert [p.name for p in shm_root.iterdir()] == [LOCK_NAME]  # the new daemon's own lock
    assert audit.verify().ok
    last = events(audit)[-1]
    assert last["event"] == "session.wiped" and last["reason"] == "startup_sweep"
    assert last["count"] == 1 and last["session"] is None


def _path_text(path: object) -> str:
    # A file descriptor or anything odd is kept as its repr, which never matches an allowed root.
    if isinstance(path, str | bytes | os.PathLike):
        return os.fsdecode(path)
    return repr(path)


class _WriteWatch:
    """Records every path opened for writing while ``active`` (audit hooks cannot be removed)."""

    installed: _WriteWatch | None = None

    def __init__(self) -> None:
        self.active = False
        self.paths: list[str] = []

    def __call__(self, event: str, args: tuple[object, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
            writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & write_flags
            )
            if writes:
                self.paths.append(_path_text(path))
        elif event in ("os.rename", "os.mkdir", "shutil.copyfile"):
            self.paths.append(_path_text(args[0]))
            if event == "os.rename":
                self.paths.append(_path_text(args[1]))

    @classmethod
    def get(cls) -> _WriteWatch:
        if cls.installed is None:
            cls.installed = _WriteWatch()
            sys.addaudithook(cls.installed)
        return cls.installed


def test_a_session_writes_only_inside_the_workspace_and_the_audit_log(
    shm_root: Path, tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit_dir = tmp_path / "audit"
    audit = AuditLog(audit_dir / "audit.log", max_file_bytes=1024)  # small: rotation included
    manager = SessionManager(Workspace(shm_root, max_bytes=8 * MiB), audit, clock=clock)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 80), (200, 150, 120)).save(buffer, format="JPEG")
    portrait = buffer.getvalue()
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no .pyc written mid-test
    watch = _WriteWatch.get()
    watch.paths.clear()
    watch.active = True
    try:
        session = manager.create(actor="staff:ann")
        advance_to(manager, session, S.CAPTURING)
        photo = manager.add_photo(session.session_id, portrait, {"source": "camera"})
        manager.transition(session.session_id, S.REVIEWING)
        manager.transition(session.session_id, S.CAPTURING)
        manager.discard_photo(session.session_id, photo.item_id)
        photo = manager.add_photo(session.session_id, portrait)
        manager.transition(session.session_id, S.REVIEWING)
        manager.transition(session.session_id, S.DELIVERING)
        product = manager.add_product(
            session.session_id, manager.read_photo(session.session_id, photo.item_id)
        )
        token = manager.create_link(session.session_id, product.item_id).token
        manager.finish(session.session_id)
        assert manager.redeem_link(token).data == portrait
        other = manager.create()
        clock.advance(600)
        manager.tick()
        assert other.state is S.WIPED
    finally:
        watch.active = False
    assert watch.paths, "the hook saw no writes at all: it is not working"
    allowed = (str(shm_root.resolve()), str(audit_dir.resolve()))
    outside = [p for p in watch.paths if not os.path.realpath(p).startswith(allowed)]
    assert outside == []
    assert any(p.startswith(str(shm_root)) for p in watch.paths)
    assert len(audit.files()) > 1 and audit.verify().ok


def test_customer_data_never_reaches_the_audit_log_or_logs(
    manager: SessionManager, audit: AuditLog, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        session = manager.create(actor="staff:ann")
        advance_to(manager, session, S.CAPTURING)
        payload = f"{FAKE_FILE_NAME} {CUSTOMER_TEXT} {CLIENT_ADDRESS}".encode()
        photo = manager.add_photo(
            session.session_id,
            payload,
            {"upload_name": FAKE_FILE_NAME, "note": CUSTOMER_TEXT, "from": CLIENT_ADDRESS},
        )
        manager.transition(session.session_id, S.REVIEWING)
        manager.transition(session.session_id, S.DELIVERING)
        manager.add_product(session.session_id, payload)
        manager.add_print_job(session.session_id, FAKE_FILE_NAME)
        manager.add_wipe_hook(lambda s: (_ for _ in ()).throw(OSError(CUSTOMER_TEXT)))
        assert manager.read_photo(session.session_id, photo.item_id) == payload
        manager.wipe(session.session_id, WipeReason.OPERATOR)
    log_bytes = b"".join(path.read_bytes() for path in audit.files())
    assert len(events(audit)) >= 5
    for secret in (FAKE_FILE_NAME, CUSTOMER_TEXT, CLIENT_ADDRESS):
        assert secret.encode() not in log_bytes
        assert secret not in caplog.text


# --- sealed links (appliance.web.sealed) --------------------------------------------------------


def test_a_sealed_link_serves_its_ciphertext_expires_with_the_window_and_dies_at_the_wipe(
    manager: SessionManager, clock: FakeClock, audit: AuditLog
) -> None:
    session = manager.create(actor="staff:ann")
    advance_to(manager, session, S.CAPTURING)
    manager.transition(session.session_id, S.REVIEWING)
    manager.transition(session.session_id, S.DELIVERING)
    product = manager.add_product(session.session_id, b"id photo", {"kind": "digital"})
    secret = b"s" * 32
    link = manager.create_link(
        session.session_id,
        product.item_id,
        seal=lambda token: (b"ciphertext for " + token.encode(), hashlib.sha256(secret).digest()),
    )
    assert link.payload is not None
    assert session.workspace.get(link.payload) == b"ciphertext for " + link.token.encode()
    manager.transition(session.session_id, S.FINISHED)
    clock.advance(manager.retention.download_window_s - 1)
    assert manager.link_is_valid(link.token)
    clock.advance(1)  # the download window is over: refused, then wiped by the reaper
    assert not manager.link_is_valid(link.token)
    with pytest.raises(LinkInvalidError):
        manager.redeem_link(link.token)
    [outcome] = manager.tick()
    assert outcome.reason is WipeReason.DOWNLOAD_WINDOW_END
    with pytest.raises(LinkInvalidError):
        manager.wipe_by_link(link.token, secret)  # nothing left to delete


def test_wipe_by_link_needs_the_sealed_secret(manager: SessionManager, audit: AuditLog) -> None:
    session = manager.create(actor="staff:ann")
    advance_to(manager, session, S.DELIVERING)
    product = manager.add_product(session.session_id, b"id photo", {"kind": "digital"})
    secret = b"s" * 32
    link = manager.create_link(
        session.session_id, product.item_id, seal=lambda t: (b"c", hashlib.sha256(secret).digest())
    )
    plain = manager.create_link(session.session_id, product.item_id)  # no secret: no deletion
    for token, guess in ((link.token, b"x" * 32), (plain.token, secret), ("nope", secret)):
        with pytest.raises(LinkInvalidError):
            manager.wipe_by_link(token, guess)
    assert manager.find(session.session_id) is not None
    outcome = manager.wipe_by_link(link.token, secret)
    assert outcome.performed and outcome.reason is WipeReason.CUSTOMER_REQUEST
    [wiped] = events(audit, "session.wiped")
    assert wiped["reason"] == "customer_request" and wiped["actor"] == "customer"
