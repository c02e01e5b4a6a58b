"""The shared studio actions (tablet, API, buttons) on real sessions, the real pipeline and
gpiozero's mock pins; races between a wipe and work in flight end cleanly."""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from appliance.config import Config
from appliance.devices.buttons import Buttons
from appliance.devices.camera.fake import FakeCamera
from appliance.devices.printer.fake import FakePrinter
from appliance.errors import ApplianceError
from appliance.idphoto.pipeline import IdPhotoPipeline, Product, ProductRequest
from appliance.session import AuditLog, SessionManager, Workspace
from appliance.session.state import LinkInvalidError, SessionNotFoundError, SessionState
from appliance.studio import BoothButtons, NothingToDoError, Studio
from appliance.web.services import purge_print_jobs


@pytest.fixture
def parts(
    tmp_path: Path, inference: Any, config: Config, sample_dir: Path
) -> Iterator[dict[str, Any]]:
    root = Path("/dev/shm") / f"appliance-studio-test-{uuid.uuid4().hex[:8]}"
    workspace = Workspace(root, max_bytes=256 * 1024 * 1024)
    audit = AuditLog(tmp_path / "audit.log")
    sessions = SessionManager(workspace, audit)
    printer = FakePrinter()
    sessions.add_wipe_hook(purge_print_jobs(printer))
    camera = FakeCamera(frames=[(sample_dir / "astronaut.png").read_bytes()])
    camera.open()
    studio = Studio(
        sessions=sessions,
        pipeline=IdPhotoPipeline(inference, config),
        audit=audit,
        camera=camera,
        printer=printer,
    )
    yield {
        "studio": studio,
        "sessions": sessions,
        "printer": printer,
        "root": root,
        "audit": tmp_path / "audit.log",
    }
    sessions.shutdown()
    shutil.rmtree(root, ignore_errors=True)


def test_buttons_run_a_whole_session(parts: dict[str, Any]) -> None:
    studio: Studio = parts["studio"]
    factory = MockFactory()
    done = threading.Event()
    booth = BoothButtons(studio)
    buttons = Buttons(
        booth,
        pin_factory=factory,
        capture_pin=17,
        print_pin=27,
        finish_pin=22,
        hold_time=0.2,
        bounce_time=0.0,
    )
    try:
        # No session on the desk: the button does nothing but say so.
        with pytest.raises(NothingToDoError):
            booth.capture()
        session = studio.start("staff:olga")
        with pytest.raises(NothingToDoError, match="accepted the notice"):
            booth.capture()  # consent comes from the customer screen, never from a button
        studio.consent(session.session_id, "staff:olga")
        pin = factory.pin(17)
        pin.drive_low()
        pin.drive_high()
        assert buttons.wait_idle(60)
        assert studio.desk.product_id is not None
        assert studio.session(session.session_id).state is SessionState.REVIEWING
        factory.pin(27).drive_low()
        factory.pin(27).drive_high()
        assert buttons.wait_idle(30)
        assert len(parts["printer"].jobs) == 1
        finish = factory.pin(22)
        finish.drive_low()
        finish.drive_high()  # a tap: nothing
        assert buttons.wait_idle(5)
        assert studio.sessions.find(session.session_id) is not None
        finish.drive_low()
        done.wait(0.5)  # held past hold_time
        finish.drive_high()
        assert buttons.wait_idle(10)
        assert studio.sessions.find(session.session_id) is None
        assert parts["printer"].purged == list(parts["printer"].jobs)
        assert not any(p.is_dir() for p in parts["root"].iterdir())
    finally:
        buttons.close()


def test_wipe_during_processing_ends_cleanly(parts: dict[str, Any]) -> None:
    studio: Studio = parts["studio"]
    real = studio.pipeline
    started, release = threading.Event(), threading.Event()

    class Paused:
        """The real pipeline, held at its start so the test can wipe meanwhile."""

        def process(self, data: bytes, request: ProductRequest) -> Product:
            started.set()
            release.wait(30)
            return real.process(data, request)

    studio.pipeline = Paused()
    session = studio.start("staff:olga")
    sid = session.session_id
    studio.consent(sid, "staff:olga")
    photo = studio.capture(sid, "staff:olga")
    errors: list[BaseException] = []

    def work() -> None:
        try:
            studio.make_product(
                sid, photo.item_id, ProductRequest(spec_id="icao-35x45"), "staff:olga"
            )
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=work)
    worker.start()
    assert started.wait(10)
    studio.finish(sid, "staff:olga", wipe=True)
    release.set()
    worker.join(60)
    assert len(errors) == 1 and isinstance(errors[0], ApplianceError), errors
    assert isinstance(errors[0], SessionNotFoundError)
    assert not any(p.is_dir() for p in parts["root"].iterdir())


def test_timeout_during_a_download(parts: dict[str, Any]) -> None:
    studio: Studio = parts["studio"]
    sessions: SessionManager = parts["sessions"]
    sid = studio.start("staff:olga").session_id
    studio.consent(sid, "staff:olga")
    photo = studio.capture(sid, "staff:olga")
    product_id, _ = studio.make_product(
        sid, photo.item_id, ProductRequest(spec_id="us-2x2"), "staff:olga"
    )
    studio.advance(sid, SessionState.DELIVERING, "staff:olga")
    link = sessions.create_link(sid, product_id, uses=5)
    studio.finish(sid, "staff:olga")  # kept alive for the download window
    first = sessions.redeem_link(link.token)
    assert first.data.startswith(b"\xff\xd8")
    results: list[object] = []

    def downloads() -> None:
        for _ in range(3):
            try:
                results.append(len(sessions.redeem_link(link.token).data))
            except LinkInvalidError as error:
                results.append(error)

    worker = threading.Thread(target=downloads)
    worker.start()
    # The download window ends while the customer is downloading.
    sessions.tick(now=sessions.find(sid).finished_at + 10_000)  # type: ignore[union-attr]
    worker.join(30)
    assert sessions.find(sid) is None
    assert all(isinstance(r, int | LinkInvalidError) for r in results)
    with pytest.raises(LinkInvalidError):
        sessions.redeem_link(link.token)
    assert not any(p.is_dir() for p in parts["root"].iterdir())


def test_double_wipe_is_one_event(parts: dict[str, Any]) -> None:
    studio: Studio = parts["studio"]
    sid = studio.start("staff:olga").session_id
    studio.finish(sid, "staff:olga", wipe=True)
    assert studio.finish(sid, "staff:olga", wipe=True) == "wiped"  # again: nothing more to do
    wiped = [line for line in parts["audit"].read_text().splitlines() if '"session.wiped"' in line]
    assert len(wiped) == 1
