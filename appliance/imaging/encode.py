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


# What libjpeg writes first: SOI, then the JFIF APP0 segment (length 16) whose density fields
# this module fills in (JFIF 1.02: units at byte 13, X and Y density at 14-17, big-endian).
_JFIF_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
_SUBSAMPLING = {
    0: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    1: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    2: cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
}


def encode_jpeg(
    pixels: np.ndarray,
    *,
    dpi: int,
    quality: int = 95,
    optimize: bool = False,
    subsampling: int | None = None,
) -> bytes:
    """JPEG with only the pixels and the DPI. `optimize` (optimal Huffman tables, a few percent
    smaller, twice the time) is worth it only where a file-size cap applies. `subsampling`
    as Pillow counts it: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0.

    OpenCV's libjpeg-turbo encodes straight from the array in one call with the GIL released
    (Pillow first copies RGB into its 4-byte layout: about a third slower on a print sheet);
    the result is the same baseline JFIF file, with the DPI written into its header."""
    if not 1 <= dpi <= 65535:
        raise EncodeError(f"a JPEG cannot record {dpi} dpi (1-65535)")
    # 4:4:4 at high quality keeps skin and hair edges clean; lower qualities use 4:2:0.
    if subsampling is None:
        subsampling = 0 if quality >= 90 else 2
    ok, encoded = cv2.imencode(
        ".jpg",
        cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR),
        [
            cv2.IMWRITE_JPEG_QUALITY,
            quality,
            cv2.IMWRITE_JPEG_OPTIMIZE,
            int(optimize),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            _SUBSAMPLING[subsampling],
        ],
    )
    data = bytearray(encoded.tobytes()) if ok else bytearray()
    if not data.startswith(_JFIF_HEAD):
        raise EncodeError("the JPEG encoder did not write the expected JFIF header")
    data[13:18] = bytes((1, dpi >> 8, dpi & 0xFF, dpi >> 8, dpi & 0xFF))  # dots per inch
    return bytes(data)


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
    quality = best_quality
    # A plain photo can encode under an authority's minimum: higher quality keeps more of
    # its own detail (never padding) until it is reached.
    while min_bytes is not None and len(data) < min_bytes and quality < 100:
        quality += 1
        data = encode_jpeg(pixels, dpi=dpi, quality=quality, optimize=capped)
    if max_bytes is None or len(data) <= max_bytes:
        return _checked(data, (width, height), quality, dpi, min_bytes)
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
