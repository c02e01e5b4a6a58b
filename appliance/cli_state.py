"""The `appliance` commands that run the daemon or touch its persistent state: run,
firstboot, setup-code, token, mfa-reset and audit. Each takes `--state-dir` (see
`appliance.cli`)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from pathlib import Path

from appliance.config import Config
from appliance.errors import ApplianceError


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    from appliance.daemon import Daemon, configure_logging, demo_config

    configure_logging()
    if args.demo:
        config = demo_config(config, Path("samples").absolute())
    daemon = Daemon(config, bind=args.bind, port=args.port, http_port=args.http_port)
    return leave_after_stop(daemon.run())


def leave_after_stop(code: int, grace_s: float = 5.0) -> int:
    """After the daemon's orderly stop (every session wiped, its key dropped, the audit event
    written), a thread still blocked in a request (a stream waiting on a closed device, say)
    must not keep the process alive until systemd kills it: give the others `grace_s`, then
    exit anyway and say which threads were still busy (their names only)."""
    deadline = time.monotonic() + grace_s
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    busy = [
        t.name
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if not busy:
        return code
    logging.getLogger("appliance").warning(
        "stopped; exiting with %d thread(s) still busy: %s", len(busy), ", ".join(busy)
    )
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)


def cmd_firstboot(args: argparse.Namespace, config: Config) -> int:
    """Generate this device's secrets once: CA, server certificate, setup code."""
    from appliance.statefiles import write_private
    from appliance.web.tls import ca_certificate, ensure_certificates, fingerprint
    from appliance.web.users import UserStore

    del args
    state = config.state_dir
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    ensure_certificates(state)
    users = UserStore(state)
    if users.needs_setup():
        code = users.new_setup_code()
        print(f"one-time setup code: {code}")
    ca = ca_certificate(state)
    if ca is not None:
        print(f"appliance CA sha256 fingerprint: {fingerprint(ca)}")
    # Last, so an interrupted first boot runs again.
    write_private(state / ".initialised", b"")
    return 0


def cmd_setup_code(args: argparse.Namespace, config: Config) -> int:
    from appliance.web.users import UserStore, setup_code

    del args
    if not UserStore(config.state_dir).needs_setup():
        raise ApplianceError(
            "setup is done: an admin exists (log in, or reset from the admin page)"
        )
    print(setup_code(config.state_dir))
    return 0


def cmd_token(args: argparse.Namespace, config: Config) -> int:
    from appliance.web.kiosks import KioskStore
    from appliance.web.users import create_token, list_tokens, revoke_token

    state = config.state_dir
    kiosks = KioskStore(state)  # paired customer screens: device credentials, listed here too
    if args.action == "create":
        if not args.name:
            raise ApplianceError("token create needs --name NAME")
        token = create_token(state, args.role, args.name)
        print(f"API token for {args.name!r} ({args.role}); it is shown this once:")
        print(token)
        return 0
    if args.action == "list":
        for record in list_tokens(state):
            print(f"{record.token_id}  {record.role:<8} {record.name}")
        for kiosk in kiosks.kiosks():
            print(f"{kiosk.kiosk_id}  {kiosk.role:<8} {kiosk.name} (desk {kiosk.desk})")
        return 0
    if not args.id:
        raise ApplianceError("token revoke needs --id ID (see `appliance token list`)")
    if not revoke_token(state, args.id) and not kiosks.revoke(args.id):
        raise ApplianceError(f"no token with id {args.id} (see `appliance token list`)")
    print(f"revoked {args.id}")
    return 0


def cmd_mfa_reset(args: argparse.Namespace, config: Config) -> int:
    """The way back in for the last admin: whoever has a shell on the device may reset."""
    from appliance.session.audit import AuditLog
    from appliance.web.mfa import StaffMfa
    from appliance.web.passkeys import PasskeyStore
    from appliance.web.users import UserStore

    users = UserStore(config.state_dir)
    if users.user(args.username) is None:
        raise ApplianceError(f"there is no staff member {args.username!r}")
    removed = StaffMfa(users).remove(args.username)
    removed = PasskeyStore(users).remove_all(args.username) > 0 or removed
    if not removed:
        print(f"{args.username} has no two-step login or passkey; nothing to reset")
        return 0
    AuditLog(_audit_path(config)).record("mfa.reset", actor="system")
    print(
        f"two-step login and passkeys of {args.username} removed: they log in with the password now"
    )
    return 0


def cmd_audit(args: argparse.Namespace, config: Config) -> int:
    from appliance.session.audit import AuditLog, verify_chain

    if args.action == "verify":
        paths = [args.path] if args.path else AuditLog(_audit_path(config)).files()
        result = verify_chain(paths)
        if result.ok:
            pruned = "; older files pruned, as the log records" if result.after_pruning else ""
            print(f"ok: {result.good_lines} lines, chain intact{pruned}")
            return 0
        print(
            f"BROKEN at {result.broken_at}: {result.problem} "
            f"({result.good_lines} good lines before it)"
        )
        return 1
    result = AuditLog(_audit_path(config)).export(sys.stdout.buffer)
    return 0 if result.ok else 1


def _audit_path(config: Config) -> Path:
    return config.state_dir / "audit" / "audit.log"
