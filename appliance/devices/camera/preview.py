"""Live preview for the tablet: one producer, many viewers, latest frame only.

:class:`PreviewHub` holds exactly one frame (the newest) and a sequence number. Viewers call
``wait_for_frame(after_seq, timeout)`` and get whatever is newest, so a slow viewer skips
frames instead of making anything queue up: memory stays one JPEG whatever the clients do.
:class:`PreviewPump` is the producer thread: it reads the camera's preview frames at the
configured rate, only while someone has asked for a frame recently, and waits quietly while
the camera is unavailable (the camera reconnects by itself).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from appliance.devices.camera.base import CameraUnavailable
from appliance.devices.camera.reconnect import ReconnectingCamera

logger = logging.getLogger(__name__)

MJPEG_BOUNDARY = "frame"
MJPEG_MIMETYPE = f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}"


@dataclass(frozen=True)
class PreviewFrame:
    seq: int
    jpeg: bytes
    at: float  # clock() when it was published


class PreviewHub:
    """Latest-frame-only mailbox between the preview producer and any number of viewers."""

    def __init__(
        self, *, idle_after_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._idle_after = idle_after_s
        self._changed = threading.Condition()
        self._frame: PreviewFrame | None = None
        self._seq = 0
        self._last_demand = float("-inf")
        self._closed = False
        self.published = 0  # frames handed in by the producer

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, jpeg: bytes) -> int:
        """Replace the current frame; returns its sequence number."""
        with self._changed:
            self._seq += 1
            self.published += 1
            self._frame = PreviewFrame(self._seq, jpeg, self._clock())
            self._changed.notify_all()
            return self._seq

    def latest(self) -> PreviewFrame | None:
        with self._changed:
            return self._frame

    def clear(self) -> None:
        """Forget the current frame (camera lost: do not keep showing a stale picture)."""
        with self._changed:
            self._frame = None

    def wait_for_frame(self, after_seq: int, timeout: float) -> PreviewFrame | None:
        """The newest frame with ``seq > after_seq``, or None on timeout or close.

        Calling this is what tells the producer that someone is watching.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            self._last_demand = self._clock()
            self._changed.notify_all()  # wakes a pump that idles for lack of viewers
            while not self._closed:
                frame = self._frame
                if frame is not None and frame.seq > after_seq:
                    return frame
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(remaining)
                self._last_demand = self._clock()
            return None

    def has_viewers(self) -> bool:
        with self._changed:
            return self._clock() - self._last_demand < self._idle_after

    def wait_for_viewers(self, timeout: float) -> bool:
        with self._changed:
            if not self._closed and self._clock() - self._last_demand >= self._idle_after:
                self._changed.wait(timeout)
            return not self._closed and self._clock() - self._last_demand < self._idle_after

    def close(self) -> None:
        """Wake every viewer; they get None and their streams end."""
        with self._changed:
            self._closed = True
            self._frame = None
            self._changed.notify_all()

    def mjpeg(self, *, frame_timeout: float = 2.0) -> Iterator[bytes]:
        """multipart/x-mixed-replace parts for an HTTP response (see MJPEG_MIMETYPE).

        Ends when the hub closes; a client that disconnects stops it at the next yield.
        """
        seq = 0
        while not self._closed:
            frame = self.wait_for_frame(seq, frame_timeout)
            if frame is None:
                continue
            seq = frame.seq
            header = (
                f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                f"Content-Length: {len(frame.jpeg)}\r\n\r\n"
            ).encode("ascii")
            yield header + frame.jpeg + b"\r\n"


class PreviewPump:
    """The one producer thread: camera preview frames into the hub at ``fps``."""

    def __init__(
        self,
        camera: ReconnectingCamera,
        hub: PreviewHub,
        *,
        fps: float = 10.0,
        poll_s: float = 0.5,
    ) -> None:
        self._camera = camera
        self._hub = hub
        self._interval = 1.0 / fps
        self._poll = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="camera-preview", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set() and not self._hub.closed:
            if not self._hub.wait_for_viewers(self._poll):
                continue
            if not self._camera.wait_ready(self._poll):
                self._hub.clear()
                if self._camera.closed:  # wait_ready returns at once then: do not spin
                    self._stop.wait(self._poll)
                continue
            try:
                self._stream()
            except CameraUnavailable:
                self._hub.clear()  # the camera reconnects by itself; wait for it above
            except Exception:
                logger.exception("preview producer failed; retrying")
                self._stop.wait(self._poll)

    def _stream(self) -> None:
        frames = self._camera.frames()
        try:
            next_due = time.monotonic()
            for jpeg in frames:
                self._hub.publish(jpeg)
                if not self._hub.has_viewers():
                    return
                # Pace to fps: a frame that came early waits, a late one is not made up for.
                next_due = max(next_due + self._interval, time.monotonic())
                if self._stop.wait(max(0.0, next_due - time.monotonic())):
                    return
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()
