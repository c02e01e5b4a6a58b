"""The composition root: builds every service from the config, starts them, stops them.

Start order: harden the process, open the RAM workspace and the audit log, wipe what a crash
left behind (before anything can be served), load the models, open the devices, start the web
servers, then tell systemd READY=1. Stop order is the reverse, and every session is wiped
first, so SIGTERM (or Ctrl-C) never leaves a photo behind.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from appliance.config import Config
from appliance.devices.buttons import ApplianceStatus
from appliance.errors import ApplianceError
from appliance.sdnotify import Notifier, Watchdog

logger = logging.getLogger("appliance.daemon")
# How often the main thread wakes to run a signal handler that another thread received.
SIGNAL_POLL_S = 0.5


def demo_config(config: Config, samples: Path) -> Config:
    """A laptop's demo: a folder camera over the sample photos, a printer that keeps sheets in
    the (encrypted) session, mock pins driven from the tablet page; the real models."""
    folder = config.camera.folder or samples
    return config.model_copy(
        update={
            "camera": config.camera.model_copy(update={"backend": "folder", "folder": folder}),
            "printer": config.printer.model_copy(update={"backend": "file"}),
            "buttons": config.buttons.model_copy(update={"pin_factory": "mock"}),
        }
    )


@dataclass
class Daemon:
    config: Config
    bind: str | None = None
    port: int | None = None
    http_port: int | None = None
    notifier: Notifier = field(default_factory=Notifier)
    parts: dict[str, Any] = field(default_factory=dict)
    _stops: list[tuple[str, Callable[[], object]]] = field(default_factory=list)
    _stopped: threading.Event = field(default_factory=threading.Event)

    # --- start ---------------------------------------------------------------------------------

    def start(self) -> None:
        from appliance.idphoto.pipeline import IdPhotoPipeline
        from appliance.inference.service import InferenceService
        from appliance.memory import IdleTrimmer, release_free_memory, scrub_freed_memory
        from appliance.session import AuditLog, RetentionPolicy, SessionManager, Workspace
        from appliance.session.hardening import disable_core_dumps
        from appliance.studio import Studio

        config = self.config
        disable_core_dumps()
        # Freed memory is overwritten as it is freed, so a wipe leaves no plaintext copy in
        # this process (appliance/memory.py); a platform without glibc logs that it cannot.
        if not scrub_freed_memory():
            logger.warning("memory: freed buffers cannot be scrubbed here (not glibc)")
        config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Takes the root's lock first: a second daemon on this root stops here, before the
        # sweep below could delete the first one's live sessions.
        workspace = Workspace(
            config.workspace_dir,
            max_bytes=config.session.workspace_max_bytes,
            session_max_bytes=config.session.session_budget,
            session_reserve_bytes=config.session.session_reserve,
        )
        self._on_stop("workspace lock", workspace.close)
        audit = AuditLog(config.state_dir / "audit" / "audit.log")
        # Registered first, so it runs last: the audit log's final line says we stopped.
        self._on_stop("audit", lambda: audit.record("appliance.stopped", actor="system"))
        sessions = SessionManager(
            workspace,
            audit,
            retention=RetentionPolicy(
                idle_timeout_s=config.session.idle_timeout_s,
                max_lifetime_s=config.session.max_lifetime_s,
                download_window_s=config.session.download_window_s,
            ),
        )
        swept = sessions.sweep_leftovers()
        if swept:
            logger.warning("startup: wiped %d session(s) a previous run left behind", swept)
        self._on_stop("sessions", sessions.shutdown)
        inference = InferenceService.from_config(config.inference)

        def forget_photos(session: object) -> None:
            # The models' arenas are never freed, so overwrite them; then hand the freed
            # (already scrubbed) heap pages back to the kernel at once.
            inference.forget()
            release_free_memory()

        sessions.add_wipe_hook(forget_photos)
        pipeline = IdPhotoPipeline(inference, config)
        studio = Studio(sessions=sessions, pipeline=pipeline, audit=audit, imaging=config.imaging)
        self.parts.update(
            config=config, sessions=sessions, audit=audit, inference=inference, studio=studio
        )
        self._open_devices(studio)
        self._start_hotfolder(studio)
        self._start_web(studio)
        sessions.start_reaper()
        self._on_stop("reaper", sessions.stop_reaper)
        watchdog = Watchdog(self.notifier, self._inference_alive)
        watchdog.start()
        self._on_stop("watchdog", watchdog.stop)
        # Start small (model loading leaves freed buffers behind) and shrink again whenever
        # the studio is idle: see appliance/memory.py.
        release_free_memory()
        trimmer = IdleTrimmer()
        trimmer.start()
        self._on_stop("memory", trimmer.stop)
        if studio.on_status is not None:
            studio.on_status(ApplianceStatus.READY)
        audit.record("appliance.started", actor="system", count=swept)
        self.notifier.ready(f"serving on https port {self.parts['web'].https_port}")
        logger.info("ready: accelerator %s", inference.accelerator.name)

    def _on_stop(self, name: str, action: Callable[[], object]) -> None:
        self._stops.append((name, action))

    def _open_devices(self, studio: Any) -> None:
        from appliance.devices.buttons import Buttons, StatusLights, make_pin_factory
        from appliance.devices.camera import open_camera
        from appliance.devices.camera.preview import PreviewHub, PreviewPump
        from appliance.devices.printer import open_printer
        from appliance.web.services import purge_print_jobs

        config = self.config
        lights: Any = None
        factory: Any = None
        if config.buttons.enabled:
            factory = make_pin_factory(config.buttons.pin_factory)
            lights = StatusLights.from_config(config.buttons, pin_factory=factory)
            self._on_stop("lights", lights.close)
            lights.show(ApplianceStatus.BUSY)

        def camera_changed(state: Any) -> None:
            logger.info("camera: %s%s", state.status, f" ({state.reason})" if state.reason else "")
            if lights is not None:
                lights.show(ApplianceStatus.READY if state.ready else ApplianceStatus.ERROR)

        camera = open_camera(config.camera, on_state_change=camera_changed)
        self._on_stop("camera", camera.close)
        printer = open_printer(config.printer, store=studio.store_printed)
        studio.camera, studio.printer = camera, printer
        studio.on_status = lights.show if lights is not None else None
        studio.sessions.add_wipe_hook(purge_print_jobs(printer))
        hub = PreviewHub(idle_after_s=config.camera.preview_idle_s)
        pump = PreviewPump(camera, hub, fps=config.camera.preview_fps)
        pump.start()
        self._on_stop("preview", pump.stop)
        self._on_stop("preview hub", hub.close)
        self.parts.update(
            camera=camera, printer=printer, preview_hub=hub, lights=lights, pin_factory=factory
        )
        if factory is not None:
            from appliance.studio import BoothButtons

            buttons = Buttons.from_config(config.buttons, BoothButtons(studio), pin_factory=factory)
            self._on_stop("buttons", buttons.close)
            self.parts["buttons"] = buttons
            if config.buttons.pin_factory == "mock":
                self.parts["press"] = self._mock_press(factory)

    def _mock_press(self, factory: Any) -> Callable[[str, float], None]:
        """Drive a mock pin like a finger would (demo and tests: the pins are not real)."""
        config = self.config.buttons
        pins = {
            "capture": config.capture_pin,
            "print": config.print_pin,
            "finish": config.finish_pin,
        }

        def press(name: str, hold_s: float) -> None:
            pin = factory.pin(pins[name])
            pressed, released = (
                (pin.drive_low, pin.drive_high)
                if config.pull_up
                else (pin.drive_high, pin.drive_low)
            )
            pressed()
            self._stopped.wait(hold_s)
            released()

        return press

    def _start_hotfolder(self, studio: Any) -> None:
        config = self.config
        if not config.hotfolder.enabled:
            return
        from appliance.inputs.hotfolder import HotFolder
        from appliance.studio import NothingToDoError

        audit = self.parts["audit"]

        def deliver(data: bytes) -> None:
            session_id = studio.desk.session_id
            if session_id is None:
                raise NothingToDoError("no session on the desk for the hot folder's photo")
            studio.upload(session_id, data, "system")
            audit.record("hotfolder.received", actor="system", session=session_id, bytes=len(data))

        def refused(reason: str, size: int) -> None:
            # The reason is the hot folder's own fixed text; the file's name never gets here.
            audit.record("hotfolder.refused", actor="system", outcome="refused", bytes=size)
            logger.warning("hot folder: refused a file (%s, %d bytes)", reason, size)

        folder = HotFolder.from_config(config.hotfolder, deliver=deliver, on_refused=refused)
        folder.start()
        self._on_stop("hot folder", folder.stop)

    def _start_web(self, studio: Any) -> None:
        from appliance.web import WebServer, WebServices
        from appliance.web.users import UserStore

        parts = self.parts
        hub = parts["preview_hub"]

        def preview() -> Iterator[bytes]:
            seq = 0
            while not self._stopped.is_set():
                frame = hub.wait_for_frame(seq, 2.0)
                if frame is None:
                    continue
                seq = frame.seq
                yield frame.jpeg

        services = WebServices.build(
            self.config,
            sessions=parts["sessions"],
            pipeline=parts["studio"].pipeline,
            audit=parts["audit"],
            users=UserStore(self.config.state_dir),
            camera=parts["camera"],
            printer=parts["printer"],
            status=self.status,
            preview=preview,
            studio=studio,
            buttons=parts.get("press"),
        )
        web = WebServer(services, bind=self.bind, port=self.port, http_port=self.http_port)
        web.start()
        self._on_stop("web", web.stop)
        parts["web"] = web
        parts["web_services"] = services

    # --- health ------------------------------------------------------------------------------

    def _inference_alive(self) -> bool:
        """One tiny invoke through the shared lock: a hung interpreter stops the pings."""
        inference = self.parts.get("inference")
        studio = self.parts.get("studio")
        if inference is None or studio is None:
            return False
        if not studio.pipeline_lock.acquire(timeout=10.0):
            return False
        try:
            model = inference.detector.model
            width, height = model.input_size
            model.run(np.zeros((height, width, 3), np.uint8))
            return True
        except Exception:
            return False
        finally:
            studio.pipeline_lock.release()

    def status(self) -> dict[str, Any]:
        """For the tablet and the admin page: the doctor table of the running daemon."""
        from appliance.doctor import live_rows

        inference = self.parts["inference"]
        camera = self.parts.get("camera")
        return {
            "accelerator": inference.accelerator.name,
            # Per model: the variant it runs, why, and the startup timings that decided it.
            "models": {name: choice.to_dict() for name, choice in inference.variants.items()},
            "camera": getattr(camera, "state", None),
            "doctor": [row.to_dict() for row in live_rows(self.config, inference)],
        }

    # --- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.notifier.stopping()
        # Every session is wiped first (its action was registered first, so find it), then
        # the rest in reverse order of starting.
        ordered = [s for s in self._stops if s[0] == "sessions"]
        ordered += [s for s in reversed(self._stops) if s[0] != "sessions"]
        for name, action in ordered:
            try:
                action()
            except Exception as error:
                logger.error("stop: %s failed (%s)", name, type(error).__name__)
        logger.info("stopped")

    def run(self) -> int:
        """Start, serve until SIGTERM or SIGINT, stop. Returns the exit status."""
        wake = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            del frame
            logger.info("signal %s: stopping", signal.Signals(signum).name)
            wake.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.start()
        except ApplianceError as error:
            logger.error("cannot start: %s", error)
            self.stop()
            return 1
        # The kernel may hand SIGTERM to any thread; CPython then only flags it, and the handler
        # runs when the main thread next executes bytecode. A wait without end would keep it
        # asleep past the signal (seen under strace), so it wakes twice a second to look.
        while not wake.wait(SIGNAL_POLL_S):
            pass
        self.stop()
        return 0


class LogFormat(logging.Formatter):
    """One line per event, key=value, for the journal. Messages never carry customer data."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp} level={record.levelname} logger={record.name} msg={record.getMessage()!r}"


def configure_logging(level: int = logging.INFO) -> None:
    from appliance.logfilter import ClientAddressFilter, route_uncaught_exceptions

    handler = logging.StreamHandler()
    handler.setFormatter(LogFormat())
    handler.addFilter(ClientAddressFilter())
    route_uncaught_exceptions()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Werkzeug's access log would carry client addresses: keep it quiet.
    for noisy in ("werkzeug",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
