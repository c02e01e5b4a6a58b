"""HEIC/HEIF through pillow-heif's own array, not through a Pillow image.

Pillow's HEIF opener (pillow-heif) decodes into libheif's buffer and then copies it into a
Pillow image (4 bytes a pixel) and, for NumPy, once more into ``bytes``: a 12 MP iPhone photo
took the daemon to 249 MB. pillow-heif's image exposes libheif's buffer to NumPy directly.
libheif applies the HEIF transforms (rotation, mirroring) itself, so the pixels come upright
and the EXIF orientation is not applied again. Optional: without the ``heic`` extra
(pillow-heif) a HEIC upload is refused as a format this appliance cannot read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.errors import ImageError

_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}
_STRIP_ROWS = 256


@dataclass(frozen=True)
class HeifHeader:
    size: tuple[int, int]  # upright
    alpha: bool


def is_heif(data: bytes) -> bool:
    return data[4:8] == b"ftyp" and data[8:12] in _BRANDS


def available() -> bool:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False
    return True


def _open(data: bytes) -> Any:
    import pillow_heif

    try:
        return pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    except (ValueError, RuntimeError, OSError) as error:
        detail = " ".join(str(error).split())[:120]
        raise ImageError(
            f"the HEIC image data is truncated or corrupt ({detail}): send it again"
        ) from None


def read_header(data: bytes) -> HeifHeader:
    """Size and alpha of the primary image, from the container (nothing is decoded)."""
    found = _open(data)
    return HeifHeader(tuple(found.size), found.mode in ("RGBA", "LA"))


def decode_pixels(data: bytes) -> np.ndarray:
    """Upright RGB pixels; transparent areas become white."""
    found = _open(data)
    try:
        decoded = np.asarray(found)  # libheif's buffer, no copy
    except (ValueError, RuntimeError) as error:
        raise ImageError(f"the HEIC image cannot be decoded ({type(error).__name__})") from None
    if decoded.ndim != 3 or decoded.shape[2] not in (3, 4):
        raise ImageError("the HEIC image is not in colour (RGB): send a JPEG instead")
    if decoded.shape[2] == 3:
        return decoded
    height, width = decoded.shape[:2]
    pixels = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, _STRIP_ROWS):
        strip = decoded[top : top + _STRIP_ROWS]
        alpha = strip[..., 3:4].astype(np.float32) / 255.0
        pixels[top : top + _STRIP_ROWS] = np.rint(
            strip[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        )
    return pixels
