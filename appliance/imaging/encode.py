"""Encode pixels to files that carry nothing but the pixels and their print resolution.

Outputs never keep input metadata: Pillow writes EXIF, XMP or ICC data only when asked, and
these functions never ask. A size cap is met by lowering JPEG quality first and, where the
caller allows it, the resolution; a file is never padded to reach a minimum size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from appliance.errors import ApplianceError


class EncodeError(ApplianceError, ValueError):
    """The pixels cannot be encoded within the limits asked for."""


@dataclass(frozen=True)
class EncodedImage:
    data: bytes
    size: tuple[int, int]  # (width, height) in pixels
    quality: int
    dpi: int


def encode_jpeg(
    pixels: np.ndarray,
    *,
    dpi: int,
    quality: int = 95,
    optimize: bool = False,
    subsampling: int | None = None,
) -> bytes:
    """JPEG with only the pixels and the DPI. `optimize` (optimal Huffman tables, a few percent
    smaller, twice the time) is worth it only where a file-size cap applies."""
    image = Image.fromarray(pixels, "RGB")
    buffer = io.BytesIO()
    # 4:4:4 at high quality keeps skin and hair edges clean; lower qualities use 4:2:0.
    if subsampling is None:
        subsampling = 0 if quality >= 90 else 2
    image.save(
        buffer,
        "JPEG",
        quality=quality,
        dpi=(dpi, dpi),
        optimize=optimize,
        subsampling=subsampling,
    )
    return buffer.getvalue()


def encode_png(pixels: np.ndarray, *, dpi: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", dpi=(dpi, dpi), optimize=False)
    return buffer.getvalue()


def encode_jpeg_capped(
    pixels: np.ndarray,
    *,
    dpi: int,
    max_bytes: int | None,
    min_bytes: int | None = None,
    min_size: tuple[int, int] | None = None,
    best_quality: int = 95,
    lowest_quality: int = 60,
) -> EncodedImage:
    """The best-quality JPEG under `max_bytes`: lower quality first, then (only down to
    `min_size`, when given) resolution. Raises EncodeError when no setting fits."""
    height, width = pixels.shape[:2]
    capped = max_bytes is not None
    data = encode_jpeg(pixels, dpi=dpi, quality=best_quality, optimize=capped)
    if max_bytes is None or len(data) <= max_bytes:
        return _checked(data, (width, height), best_quality, dpi, min_bytes)
    low, high, found = lowest_quality, best_quality - 1, None
    while low <= high:  # highest quality that fits
        middle = (low + high) // 2
        candidate = encode_jpeg(pixels, dpi=dpi, quality=middle, optimize=True)
        if len(candidate) <= max_bytes:
            found, low = (candidate, middle), middle + 1
        else:
            high = middle - 1
    if found is not None:
        return _checked(found[0], (width, height), found[1], dpi, min_bytes)
    if min_size is not None and (width, height) != min_size:
        min_w, min_h = min_size
        scale = max(min_w / width, min_h / height, 0.8)
        smaller = cv2.resize(
            pixels,
            (max(min_w, round(width * scale)), max(min_h, round(height * scale))),
            interpolation=cv2.INTER_AREA,
        )
        return encode_jpeg_capped(
            smaller,
            dpi=dpi,
            max_bytes=max_bytes,
            min_bytes=min_bytes,
            min_size=min_size,
            best_quality=lowest_quality + 15,
            lowest_quality=lowest_quality,
        )
    raise EncodeError(
        f"the photo does not fit in {max_bytes // 1000} KB even at JPEG quality {lowest_quality}"
    )


def _checked(
    data: bytes, size: tuple[int, int], quality: int, dpi: int, min_bytes: int | None
) -> EncodedImage:
    if min_bytes is not None and len(data) < min_bytes:
        # Padding a file to reach a minimum would be cheating the check; say so instead.
        raise EncodeError(
            f"the photo encodes to {len(data) // 1024} KB, under the {min_bytes // 1024} KB "
            "minimum the authority sets: use a sharper, better-lit photo"
        )
    return EncodedImage(data, size, quality, dpi)
