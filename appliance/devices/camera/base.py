"""The camera contract every backend follows, its errors and its observable state.

A backend is small: ``open()``, ``capture() -> JPEG bytes``, ``frames()`` (preview JPEGs as
fast as the device gives them), ``close()``. It raises :class:`CameraUnavailable` (an
``OSError``) when the device is missing or has gone away; everything about coping with that
(state, reconnect, backoff) lives once in :mod:`appliance.devices.camera.reconnect`, and
pacing the preview lives in :mod:`appliance.devices.camera.preview`.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, runtime_checkable

from appliance.errors import ApplianceError

CameraStatus = Literal["ready", "unavailable"]

# errno values that mean "the device is not there (any more)" rather than a bug.
DEVICE_GONE_ERRNOS = frozenset(
    {errno.ENODEV, errno.ENOENT, errno.ENXIO, errno.EIO, errno.EBUSY, errno.ETIMEDOUT}
)


class CameraError(ApplianceError, RuntimeError):
    """The camera was asked for something it cannot do (a bug or a bad call, not unplugging)."""


class CameraConfigError(ApplianceError, ValueError):
    """The [camera] config names a backend or a device that cannot work."""


class CameraUnavailable(ApplianceError, OSError):
    """No usable camera right now: not plugged in, unplugged, or not answering.

    ``reason`` is a sentence for the operator (the tablet and the LEDs show it). The appliance
    keeps running and reconnects by itself.
    """

    def __init__(self, reason: str, *, errno_value: int = errno.ENODEV) -> None:
        super().__init__(errno_value, reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"camera unavailable: {self.reason}"


def unavailable_from(error: BaseException, what: str) -> CameraUnavailable:
    """Turn an OSError/TimeoutError from a device call into a CameraUnavailable with a reason."""
    if isinstance(error, CameraUnavailable):
        return error
    if isinstance(error, TimeoutError):
        return CameraUnavailable(f"{what}: no answer from the camera", errno_value=errno.ETIMEDOUT)
    if isinstance(error, OSError) and error.errno is not None:
        detail = error.strerror or str(error)
        return CameraUnavailable(f"{what}: {detail}", errno_value=error.errno)
    return CameraUnavailable(f"{what}: {type(error).__name__}")


@dataclass(frozen=True)
class CameraState:
    """What the tablet and the LEDs show: ``ready``, or ``unavailable`` and why."""

    status: CameraStatus
    reason: str = ""
    since: float = 0.0  # clock() when the state was entered

    @property
    def ready(self) -> bool:
        return self.status == "ready"

    def __str__(self) -> str:
        return self.status if not self.reason else f"{self.status}: {self.reason}"


@runtime_checkable
class Camera(Protocol):
    """One camera. ``capture`` and ``frames`` are only called between ``open`` and ``close``."""

    def open(self) -> None:
        """Open the device; raise CameraUnavailable when it is not there."""

    def capture(self) -> bytes:
        """One still, full quality, as JPEG bytes held in memory (never a file)."""

    def frames(self) -> Iterator[bytes]:
        """Preview JPEGs, one per device frame; the consumer paces and stops the iteration."""

    def close(self) -> None:
        """Release the device; safe to call twice and after a failed open."""

    def __enter__(self) -> Camera: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class CameraBase:
    """Context-manager plumbing shared by the backends (open on enter, close on exit)."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> CameraBase:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"
