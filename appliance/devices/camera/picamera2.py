"""Raspberry Pi cameras (libcamera) through picamera2, imported only when the camera opens.

One still configuration at the sensor's full resolution (or the configured size) with a small
``lores`` YUV stream beside it for the preview, so switching between preview and capture
needs no mode switch. Stills and preview frames are JPEG-encoded by picamera2 straight into a
``BytesIO``: nothing goes to a file. Cameras with autofocus (Camera Module 3) run one AF cycle
before each still. Every picamera2 call that waits is given a timeout, so an unplugged ribbon
cable turns into ``CameraUnavailable`` instead of a hang.

On Raspberry Pi OS picamera2 comes from apt (``python3-picamera2``); the venv must then be
created with ``--system-site-packages`` to see it. Of the compiled helpers picamera2 imports,
only simplejpeg uses numpy's C API, so the OS's build (against Debian's numpy 1.24 on
Bookworm) cannot load beside the venv's numpy 2; the venv therefore carries the pinned
simplejpeg wheel (the ``pi`` extra), which picamera2 then imports instead (docs/aarch64.md).
"""

from __future__ import annotations

import errno
import io
import logging
import threading
from collections.abc import Iterator
from typing import Any

from appliance.devices.camera.base import CameraBase, CameraConfigError, CameraUnavailable
from appliance.devices.config import CameraConfig

logger = logging.getLogger(__name__)


def _picamera2_class() -> Any:
    try:
        from picamera2 import Picamera2
    # ValueError: a compiled module built against numpy 1.x fails its import-time check
    # ("numpy.dtype size changed") under numpy 2 with ValueError, not ImportError.
    except (ImportError, ValueError) as error:
        if isinstance(error, ModuleNotFoundError) and error.name == "picamera2":
            raise CameraConfigError(
                "picamera2 is not installed: on Raspberry Pi OS run `apt install "
                "python3-picamera2` and create the venv with --system-site-packages, or set "
                'camera.backend = "opencv" for a USB camera'
            ) from error
        # Installed, but it (or a compiled helper such as simplejpeg, built by Debian against
        # Debian's numpy) does not load in this venv: say what failed instead of "missing".
        detail = " ".join(str(error).split())[:200]
        hint = ""
        if "numpy" in detail.lower():
            import numpy

            hint = (
                f"; Debian's picamera2 packages are built against Debian's numpy, this venv has "
                f"numpy {numpy.__version__}: install the appliance with its `pi` extra (the "
                "image does), which puts simplejpeg built for numpy 2 into the venv"
            )
        raise CameraConfigError(
            f"picamera2 is installed but cannot be loaded ({detail}){hint}; otherwise reinstall "
            'python3-picamera2, or set camera.backend = "opencv" for a USB camera'
        ) from error
    return Picamera2


def fit_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled down (never up) to fit ``box``, keeping the aspect, even dimensions."""
    width, height = size
    scale = min(box[0] / width, box[1] / height, 1.0)
    return (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))


class Picamera2Camera(CameraBase):
    def __init__(self, config: CameraConfig) -> None:
        if not isinstance(config.device, int) and not str(config.device).isdigit():
            raise CameraConfigError(
                f"camera.device = {config.device!r}: picamera2 needs a camera number (0, 1)"
            )
        self.camera_num = int(config.device)
        self._size = (config.width, config.height) if config.width and config.height else None
        self._preview_box = (config.preview_width, config.preview_height)
        self._quality = config.jpeg_quality
        self._preview_quality = config.preview_quality
        self._autofocus = config.autofocus
        self._timeout = config.capture_timeout_s
        self._camera: Any = None
        self._has_af = False
        self._lock = threading.Lock()

    @property
    def has_autofocus(self) -> bool:
        return self._has_af

    def open(self) -> None:
        picamera2_class = _picamera2_class()
        cameras = picamera2_class.global_camera_info()
        if self.camera_num >= len(cameras):
            raise CameraUnavailable(
                f"no camera {self.camera_num} found ({len(cameras)} connected): check the "
                "ribbon cable and that the camera is enabled",
                errno_value=errno.ENODEV,
            )
        try:
            camera = picamera2_class(camera_num=self.camera_num)
        except (RuntimeError, IndexError) as error:
            raise CameraUnavailable(
                f"camera {self.camera_num} did not start ({error})", errno_value=errno.EIO
            ) from error
        try:
            main_size = self._size or tuple(camera.sensor_resolution)
            config = camera.create_still_configuration(
                main={"size": main_size},
                lores={"size": fit_size(main_size, self._preview_box), "format": "YUV420"},
                buffer_count=2,  # one frame can be read while the next is filled
            )
            camera.configure(config)
            camera.start()
            self._has_af = self._autofocus and "AfMode" in camera.camera_controls
        except (RuntimeError, OSError) as error:
            _close_quietly(camera)
            raise CameraUnavailable(
                f"camera {self.camera_num} could not be configured ({error})",
                errno_value=errno.EIO,
            ) from error
        with self._lock:
            self._camera = camera

    def _jpeg(self, stream: str, quality: int) -> bytes:
        camera = self._camera
        if camera is None:
            raise CameraUnavailable("the camera is not open")
        camera.options["quality"] = quality
        buffer = io.BytesIO()
        try:
            camera.capture_file(buffer, name=stream, format="jpeg", wait=self._timeout)
        except TimeoutError as error:
            raise CameraUnavailable(
                f"camera {self.camera_num} stopped delivering frames", errno_value=errno.ETIMEDOUT
            ) from error
        except RuntimeError as error:
            raise CameraUnavailable(f"camera error: {error}", errno_value=errno.EIO) from error
        return buffer.getvalue()

    def capture(self) -> bytes:
        with self._lock:
            if self._has_af:
                try:
                    focused = self._camera.autofocus_cycle(wait=self._timeout)
                except TimeoutError as error:
                    raise CameraUnavailable(
                        "autofocus did not finish: camera not answering",
                        errno_value=errno.ETIMEDOUT,
                    ) from error
                if not focused:
                    logger.warning("autofocus did not lock; capturing anyway")
            return self._jpeg("main", self._quality)

    def frames(self) -> Iterator[bytes]:
        while True:
            with self._lock:
                frame = self._jpeg("lores", self._preview_quality)
            yield frame

    def close(self) -> None:
        with self._lock:
            camera, self._camera = self._camera, None
        if camera is not None:
            _close_quietly(camera)


def _close_quietly(camera: Any) -> None:
    for step in (camera.stop, camera.close):
        try:
            step()
        except Exception as error:  # a camera that vanished fails to stop; it is gone anyway
            logger.debug("picamera2 %s failed: %s", step.__name__, type(error).__name__)
