"""DSLR / mirrorless cameras over USB through the ``gphoto2`` command-line tool (optional).

Stills come from ``gphoto2 --capture-image-and-download --stdout``: the image travels from
the camera to this process over a pipe and gphoto2 deletes it from the camera afterwards
(no ``--keep``). Set the camera to JPEG (not RAW) and, where it has the setting, to capture
into its RAM (``capturetarget``) so nothing is written to its card either. The preview is
``--capture-preview --stdout`` (live view), a few frames a second.

Needs the Debian package ``gphoto2``. Arguments are lists, never a shell.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable, Iterator, Sequence

from appliance.devices.camera.base import CameraBase, CameraUnavailable, is_jpeg
from appliance.devices.config import CameraConfig

# Runs argv, returns stdout; raises CalledProcessError / TimeoutExpired / FileNotFoundError.
Runner = Callable[[Sequence[str], float], bytes]


def run_gphoto2(argv: Sequence[str], timeout: float) -> bytes:
    result = subprocess.run(list(argv), capture_output=True, check=True, timeout=timeout)
    return result.stdout


class Gphoto2Camera(CameraBase):
    def __init__(self, config: CameraConfig, *, runner: Runner = run_gphoto2) -> None:
        port = config.device if isinstance(config.device, str) else ""
        self._port_args = ["--port", port] if port else []
        self._timeout = config.capture_timeout_s
        self._run = runner
        self._open = False

    def _call(self, *args: str, what: str) -> bytes:
        argv = ["gphoto2", *self._port_args, *args]
        try:
            return self._run(argv, self._timeout)
        except FileNotFoundError as error:
            raise CameraUnavailable(
                "gphoto2 is not installed (apt install gphoto2)", errno_value=errno.ENOENT
            ) from error
        except subprocess.TimeoutExpired as error:
            raise CameraUnavailable(
                f"{what}: the camera did not answer", errno_value=errno.ETIMEDOUT
            ) from error
        except subprocess.CalledProcessError as error:
            raise CameraUnavailable(
                f"{what}: gphoto2 failed (is the camera on and connected?)", errno_value=errno.EIO
            ) from error

    def open(self) -> None:
        listing = self._call("--auto-detect", what="detecting the camera").decode(errors="replace")
        # Header, a dashed rule, then one "Model   port" line per camera.
        cameras = [line for line in listing.splitlines()[2:] if line.strip()]
        if not cameras:
            raise CameraUnavailable("no USB camera detected by gphoto2", errno_value=errno.ENODEV)
        self._open = True

    def _jpeg(self, *args: str, what: str) -> bytes:
        if not self._open:
            raise CameraUnavailable("the camera is not open")
        data = self._call(*args, "--stdout", what=what)
        if not is_jpeg(data):
            raise CameraUnavailable(
                f"{what}: the camera did not send a JPEG (set it to JPEG, not RAW)",
                errno_value=errno.EIO,
            )
        return data

    def capture(self) -> bytes:
        return self._jpeg("--capture-image-and-download", what="capture")

    def frames(self) -> Iterator[bytes]:
        while True:
            yield self._jpeg("--capture-preview", what="live view")

    def close(self) -> None:
        self._open = False
