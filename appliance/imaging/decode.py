"""Decode photo bytes into RGB pixels, safely and no larger than needed.

Bytes come from cameras and strangers' uploads, so decoding refuses what is not an image, what
is truncated, and what is over the pixel limit *before* allocating it. JPEGs are decoded with
DCT scaling (Pillow's `draft`) straight to the size the caller needs: the models see a reduced
decode, and only the pixels that are kept are decoded at full resolution. EXIF orientation is
applied, so every caller sees the photo upright.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from appliance.errors import ImageError, ImageTooLargeError

_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
# EXIF orientation value -> the transpose that makes the photo upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_heif_registered = False


@dataclass(frozen=True)
class DecodedImage:
    """Upright RGB pixels plus how they relate to the full-resolution photo."""

    pixels: np.ndarray  # H x W x 3, uint8, RGB
    full_size: tuple[int, int]  # (width, height) of the upright full-resolution photo
    format: str  # what the bytes really are ("JPEG", "PNG", "WEBP", ...)

    @property
    def scale(self) -> float:
        """pixels' size divided by the full-resolution size (1.0 when decoded in full)."""
        return self.pixels.shape[1] / self.full_size[0]


def _register_heif() -> None:
    # HEIC support is optional (pillow-heif); registering it is cheap and done once, on use.
    global _heif_registered
    if _heif_registered:
        return
    _heif_registered = True
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()


def _corrupt(exc: BaseException) -> ImageError:
    detail = " ".join(str(exc).split())[:160]
    return ImageError(f"the image data is truncated or corrupt ({detail}): send it again")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageError("the file is empty: no image data was received")
    _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses before we see the size; its message carries the pixel count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)) / 1e6:.0f} MP" if found else "too many pixels"
        raise ImageTooLargeError(
            f"the image has {size}, over the limit of {max_pixels / 1e6:.0f} MP "
            "(imaging.max_pixels): send a smaller photo"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"not an image this appliance can read ({len(data)} bytes; expected JPEG, PNG, "
            "WebP, TIFF or HEIC)"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _corrupt(exc) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP (imaging.max_pixels): send a smaller photo"
        )
    if width < 1 or height < 1:
        raise ImageError(f"the image has no pixels ({width}x{height})")
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, the usual ID-photo background, not black.
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def decode(
    data: bytes,
    *,
    max_pixels: int,
    max_side: int | None = None,
    at_least: bool = True,
    shrink: bool = True,
) -> DecodedImage:
    """Decode upright RGB, at most `max_side` px on the longest side (None: full size).

    With `at_least` the result is exactly `max_side` (or the full size, if smaller): for pixels
    that are kept. Without it a JPEG may come out anywhere between half and all of `max_side`,
    whichever DCT scale is cheapest: for the models, which resize anyway. With `shrink=False`
    a JPEG keeps the DCT scale's size (up to twice `max_side`) for a caller that resamples
    only the region it needs.
    """
    image = _open(data, max_pixels)
    orientation = _orientation(image)
    stored_w, stored_h = image.size
    full_size = (stored_h, stored_w) if orientation in _SWAPS_AXES else (stored_w, stored_h)
    try:
        if max_side is not None and image.format == "JPEG":
            ratio = max_side / max(stored_w, stored_h) / (1.0 if at_least else 2.0)
            if ratio < 1.0:
                # DCT scaling: decode at 1/2, 1/4 or 1/8 straight from the JPEG, never smaller
                # than asked; only the mode and the size may change here.
                image.draft(
                    "RGB", (max(1, round(stored_w * ratio)), max(1, round(stored_h * ratio)))
                )
        image.load()
        kind = image.format or "unknown"
        upright = _to_rgb(image)
        if orientation in _UPRIGHT:
            upright = upright.transpose(_UPRIGHT[orientation])
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated and corrupt data as OSError (and a few codecs as others).
        raise _corrupt(exc) from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError("the image expands to too many pixels to decode safely") from None
    pixels = np.asarray(upright, dtype=np.uint8)
    if max_side is not None and max(pixels.shape[:2]) > max_side * (1 if shrink else 2):
        pixels = _shrink(pixels, max_side)
    return DecodedImage(np.ascontiguousarray(pixels), full_size, kind)


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    height, width = pixels.shape[:2]
    ratio = max_side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
