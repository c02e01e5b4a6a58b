"""The state commands, as a person (or the firstboot unit) runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_firstboot_makes_secrets_once_then_setup_code_and_tokens(tmp_path: Path) -> None:
    state = tmp_path / "state"
    done = cli("firstboot", "--state-dir", str(state))
    assert done.returncode == 0, done.stderr
    assert "one-time setup code: " in done.stdout and "fingerprint" in done.stdout
    assert (state / ".initialised").exists()
    for key in ("ca.key", "server.key"):
        assert (state / "tls" / key).stat().st_mode & 0o777 == 0o600
    code = cli("setup-code", "--state-dir", str(state))
    assert code.returncode == 0 and len(code.stdout.strip()) >= 12
    token = cli(
        "token",
        "create",
        "--role",
        "operator",
        "--name",
        "booking system",
        "--state-dir",
        str(state),
    )
    assert token.returncode == 0
    secret = token.stdout.strip().splitlines()[-1]
    assert " " not in secret and len(secret) > 30
    listed = cli("token", "list", "--state-dir", str(state))
    token_id = listed.stdout.split()[0]
    assert "booking system" in listed.stdout and secret not in listed.stdout
    assert cli("token", "revoke", "--id", token_id, "--state-dir", str(state)).returncode == 0
    again = cli("token", "revoke", "--id", token_id, "--state-dir", str(state))
    assert again.returncode == 2 and "no token with id" in again.stderr


def test_paired_kiosks_are_listed_and_revoked_with_the_tokens(tmp_path: Path) -> None:
    from appliance.web.kiosks import KioskStore

    state = tmp_path / "state"
    store = KioskStore(state)
    kiosk, credential = store.pair(store.new_pairing_code("Front desk", "booth"))
    listed = cli("token", "list", "--state-dir", str(state))
    assert f"{kiosk.kiosk_id}  kiosk    Front desk (desk booth)" in listed.stdout
    assert credential not in listed.stdout
    assert cli("token", "revoke", "--id", kiosk.kiosk_id, "--state-dir", str(state)).returncode == 0
    assert store.kiosk_for(credential) is None


def test_audit_verify_reports_the_broken_line(tmp_path: Path) -> None:
    from appliance.session.audit import AuditLog

    state = tmp_path / "state"
    log = AuditLog(state / "audit" / "audit.log")
    for _ in range(3):
        log.record("appliance.started", actor="system")
    assert cli("audit", "verify", "--state-dir", str(state)).returncode == 0
    path = state / "audit" / "audit.log"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("appliance.started", "appliance.stopped")
    path.write_text("\n".join(lines) + "\n")
    broken = cli("audit", "verify", "--state-dir", str(state))
    assert broken.returncode == 1 and "BROKEN" in broken.stdout
    exported = cli("audit", "export", "--state-dir", str(state))
    assert exported.returncode == 1


def test_bench_times_each_stage(sample_dir: Path) -> None:
    done = cli("bench", str(sample_dir / "astronaut.png"), "--iterations", "1")
    assert done.returncode == 0, done.stderr
    assert "ms median" in done.stdout
    for stage in ("decode", "detect", "segment", "render", "encode", "sheet"):
        assert stage in done.stdout


def test_a_thread_stuck_after_the_stop_does_not_keep_the_process() -> None:
    """The orderly stop is done; a request thread blocked forever must not hold the exit."""
    program = (
        "import threading\n"
        "from appliance.cli_state import leave_after_stop\n"
        "threading.Thread(target=threading.Event().wait, name='stuck-request').start()\n"
        "raise SystemExit(leave_after_stop(3, grace_s=0.2))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 3
    assert "1 thread(s) still busy: stuck-request" in done.stderr
