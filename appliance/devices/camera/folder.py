"""Demo camera: cycles through the images in a folder (sorted by name).

``capture()`` returns the current image as JPEG and moves on to the next; ``frames()`` shows
the image the next capture will return, scaled to the preview size. JPEG files are returned
as they are; other formats are decoded with Pillow and re-encoded as JPEG, which drops their
metadata. A folder that disappears (an unmounted USB stick) makes the camera unavailable.
"""

from __future__ import annotations

import errno
import io
import threading
from collections.abc import Iterator
from pathlib import Path

from appliance.devices.camera.base import (
    CameraBase,
    CameraConfigError,
    CameraError,
    CameraUnavailable,
    is_jpeg,
)
from appliance.devices.config import CameraConfig

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


class FolderCamera(CameraBase):
    def __init__(self, config: CameraConfig) -> None:
        if config.folder is None:
            raise CameraConfigError('camera.folder is not set: the "folder" backend needs it')
        self.folder = config.folder
        self._quality = config.jpeg_quality
        self._preview_size = (config.preview_width, config.preview_height)
        self._preview_quality = config.preview_quality
        self._images: list[Path] = []
        self._index = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        try:
            candidates = sorted(
                p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
            names = [path for path in candidates if _is_readable_image(path)]
        except OSError as error:
            raise CameraUnavailable(
                f"cannot read the demo folder {self.folder}: {error.strerror}",
                errno_value=error.errno or errno.ENOENT,
            ) from error
        if not names:
            raise CameraUnavailable(
                f"no images in the demo folder {self.folder} (jpg, png, webp, bmp, tiff)",
                errno_value=errno.ENOENT,
            )
        with self._lock:
            self._images = names
            self._index = 0

    def _current(self) -> Path:
        with self._lock:
            if not self._images:
                raise CameraUnavailable("the demo folder camera is not open")
            return self._images[self._index % len(self._images)]

    def capture(self) -> bytes:
        path = self._current()
        data = path.read_bytes()  # OSError (folder gone) -> unavailable, via the wrapper
        with self._lock:
            self._index += 1
        return data if is_jpeg(data) else _reencode(data, self._quality, None)

    def frames(self) -> Iterator[bytes]:
        shown: Path | None = None
        preview = b""
        while True:
            path = self._current()
            if path != shown:
                preview = _reencode(path.read_bytes(), self._preview_quality, self._preview_size)
                shown = path
            yield preview

    def close(self) -> None:
        with self._lock:
            self._images = []


def _is_readable_image(path: Path) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:  # reads the header only
            return image.format is not None
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def _reencode(data: bytes, quality: int, fit: tuple[int, int] | None) -> bytes:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as source:
            rgb = ImageOps.exif_transpose(source).convert("RGB")
        if fit is not None:
            rgb.thumbnail(fit)
        out = io.BytesIO()
        # No exif=/icc_profile= arguments: the new JPEG carries no metadata.
        rgb.save(out, format="JPEG", quality=quality)
        return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise CameraError(
            f"an image in the demo folder cannot be decoded ({type(error).__name__})"
        ) from error
