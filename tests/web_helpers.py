"""Helpers for the web tests: harness, device doubles, in-memory multipart, the write watch.

Everything real except the devices: a real SessionManager over a tmpfs workspace under /dev/shm
(one directory per test, removed afterwards), a real AuditLog and user store in tmp_path, and
the real ID-photo pipeline on the session's real models where a test makes products. Camera and
printer are the devices' own fakes.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from appliance.config import Config
from appliance.devices.camera.fake import FakeCamera
from appliance.devices.printer.fake import FakePrinter
from appliance.session import AuditLog, SessionManager, Workspace
from appliance.web.app import create_app
from appliance.web.services import WebServices, purge_print_jobs
from appliance.web.settings import WebSettings
from appliance.web.users import UserStore

SHM = Path("/dev/shm")
BASE_URL = "https://localhost"
ADMIN, ADMIN_PASSWORD = "admin", "correct horse battery"
OPERATOR, OPERATOR_PIN = "olga", "482913"
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class RefusingPipeline:
    """For tests that must never reach the pipeline."""

    def process(self, data: bytes, request: object) -> object:
        raise AssertionError("the pipeline should not run in this test")


def multipart(field: str, filename: str, content_type: str, data: bytes) -> tuple[bytes, str]:
    """A multipart body built in memory (the test client's own encoder spools big bodies to
    /tmp, which would blur what the audit hook sees of the app)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def studio_camera(jpeg: bytes) -> FakeCamera:
    """The devices' own fake camera, opened, handing out ``jpeg`` for captures and previews."""
    camera = FakeCamera(frames=[jpeg], previews=[jpeg])
    camera.open()
    return camera


def three_preview_frames(camera: FakeCamera) -> Callable[[], Iterator[bytes]]:
    """A preview source that ends (the fake camera's own preview never does)."""
    return lambda: itertools.islice(camera.frames(), 3)


def jpeg_of(path: Path) -> bytes:
    stream = io.BytesIO()
    Image.open(path).convert("RGB").save(stream, "JPEG", quality=92)
    return stream.getvalue()


def open_link(customer: FlaskClient, url: str) -> tuple[dict[str, bytes], bytes, str]:
    """What the phone does with a sealed link: the page, one fetch, decrypt with the fragment's
    key. Returns the files by kind, the deletion secret and the link's path."""
    from urllib.parse import urlsplit

    from appliance.web.sealed import b64url_decode, unseal

    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.fragment, url
    page = customer.get(parts.path)
    assert page.status_code == 200, page.status_code
    assert parts.fragment not in page.get_data(as_text=True)
    sealed = customer.get(parts.path + "/sealed")
    assert sealed.status_code == 200 and sealed.headers["Cache-Control"] == "no-store"
    token = parts.path.rsplit("/", 1)[1]
    files, secret = unseal(token, b64url_decode(parts.fragment), sealed.data)
    return files, secret, parts.path


@dataclass
class Harness:
    app: Flask
    services: WebServices
    client: FlaskClient
    state_dir: Path
    workspace_root: Path
    audit_path: Path
    printer: FakePrinter | None
    camera: FakeCamera | None
    allowed_write_roots: list[Path] = field(default_factory=list)

    @property
    def users(self) -> UserStore:
        return self.services.users

    def new_client(self) -> FlaskClient:
        return self.app.test_client()

    def csrf(self, client: FlaskClient | None = None, path: str = "/login") -> str:
        page = (client or self.client).get(path)
        found = _CSRF.search(page.get_data(as_text=True))
        assert found, f"no csrf meta on {path} ({page.status_code})"
        return found.group(1)

    def login(self, username: str, password: str, client: FlaskClient | None = None) -> FlaskClient:
        client = client or self.client
        token = self.csrf(client, "/login")
        response = client.post(
            "/login",
            data={"username": username, "password": password, "csrf_token": token},
        )
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return client

    def staff(self) -> None:
        """Create the admin (as if set up) and an operator."""
        if self.users.user(ADMIN) is None:
            self.users.add_user(ADMIN, "admin", ADMIN_PASSWORD)
        if self.users.user(OPERATOR) is None:
            self.users.add_user(OPERATOR, "operator", OPERATOR_PIN)

    def bearer(self, role: str = "operator") -> dict[str, str]:
        _, token = self.users.create_token(role, f"test {role}")
        return {"Authorization": f"Bearer {token}"}

    def pair_kiosk(
        self, desk: str = "booth", client: FlaskClient | None = None
    ) -> tuple[FlaskClient, str]:
        """A client paired as a kiosk of ``desk`` through the real pairing form; its id."""
        kiosk = client or self.new_client()
        code = self.app.extensions["appliance"].kiosks.new_pairing_code(f"Kiosk {desk}", desk)
        token = self.csrf(kiosk, "/kiosk/pair")
        response = kiosk.post("/kiosk/pair", data={"code": code.lower(), "csrf_token": token})
        assert response.status_code == 302 and response.headers["Location"] == "/kiosk"
        kiosk_id = self.app.extensions["appliance"].kiosks.kiosks()[-1].kiosk_id
        return kiosk, kiosk_id

    def kiosk_csrf(self, kiosk: FlaskClient) -> str:
        return self.csrf(kiosk, "/kiosk")

    def customer_client(self) -> FlaskClient:
        """A client of the plain-HTTP app (CA page and the customers' sealed downloads)."""
        from appliance.web.server import create_ca_app

        context = self.app.extensions["appliance"]
        app = create_ca_app(self.services, context.address.https_port)
        app.config["TESTING"] = True
        return app.test_client()

    def audit_events(self) -> list[dict[str, Any]]:
        import json

        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


