"""A camera that survives being unplugged: a clear state, and a reconnect loop with backoff.

:class:`ReconnectingCamera` wraps any backend. While the backend works it is ``ready``. The
first ``CameraUnavailable``/``OSError`` (ENODEV, a failed read, a timeout) closes the backend,
switches the state to ``unavailable`` with the reason, tells ``on_state_change`` (LEDs,
tablet), and starts one background thread that re-opens the backend after 0.5 s, 1 s, 2 s, …
up to a ceiling, until it works or the camera is closed. Calls made meanwhile fail at once
with ``CameraUnavailable`` instead of hanging on a dead device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from appliance.devices.camera.base import (
    Camera,
    CameraState,
    CameraUnavailable,
    unavailable_from,
)

logger = logging.getLogger(__name__)

# Waits ``delay`` seconds unless ``stop`` is set first; returns True when stop was set.
Sleeper = Callable[[threading.Event, float], bool]
StateCallback = Callable[[CameraState], None]


def event_sleeper(stop: threading.Event, delay: float) -> bool:
    return stop.wait(delay)


def backoff_delays(initial: float, ceiling: float) -> Iterator[float]:
    """initial, 2*initial, 4*initial, … capped at ceiling, forever."""
    delay = initial
    while True:
        yield min(delay, ceiling)
        delay = min(delay * 2, ceiling)


class ReconnectingCamera:
    """Implements :class:`~appliance.devices.camera.base.Camera` around a backend."""

    def __init__(
        self,
        backend: Camera,
        *,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        on_state_change: StateCallback | None = None,
        sleeper: Sleeper = event_sleeper,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self._initial = initial_backoff_s
        self._ceiling = max_backoff_s
        self._on_state_change = on_state_change
        self._sleeper = sleeper
        self._clock = clock
        self._device_lock = threading.RLock()  # one call into the backend at a time
        self._state_lock = threading.Lock()
        self._ready_changed = threading.Condition(self._state_lock)
        self._state = CameraState("unavailable", "not opened", clock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.attempts = 0  # reconnect attempts since the camera was last lost

    # --- state -----------------------------------------------------------------------------

    @property
    def state(self) -> CameraState:
        with self._state_lock:
            return self._state

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_ready(self, timeout: float) -> bool:
        """Block until the camera is ready (True) or ``timeout`` passes / it is closed (False)."""
        deadline = time.monotonic() + timeout
        with self._ready_changed:
            while not self._state.ready and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._ready_changed.wait(remaining):
                    break
            return self._state.ready

    def _set_state(self, status: str, reason: str) -> None:
        with self._ready_changed:
            if self._state.status == status and self._state.reason == reason:
                return
            state = CameraState(
                "ready" if status == "ready" else "unavailable", reason, self._clock()
            )
            self._state = state
            self._ready_changed.notify_all()
        if state.ready:
            logger.info("camera ready")
        else:
            logger.warning("camera unavailable: %s", reason)
        if self._on_state_change is not None:
            try:
                self._on_state_change(state)
            except Exception:  # a broken LED callback must not take the camera down
                logger.exception("camera state callback failed")

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Open the backend; when it is not there, stay up as ``unavailable`` and retry."""
        with self._state_lock:
            self._closed = False
        self._stop.clear()
        with self._device_lock:
            try:
                self.backend.open()
            except OSError as error:
                self._lost(unavailable_from(error, "cannot open the camera"))
                return
        self._set_state("ready", "")

    def close(self) -> None:
        with self._state_lock:
            self._closed = True
            self._ready_changed.notify_all()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._device_lock:
            self._close_backend()
        self._set_state("unavailable", "closed")

    def __enter__(self) -> ReconnectingCamera:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- use -----------------------------------------------------------------------------------

    def capture(self) -> bytes:
        with self._device_lock:
            self._require_ready()
            try:
                return self.backend.capture()
            except OSError as error:
                lost = unavailable_from(error, "capture failed")
                self._lost(lost)
                raise lost from error

    def frames(self) -> Iterator[bytes]:
        """Preview JPEGs from the backend; raises CameraUnavailable if the camera goes away."""
        with self._device_lock:
            self._require_ready()
            source = self.backend.frames()
        try:
            while True:
                with self._device_lock:
                    self._require_ready()
                    try:
                        frame = next(source)
                    except StopIteration:
                        return
                    except OSError as error:
                        lost = unavailable_from(error, "preview failed")
                        self._lost(lost)
                        raise lost from error
                yield frame
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                with self._device_lock:
                    close()

    def _require_ready(self) -> None:
        state = self.state
        if not state.ready:
            raise CameraUnavailable(state.reason or "not ready")

    # --- losing and finding the device ----------------------------------------------------

    def _close_backend(self) -> None:
        try:
            self.backend.close()
        except Exception as error:  # closing a vanished device often fails; it is gone anyway
            logger.debug("closing the camera backend failed: %s", type(error).__name__)

    def _lost(self, error: CameraUnavailable) -> None:
        with self._device_lock:
            self._close_backend()
        if self._closed:
            return
        self._set_state("unavailable", error.reason)
        self._start_reconnect()

    def _start_reconnect(self) -> None:
        with self._state_lock:
            if self._closed or (self._thread is not None and self._thread.is_alive()):
                return
            self.attempts = 0
            self._thread = threading.Thread(
                target=self._reconnect_loop, name="camera-reconnect", daemon=True
            )
            self._thread.start()

    def _reconnect_loop(self) -> None:
        for delay in backoff_delays(self._initial, self._ceiling):
            if self._sleeper(self._stop, delay) or self._stop.is_set():
                return
            self.attempts += 1
            with self._device_lock:
                if self._stop.is_set():
                    return
                try:
                    self.backend.open()
                except OSError as error:
                    self._close_backend()
                    reason = unavailable_from(error, "cannot open the camera").reason
                    self._set_state("unavailable", reason)
                    continue
                with self._state_lock:
                    # Done before the device lock is released, so a loss right after this
                    # starts a fresh reconnect thread instead of counting on this one.
                    self._thread = None
                self._set_state("ready", "")
            logger.info("camera back after %d attempt(s)", self.attempts)
            return
