"""Cameras: the contract, the reconnecting wrapper, the preview hub, and the backend factory.

``open_camera(config)`` builds the configured backend (imported only now), wraps it in a
:class:`ReconnectingCamera` and opens it. A missing camera does not stop the appliance: the
wrapper reports ``unavailable`` with a reason and keeps trying in the background.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from appliance.devices.camera.base import (
    Camera,
    CameraConfigError,
    CameraError,
    CameraState,
    CameraStatus,
    CameraUnavailable,
)
from appliance.devices.camera.preview import (
    MJPEG_MIMETYPE,
    PreviewFrame,
    PreviewHub,
    PreviewPump,
)
from appliance.devices.camera.reconnect import (
    ReconnectingCamera,
    Sleeper,
    StateCallback,
    event_sleeper,
)
from appliance.devices.config import CameraConfig
from appliance.devices.loader import BackendError, resolve_backend

__all__ = [
    "BACKENDS",
    "MJPEG_MIMETYPE",
    "Camera",
    "CameraConfigError",
    "CameraError",
    "CameraState",
    "CameraStatus",
    "CameraUnavailable",
    "PreviewFrame",
    "PreviewHub",
    "PreviewPump",
    "ReconnectingCamera",
    "Sleeper",
    "StateCallback",
    "create_backend",
    "event_sleeper",
    "open_camera",
]

BACKENDS: dict[str, str] = {
    "picamera2": "appliance.devices.camera.picamera2:Picamera2Camera",
    "opencv": "appliance.devices.camera.opencv:OpenCVCamera",
    "gphoto2": "appliance.devices.camera.gphoto2:Gphoto2Camera",
    "folder": "appliance.devices.camera.folder:FolderCamera",
    "fake": "appliance.devices.camera.fake:FakeCamera",
}


def create_backend(config: CameraConfig) -> Camera:
    """The bare backend named by ``camera.backend`` (not opened, not wrapped)."""
    try:
        cls = resolve_backend("camera.backend", config.backend, BACKENDS)
    except BackendError as error:
        raise CameraConfigError(str(error)) from error
    backend = cls(config)
    if not isinstance(backend, Camera):
        raise CameraConfigError(f"camera.backend = {config.backend!r} is not a camera")
    return backend


def open_camera(
    config: CameraConfig,
    *,
    on_state_change: StateCallback | None = None,
    sleeper: Sleeper = event_sleeper,
    clock: Callable[[], float] = time.monotonic,
) -> ReconnectingCamera:
    """Build, wrap and open the configured camera. Raises only for config errors."""
    camera = ReconnectingCamera(
        create_backend(config),
        initial_backoff_s=config.reconnect_initial_s,
        max_backoff_s=config.reconnect_max_s,
        on_state_change=on_state_change,
        sleeper=sleeper,
        clock=clock,
    )
    camera.open()
    return camera
