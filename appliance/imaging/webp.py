"""WebP without Pillow's decoder: the header read by hand, the pixels decoded by OpenCV.

Pillow opens a WebP through libwebp's animation decoder, which allocates two full-size RGBA
canvases (calloc) as soon as the file is opened, returns the frame as a third copy in
``bytes`` and loads it into a fourth: about 16 bytes a pixel before anything is scaled, and
with freed-memory scrubbing on (appliance/memory.py) glibc zeroes even the canvases' fresh
pages. The RIFF header gives the size, alpha and EXIF orientation in a few bytes, and
OpenCV decodes into one array.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

from appliance.errors import ImageError

_ORIENTATION_TAG = 0x0112
_STRIP_ROWS = 256


@dataclass(frozen=True)
class WebPHeader:
    size: tuple[int, int]
    alpha: bool
    orientation: int  # EXIF orientation, 1 when absent


def is_webp(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def _corrupt() -> ImageError:
    return ImageError("the WebP image data is truncated or corrupt: send it again")


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks: list[tuple[bytes, bytes]] = []
    offset = 12
    while offset + 8 <= len(data) and len(chunks) < 64:
        kind, length = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        chunks.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 8 + length + (length & 1)
    return chunks


def _orientation(exif: bytes) -> int:
    try:
        parsed = Image.Exif()
        parsed.load(exif.removeprefix(b"Exif\x00\x00"))
        value = parsed.get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def read_header(data: bytes) -> WebPHeader:
    chunks = _chunks(data)
    if not chunks:
        raise _corrupt()
    kind, body = chunks[0]
    exif = next((payload for name, payload in chunks if name == b"EXIF"), b"")
    if kind == b"VP8X" and len(body) >= 10:
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        alpha = bool(body[0] & 0x10)
    elif kind == b"VP8 " and len(body) >= 10 and body[3:6] == b"\x9d\x01\x2a":
        width, height = (value & 0x3FFF for value in struct.unpack_from("<HH", body, 6))
        alpha = False
    elif kind == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        alpha = bool(bits >> 28 & 1)
    else:
        raise _corrupt()
    if width < 1 or height < 1:
        raise _corrupt()
    return WebPHeader((width, height), alpha, _orientation(exif) if exif else 1)


def decode_pixels(data: bytes) -> np.ndarray:
    """RGB pixels as stored (orientation not applied); transparent areas become white."""
    import cv2

    flags = cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if decoded is None or decoded.ndim != 3:
        raise _corrupt()
    if decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB, dst=decoded)
    height, width = decoded.shape[:2]
    pixels = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, _STRIP_ROWS):
        strip = decoded[top : top + _STRIP_ROWS]
        alpha = strip[..., 3:4].astype(np.float32) / 255.0
        colour = strip[..., 2::-1].astype(np.float32)
        pixels[top : top + _STRIP_ROWS] = np.rint(colour * alpha + 255.0 * (1.0 - alpha))
    return pixels
