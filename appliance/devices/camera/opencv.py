"""USB/V4L2 webcams and Jetson CSI cameras through OpenCV's ``cv2.VideoCapture``.

``camera.device`` picks the source:

* an index (``0``) or a path (``"/dev/video0"``): V4L2, asking for MJPEG so USB cameras reach
  full resolution, and a one-frame buffer so a capture is what is in front of the lens now;
* a GStreamer pipeline (any string with ``!``), for a Jetson CSI camera, e.g.
  ``nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1920,height=1080 ! nvvidconv !
  video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1``;
* any other string (a video file or URL): whatever OpenCV backend opens it (demos, tests).

Frames are encoded to JPEG in memory with ``cv2.imencode``; nothing is written to disk. A read
that fails (the cable was pulled) raises CameraUnavailable.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterator
from typing import Any

from appliance.devices.camera.base import CameraBase, CameraError, CameraUnavailable
from appliance.devices.config import CameraConfig

DEFAULT_SIZE = (1920, 1080)


def _cv2() -> Any:
    import cv2

    return cv2


class OpenCVCamera(CameraBase):
    def __init__(
        self,
        config: CameraConfig,
        *,
        video_capture: Callable[[int | str, int], Any] | None = None,
    ) -> None:
        self._device = config.device
        self._size = (config.width, config.height) if config.width and config.height else None
        self._preview_size = (config.preview_width, config.preview_height)
        self._quality = config.jpeg_quality
        self._preview_quality = config.preview_quality
        self._video_capture = video_capture  # injected in tests; cv2.VideoCapture otherwise
        self._cap: Any = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        device = self._device
        if isinstance(device, str) and "!" in device:
            return "the GStreamer pipeline"
        return f"video device {device}"

    def _source(self) -> tuple[int | str, int]:
        cv2 = _cv2()
        device = self._device
        if isinstance(device, int):
            return device, cv2.CAP_V4L2
        if "!" in device:
            return device, cv2.CAP_GSTREAMER
        if device.isdigit():
            return int(device), cv2.CAP_V4L2
        if device.startswith("/dev/video"):
            return device, cv2.CAP_V4L2
        return device, cv2.CAP_ANY

    def open(self) -> None:
        cv2 = _cv2()
        source, api = self._source()
        factory = self._video_capture or cv2.VideoCapture
        cap = factory(source, api)
        if not cap.isOpened():
            cap.release()
            raise CameraUnavailable(f"cannot open {self.describe()}", errno_value=errno.ENODEV)
        if api == cv2.CAP_V4L2:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
            width, height = self._size or DEFAULT_SIZE
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        ok, _frame = cap.read()
        if not ok:
            cap.release()
            raise CameraUnavailable(
                f"{self.describe()} opened but delivers no frames", errno_value=errno.EIO
            )
        with self._lock:
            self._cap = cap

    def _read(self, *, fresh: bool) -> Any:
        with self._lock:
            cap = self._cap
            if cap is None:
                raise CameraError("the camera is not open")
            if fresh:
                cap.grab()  # drop the frame that waited in the buffer
            ok, frame = cap.read()
        if not ok or frame is None:
            raise CameraUnavailable(
                f"reading from {self.describe()} failed (unplugged?)", errno_value=errno.EIO
            )
        return frame

    def capture(self) -> bytes:
        return _encode(self._read(fresh=True), self._quality)

    def frames(self) -> Iterator[bytes]:
        cv2 = _cv2()
        max_w, max_h = self._preview_size
        while True:
            frame = self._read(fresh=False)
            height, width = frame.shape[:2]
            scale = min(max_w / width, max_h / height, 1.0)
            if scale < 1.0:
                size = (max(1, round(width * scale)), max(1, round(height * scale)))
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            yield _encode(frame, self._preview_quality)

    def close(self) -> None:
        with self._lock:
            cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def _encode(frame: Any, quality: int) -> bytes:
    cv2 = _cv2()
    ok, buffer = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CameraError("JPEG encoding of a camera frame failed")
    return bytes(buffer)