def make_harness(
    config: Config,
    tmp_path: Path,
    *,
    pipeline: Any = None,
    camera: FakeCamera | None = None,
    printer: FakePrinter | None = None,
    settings: WebSettings | None = None,
    preview: Any = None,
    workspace_bytes: tuple[int, int, int] | None = None,
) -> Harness:
    """``workspace_bytes``: (max, per-session max, per-session reserve); default 256 MiB, no
    per-session limits (many tests open several sessions in one harness)."""
    state_dir = tmp_path / "state"
    workspace_root = SHM / f"appliance-web-test-{uuid.uuid4().hex[:12]}"
    total, per_session, reserve = workspace_bytes or (256 * 1024 * 1024, None, 0)
    workspace = Workspace(
        workspace_root, max_bytes=total, session_max_bytes=per_session,
        session_reserve_bytes=reserve,
    )  # fmt: skip
    audit_path = state_dir / "audit" / "audit.log"
    audit = AuditLog(audit_path)
    sessions = SessionManager(workspace, audit)
    if printer is not None:
        sessions.add_wipe_hook(purge_print_jobs(printer))
    test_config = config.model_copy(update={"state_dir": state_dir})
    services = WebServices(
        config=test_config,
        sessions=sessions,
        pipeline=pipeline if pipeline is not None else RefusingPipeline(),
        audit=audit,
        users=UserStore(state_dir),
        camera=camera,
        printer=printer,
        preview=preview,
        settings=settings or WebSettings(),
    )
    app = create_app(services, {"TESTING": True})
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return Harness(
        app,
        services,
        client,
        state_dir,
        workspace_root,
        audit_path,
        printer,
        camera,
        [workspace_root, state_dir],  # the state dir: audit log, user store lock
    )


def close_harness(harness: Harness) -> None:
    harness.services.sessions.shutdown()
    harness.services.sessions.workspace.close()
    shutil.rmtree(harness.workspace_root, ignore_errors=True)


# --- watching the disk: a Python audit hook (it cannot be removed, so it is installed once) ---


class WriteWatch:
    """Records file opens for writing and temp-file creation on one thread while active."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.thread: int | None = None

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.thread is None or threading.get_ident() != self.thread:
            return
        if event == "open":
            path, mode, flags = args
            text_mode = isinstance(mode, str) and any(c in mode for c in "wax+")
            write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT  # O_TMPFILE needs one of them
            if text_mode or (isinstance(flags, int) and flags & write_flags):
                self.events.append((event, str(path)))
        elif event in ("tempfile.mkstemp", "tempfile.mkdtemp", "os.mkdir"):
            self.events.append((event, str(args[0])))

    def outside(self, allowed: list[Path]) -> list[tuple[str, str]]:
        roots = [str(root) for root in allowed]
        return [
            (event, path)
            for event, path in self.events
            if event.startswith("tempfile.") or not any(path.startswith(r) for r in roots)
        ]


def session_entries(workspace_root: Path) -> list[Path]:
    """What sessions left in a workspace root: everything but the daemon's own root lock."""
    from appliance.session.rootlock import LOCK_NAME

    return [entry for entry in workspace_root.iterdir() if entry.name != LOCK_NAME]
