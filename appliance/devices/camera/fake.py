"""A camera for tests and laptops: configurable frames, unplug/replug, and a call history.

Without frames it draws numbered test cards (Pillow), so every capture differs and a preview
visibly moves. ``unplug()`` makes every call fail with ``OSError(ENODEV)`` the way a V4L2
device does after it is pulled out; ``replug()`` lets ``open()`` work again.
"""

from __future__ import annotations

import errno
import io
import threading
from collections.abc import Iterator, Sequence

from appliance.devices.camera.base import CameraBase, CameraError
from appliance.devices.config import CameraConfig


def _test_card(number: int, size: tuple[int, int], quality: int) -> bytes:
    from PIL import Image, ImageDraw

    width, height = size
    shade = (number * 37) % 200
    image = Image.new("RGB", size, (40 + shade // 2, 90, 160 - shade // 2))
    draw = ImageDraw.Draw(image)
    draw.ellipse((width * 0.35, height * 0.2, width * 0.65, height * 0.7), fill=(210, 170, 140))
    draw.text((8, 8), f"fake camera #{number}", fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


class FakeCamera(CameraBase):
    def __init__(
        self,
        config: CameraConfig | None = None,
        *,
        frames: Sequence[bytes] | None = None,
        previews: Sequence[bytes] | None = None,
        fail_open_times: int = 0,
    ) -> None:
        config = config or CameraConfig()
        self._frames = list(frames) if frames else None
        self._previews = list(previews) if previews else None
        self._size = (config.width or 640, config.height or 480)
        self._preview_size = (config.preview_width, config.preview_height)
        self._quality = config.jpeg_quality
        self._lock = threading.Lock()
        self.history: list[tuple[str, ...]] = []
        self.is_open = False
        self.plugged = True
        self.fail_open_times = fail_open_times  # the next N opens fail even when plugged
        self.captures = 0
        self.previews_served = 0

    def _record(self, *call: str) -> None:
        with self._lock:
            self.history.append(call)

    def calls(self, name: str) -> int:
        with self._lock:
            return sum(1 for call in self.history if call[0] == name)

    # --- controls for tests ----------------------------------------------------------------

    def unplug(self) -> None:
        self._record("unplug")
        self.plugged = False

    def replug(self) -> None:
        self._record("replug")
        self.plugged = True

    def _gone(self) -> OSError:
        return OSError(errno.ENODEV, "No such device")

    # --- Camera --------------------------------------------------------------------------------

    def open(self) -> None:
        self._record("open")
        if not self.plugged:
            raise self._gone()
        if self.fail_open_times > 0:
            self.fail_open_times -= 1
            raise OSError(errno.EBUSY, "Device or resource busy")
        self.is_open = True

    def capture(self) -> bytes:
        self._record("capture")
        if not self.is_open:
            raise CameraError("capture() before open()")
        if not self.plugged:
            raise self._gone()
        number = self.captures
        self.captures += 1
        if self._frames:
            return self._frames[number % len(self._frames)]
        return _test_card(number, self._size, self._quality)

    def frames(self) -> Iterator[bytes]:
        self._record("frames")
        if not self.is_open:
            raise CameraError("frames() before open()")
        while True:
            if not self.plugged:
                raise self._gone()
            number = self.previews_served
            self.previews_served += 1
            if self._previews:
                yield self._previews[number % len(self._previews)]
            else:
                yield _test_card(number, self._preview_size, 60)

    def close(self) -> None:
        self._record("close")
        self.is_open = False
