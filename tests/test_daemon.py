"""`appliance run` as a real process: TLS, buttons, a real cupsd, SIGTERM, kill -9, strace.

The daemon is started as a subprocess with its own tmpfs workspace, state dir and ports, the
folder camera over a real portrait, the CUPS printer on the test's own cupsd, and mock pins that
the test presses through the (authenticated) API, as the demo page does.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cupsd_fixture import CupsServer, cupsd  # noqa: F401 - the fixture

from appliance.config import Config, default_models_dir

ROOT = Path(__file__).resolve().parent.parent
SHM = Path("/dev/shm")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    state: Path
    workspace: Path
    port: int
    log: Path
    notify: socket.socket
    token: str = ""

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.state / "tls" / "ca.crt"))
        context.check_hostname = False  # the certificate names this machine, not "127.0.0.1"
        return context

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"https://127.0.0.1:{self.port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self.context(), timeout=60) as response:
            return json.loads(response.read() or b"null")

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.notify.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.notify.recv(4096).decode()
            except TimeoutError:
                break
            if "READY=1" in message:
                return
        raise AssertionError("no READY=1:\n" + self.log.read_text()[-3000:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def until(predicate: Any, timeout: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def camera_folder(sample_dir: Path) -> Iterator[Path]:
    folder = SHM / f"appliance-daemon-camera-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    shutil.copy(sample_dir / "astronaut.png", folder / "astronaut.png")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def workspace() -> Iterator[Path]:
    path = SHM / f"appliance-daemon-ws-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start(
    tmp_path: Path,
    camera: Path,
    printer: str,
    *,
    trace: Path | None = None,
    state: Path | None = None,
    workspace: Path | None = None,
    runtime: Path | None = None,
    wait: bool = True,
) -> Running:
    """``runtime``: leave session.workspace_dir unset and give the daemon this
    $XDG_RUNTIME_DIR, so it picks its own default workspace (from its state dir)."""
    state = state or tmp_path / "state"
    workspace_line = ""
    if runtime is not None:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("XDG_RUNTIME_DIR", str(runtime))
            workspace = Config(state_dir=state.absolute()).workspace_dir
    else:
        workspace = workspace or SHM / f"appliance-daemon-ws-{uuid.uuid4().hex[:8]}"
        workspace_line = f'workspace_dir = "{workspace}"\n'
    port, http_port = free_port(), free_port()
    config = tmp_path / f"appliance-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(
        f'[inference]\nmodels_dir = "{default_models_dir()}"\n'
        f"[session]\n{workspace_line}"
        f'[camera]\nbackend = "folder"\nfolder = "{camera}"\n'
        f"[buttons]\nfinish_hold_s = 0.5\nbounce_time_s = 0.01\n"
        f"{printer}\n"
    )
    notify_path = tmp_path / f"notify-{uuid.uuid4().hex[:6]}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONDONTWRITEBYTECODE": "1"}
    if runtime is not None:
        env["XDG_RUNTIME_DIR"] = str(runtime)
    command = [
        sys.executable,
        "-m",
        "appliance.cli",
        "--config",
        str(config),
        "run",
        "--state-dir",
        str(state),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(http_port),
    ]
    if trace is not None:
        command = [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=openat,open,creat,rename,renameat,renameat2,link,linkat",
            "-o",
            str(trace),
            *command,
        ]
    log = tmp_path / f"daemon-{uuid.uuid4().hex[:6]}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
    running = Running(process, state, workspace, port, log, notify)
    if not wait:
        return running
    running.wait_ready()
    token = (
        subprocess.run(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "token",
                "create",
                "--role",
                "admin",
                "--name",
                "daemon test",
                "--state-dir",
                str(state),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    running.token = token
    return running


def daemon_pid(running: Running) -> int:
    """The daemon's own pid (under strace, strace's child: a signal to strace would detach)."""
    pid = running.process.pid
    if Path(running.process.args[0]).name != "strace":  # type: ignore[index]
        return pid
    # The daemon is the process whose parent is strace and whose command line is ours.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"appliance.cli" in cmdline:
            return int(stat.parent.name)
    raise AssertionError("the daemon is not running under strace")


def stop(running: Running, sig: int = signal.SIGTERM) -> int:
    os.kill(daemon_pid(running), sig)
    try:
        return running.process.wait(timeout=60)
    finally:
        running.notify.close()


def session_dirs(workspace: Path) -> list[Path]:
    return [p for p in workspace.iterdir() if p.is_dir()] if workspace.exists() else []


def printer_section(server: CupsServer) -> str:
    return f'[printer]\nbackend = "cups"\nqueue = "{server.queue}"\nserver = "{server.address}"'


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_whole_session_by_buttons_with_real_cups_under_strace(
    tmp_path: Path,
    camera_folder: Path,
    workspace: Path,
    cupsd: CupsServer,  # noqa: F811
) -> None:
    cupsd.reset_output()
    trace = tmp_path / "strace.txt"
    daemon = start(
        tmp_path, camera_folder, printer_section(cupsd), trace=trace, workspace=workspace
    )
    try:
        # The tablet's status carries the running daemon's doctor table.
        doctor = {
            row["name"]: row for row in daemon.call("GET", "/api/v1/status")["appliance"]["doctor"]
        }
        assert doctor["workspace"]["status"] == "ok"
        assert doctor["accelerator"]["detail"].startswith("cpu")
        assert doctor["printer"]["status"] == "ok", doctor["printer"]
        assert "cups job files" in doctor
        # Per model: the variant it runs, why, both startup timings, and where it runs.
        models = daemon.call("GET", "/api/v1/status")["appliance"]["models"]
        assert set(models) == {
            "face_detection_short_range",
            "face_detection_full_range",
            "face_landmark",
            "selfie_segmentation",
        }
        for name, model in models.items():
            assert model["variant"] in ("float", "int8") and model["reason"], name
            assert {"float_ms", "int8_ms", "file"} <= set(model), name
            assert model["runs_on"].startswith("CPU: XNNPACK"), model["runs_on"]
            assert doctor[f"variant {name}"]["detail"].startswith(model["variant"])
        session = daemon.call("POST", "/api/v1/sessions")["id"]
        daemon.call("POST", f"/api/v1/sessions/{session}/consent")
        # Capture: the button takes the photo and makes the default product.
        daemon.call("POST", "/api/v1/buttons/capture", {"hold_s": 0.05})
        state = until(
            lambda: (
                daemon.call("GET", f"/api/v1/sessions/{session}")["products"]
                and daemon.call("GET", f"/api/v1/sessions/{session}")
            ),
            what="a product",
        )
        assert state["state"] == "reviewing" and len(state["photos"]) == 1
        assert len(session_dirs(daemon.workspace)) == 1
        # Print: the sheet goes to the real cupsd, and what it printed is a JPEG sheet.
        daemon.call("POST", "/api/v1/buttons/print", {"hold_s": 0.05})
        until(
            lambda: daemon.call("GET", f"/api/v1/sessions/{session}")["print_jobs"] == 1,
            what="a print job",
        )
        printed = until(lambda: cupsd.output.read_bytes(), what="the printed sheet")
        assert printed.startswith(b"\xff\xd8")
        # A short press of finish does nothing; a hold wipes the session.
        daemon.call("POST", "/api/v1/buttons/finish", {"hold_s": 0.05})
        time.sleep(0.8)  # longer than the 0.5 s hold time: a press that was not held
        assert daemon.call("GET", f"/api/v1/sessions/{session}")["state"] == "delivering"
        daemon.call("POST", "/api/v1/buttons/finish", {"hold_s": 1.0})
        until(lambda: not session_dirs(daemon.workspace), what="the wipe")
        until(lambda: cupsd.job_files() == [], what="the spool to be empty")
    finally:
        code = stop(daemon)
    assert code == 0, daemon.log.read_text()[-3000:]
    assert session_dirs(daemon.workspace) == []
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "audit",
            "verify",
            "--state-dir",
            str(daemon.state),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout
    events = [
        json.loads(line) for line in (daemon.state / "audit" / "audit.log").read_text().splitlines()
    ]
    names = [e["event"] for e in events]
    # The startup sweep, then started, ..., and stopped is the last line.
    assert names[:2] == ["session.wiped", "appliance.started"] and names[-1] == "appliance.stopped"
    assert "print.submitted" in names
    assert any(e["event"] == "session.wiped" and e["actor"] == "button:finish" for e in events)
    # Every file the daemon (and its children: lp, cancel) opened for writing.
    allowed = (
        str(daemon.workspace),
        str(daemon.state),
        "/dev/null",
        "/dev/tty",
        "/dev/shm/sem.",
        "/proc/self/",
        "/dev/urandom",
    )
    writes = _written_paths(trace.read_text())
    assert writes, "strace saw no writes: it is not tracing"
    outside = sorted({p for p in writes if not p.startswith(allowed)})
    assert outside == [], outside


_OPEN = re.compile(r'open(?:at)?\((?:AT_FDCWD|\d+), "([^"]+)", ([A-Z_|]+)')
_CREAT = re.compile(r'creat\("([^"]+)"')
_RENAME = re.compile(r'(?:rename|renameat2?|linkat?)\(.*?"([^"]+)".*?"([^"]+)"')


def _written_paths(text: str) -> set[str]:
    paths = set()
    for line in text.splitlines():
        if "= -1" in line:
            continue  # failed calls wrote nothing
        match = _OPEN.search(line)
        if match and re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND", match.group(2)):
            paths.add(match.group(1))
        for pattern in (_CREAT,):
            found = pattern.search(line)
            if found:
                paths.add(found.group(1))
        renamed = _RENAME.search(line)
        if renamed and not line.lstrip("0123456789 ").startswith(("open", "creat")):
            paths.add(renamed.group(2))
    return paths


def test_sigterm_taken_by_another_thread_still_stops_the_daemon(
    tmp_path: Path, camera_folder: Path, workspace: Path
) -> None:
    """The kernel may give a process's SIGTERM to any of its threads (under strace it gave it
    to the web thread, and the daemon slept on past its stop): sent to one thread only, with
    tgkill, it must still stop the daemon in an orderly way."""
    daemon = start(tmp_path, camera_folder, '[printer]\nbackend = "fake"', workspace=workspace)
    pid = daemon_pid(daemon)
    others = sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid)
    assert others, "the daemon runs its web server and devices on threads"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, others[-1], signal.SIGTERM) != 0:
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"tgkill: errno {ctypes.get_errno()}")
    try:
        code = daemon.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
        daemon.process.wait()
        pytest.fail("the daemon did not stop after a SIGTERM taken by one of its threads")
    finally:
        daemon.notify.close()
    assert code == 0
    assert session_dirs(daemon.workspace) == []


def test_kill_9_mid_session_is_wiped_at_the_next_start(
    tmp_path: Path, camera_folder: Path, workspace: Path
) -> None:
    daemon = start(tmp_path, camera_folder, '[printer]\nbackend = "fake"', workspace=workspace)
    session = daemon.call("POST", "/api/v1/sessions")["id"]
    daemon.call("POST", f"/api/v1/sessions/{session}/consent")
    daemon.call("POST", "/api/v1/buttons/capture", {"hold_s": 0.05})
    until(lambda: daemon.call("GET", f"/api/v1/sessions/{session}")["photos"], what="a photo")
    leftover = session_dirs(daemon.workspace)
    assert len(leftover) == 1 and any(leftover[0].iterdir())
    assert stop(daemon, signal.SIGKILL) == -signal.SIGKILL
    assert session_dirs(daemon.workspace) == leftover  # the crash left it (encrypted)
    again = start(
        tmp_path,
        camera_folder,
        '[printer]\nbackend = "fake"',
        state=daemon.state,
        workspace=daemon.workspace,
    )
    try:
        # READY comes after the sweep: by the time anything is served the leftover is gone.
        assert session_dirs(again.workspace) == []
        with pytest.raises(urllib.error.HTTPError) as info:
            again.call("GET", f"/api/v1/sessions/{session}")
        assert info.value.code == 404
    finally:
        assert stop(again) == 0
    events = [
        json.loads(line) for line in (daemon.state / "audit" / "audit.log").read_text().splitlines()
    ]
    swept = [
        e for e in events if e["event"] == "session.wiped" and e.get("reason") == "startup_sweep"
    ]
    # One sweep per start: nothing at the first, the crashed session at the second.
    assert [e["count"] for e in swept] == [0, 1]


def test_a_second_daemon_never_sweeps_the_first_ones_sessions(
    tmp_path: Path, camera_folder: Path
) -> None:
    runtime = SHM / f"appliance-daemon-run-{uuid.uuid4().hex[:8]}"
    runtime.mkdir(mode=0o700)
    fake = '[printer]\nbackend = "fake"'
    first = start(tmp_path, camera_folder, fake, state=tmp_path / "one", runtime=runtime)
    others: list[Running] = []
    try:
        session = first.call("POST", "/api/v1/sessions")["id"]
        first.call("POST", f"/api/v1/sessions/{session}/consent")
        first.call("POST", "/api/v1/buttons/capture", {"hold_s": 0.05})
        until(lambda: first.call("GET", f"/api/v1/sessions/{session}")["photos"], what="a photo")
        live = session_dirs(first.workspace)
        assert [p.name for p in live] == [session]
        # Another instance (its own --state-dir, default workspace) gets its own workspace:
        # its start-up sweep runs there and leaves the first one's session alone.
        second = start(tmp_path, camera_folder, fake, state=tmp_path / "two", runtime=runtime)
        others.append(second)
        assert second.workspace != first.workspace and second.workspace.parent == runtime
        assert session_dirs(first.workspace) == live
        # A third one pointed at the first one's workspace refuses to start, before any sweep.
        third = start(
            tmp_path, camera_folder, fake, state=tmp_path / "three", workspace=first.workspace,
            wait=False,
        )  # fmt: skip
        others.append(third)
        assert third.process.wait(timeout=60) == 1
        message = third.log.read_text()
        assert "in use by another running appliance daemon" in message, message[-2000:]
        assert f"pid {first.process.pid}" in message and "--state-dir" in message
        assert session_dirs(first.workspace) == live
        state = first.call("GET", f"/api/v1/sessions/{session}")
        assert state["state"] in ("capturing", "reviewing") and len(state["photos"]) == 1
        first.call("POST", f"/api/v1/sessions/{session}/finish", {"wipe": True})
    finally:
        for running in others:
            if running.process.poll() is None:
                assert stop(running) == 0
            running.notify.close()
        assert stop(first) == 0
        shutil.rmtree(runtime, ignore_errors=True)
    assert session_dirs(first.workspace) == []
