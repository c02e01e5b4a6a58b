"""Decode photo bytes into RGB pixels, safely and no larger than needed.

Bytes come from cameras and strangers' uploads, so decoding refuses what is not an image, what
is truncated, and what is over the pixel limit *before* allocating it. JPEGs are decoded with
DCT scaling (Pillow's `draft`) straight to the size the caller needs: the models see a reduced
decode, and only the pixels that are kept are decoded at full resolution. Other formats are
decoded in full and reduced by a whole factor before any copy is made. With a byte budget
(`max_bytes`), a decode is costed from the header first (`budget.py`): one over the budget is
refused before it allocates, and a JPEG asked for more pixels than fit gets fewer. EXIF
orientation is applied, so every caller sees the photo upright.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from appliance.errors import ImageError, ImageTooLargeError
from appliance.imaging import heif, webp
from appliance.imaging.budget import (
    REDUCIBLE,
    WHOLE_COPY_PIXELS,
    ImageHeader,
    decode_cost,
    fit_max_side,
    header_of,
    too_large_message,
)

_ORIENTATION_TAG = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
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


def _webp_header(data: bytes, max_pixels: int) -> tuple[ImageHeader, int]:
    found = webp.read_header(data)
    width, height = found.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP (imaging.max_pixels): send a smaller photo"
        )
    mode = "RGBA" if found.alpha else "RGB"
    return ImageHeader("WEBP", mode, found.size, samples_per_px=len(mode)), found.orientation


def _heif_header(data: bytes, max_pixels: int) -> ImageHeader:
    found = heif.read_header(data)
    width, height = found.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} MP), over the limit of "
            f"{max_pixels / 1e6:.0f} MP (imaging.max_pixels): send a smaller photo"
        )
    mode = "RGBA" if found.alpha else "RGB"
    return ImageHeader("HEIF", mode, found.size, samples_per_px=len(mode))


def _own_decoder(data: bytes) -> str | None:
    """Formats decoded without Pillow's decoder (see webp.py and heif.py)."""
    if webp.is_webp(data):
        return "WEBP"
    if heif.is_heif(data) and heif.available():
        return "HEIF"
    return None


def probe(data: bytes, *, max_pixels: int) -> ImageHeader:
    """Read only the header: the format, mode and size (refuses non-images and bombs)."""
    kind = _own_decoder(data)
    if kind == "WEBP":
        return _webp_header(data, max_pixels)[0]
    if kind == "HEIF":
        return _heif_header(data, max_pixels)
    image = _open(data, max_pixels)
    try:
        return header_of(image)
    finally:
        image.close()


def check_decodable(data: bytes, *, max_pixels: int, max_bytes: int, max_side: int) -> ImageHeader:
    """At upload, before storing: refuse what no decode at ``max_side`` (the models' reduced
    size, the cheapest the pipeline needs) could do within ``max_bytes``."""
    header = probe(data, max_pixels=max_pixels)
    if fit_max_side(header, max_side, max_bytes, at_least=False) is None:
        cost = decode_cost(header, max_side, at_least=False)
        raise ImageTooLargeError(too_large_message(header, cost, max_bytes))
    return header


def decode(
    data: bytes,
    *,
    max_pixels: int,
    max_side: int | None = None,
    at_least: bool = True,
    shrink: bool = True,
    max_bytes: int | None = None,
) -> DecodedImage:
    """Decode upright RGB, at most `max_side` px on the longest side (None: full size).

    With `at_least` the result is exactly `max_side` (or the full size, if smaller): for pixels
    that are kept. Without it a JPEG may come out anywhere between half and all of `max_side`,
    whichever DCT scale is cheapest: for the models, which resize anyway. With `shrink=False`
    a JPEG keeps the DCT scale's size (up to twice `max_side`) for a caller that resamples
    only the region it needs. With `max_bytes`, a decode over that budget is refused
    (ImageTooLargeError) and a JPEG may come out smaller than asked: read `scale`.
    """
    kind = _own_decoder(data)
    if kind is not None:
        return _decode_own(kind, data, max_pixels, max_side, shrink, max_bytes)
    image = _open(data, max_pixels)
    if max_bytes is not None:
        header = header_of(image)
        fitted = fit_max_side(header, max_side, max_bytes, at_least=at_least, shrink=shrink)
        if fitted is None:
            cost = decode_cost(header, max_side, at_least=at_least, shrink=shrink)
            raise ImageTooLargeError(too_large_message(header, cost, max_bytes))
        if max_side is not None or fitted < max(header.size):
            max_side = fitted  # unchanged unless the budget asked for fewer pixels
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
        if max_side is not None:
            image = _reduce(image, max_side * (1 if shrink else 2))
        upright = _to_rgb(image)
        pixels = _to_array(upright)
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow reports truncated and corrupt data as OSError (and a few codecs as others).
        raise _corrupt(exc) from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError("the image expands to too many pixels to decode safely") from None
    finally:
        image.close()
    if max_side is not None and max(pixels.shape[:2]) > max_side * (1 if shrink else 2):
        pixels = _shrink(pixels, max_side)
    return DecodedImage(_upright(pixels, orientation), full_size, kind)


_STRIP_ROWS = 256


def _decode_own(
    kind: str,
    data: bytes,
    max_pixels: int,
    max_side: int | None,
    shrink: bool,
    max_bytes: int | None,
) -> DecodedImage:
    """WebP and HEIC: decoded straight into one array (Pillow's path holds several copies)."""
    if kind == "WEBP":
        header, orientation = _webp_header(data, max_pixels)
    else:
        header, orientation = _heif_header(data, max_pixels), 1  # libheif turns it upright
    if max_bytes is not None:
        cost = decode_cost(header, max_side, shrink=shrink)
        if cost > max_bytes:
            raise ImageTooLargeError(too_large_message(header, cost, max_bytes))
    width, height = header.size
    full_size = (height, width) if orientation in _SWAPS_AXES else (width, height)
    pixels = webp.decode_pixels(data) if kind == "WEBP" else heif.decode_pixels(data)
    if pixels.shape[:2] != (height, width):
        raise ImageError(f"the {kind} image data does not match its header: send it again")
    if max_side is not None and max(pixels.shape[:2]) > max_side * (1 if shrink else 2):
        pixels = _shrink(pixels, max_side)
    return DecodedImage(_upright(pixels, orientation), full_size, kind)


def _to_array(image: Image.Image) -> np.ndarray:
    """The RGB pixels as a NumPy array. Pillow's array interface first makes a full-size
    ``bytes`` copy (and its chunks): fine up to a few megapixels, where it is the fastest way;
    a larger image is copied strip by strip instead, so that copy never exists."""
    width, height = image.size
    if width * height <= WHOLE_COPY_PIXELS:
        return np.asarray(image)
    pixels = np.empty((height, width, 3), np.uint8)
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(height, top + _STRIP_ROWS)
        with image.crop((0, top, width, bottom)) as strip:
            pixels[top:bottom] = np.asarray(strip)
    image.close()
    return pixels


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply the EXIF orientation in NumPy (one copy at the end, the Pillow image gone)."""
    views = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    view = views.get(orientation)
    return pixels if view is None else np.ascontiguousarray(view(pixels))


def _reduce(image: Image.Image, limit: int) -> Image.Image:
    """Box-reduce by a whole factor (at least ``limit`` px stays on the longest side) before
    the RGB conversion and the NumPy copy, so neither is made at full size."""
    factor = max(image.size) // limit
    if factor < 2:
        return image
    source = image
    if image.mode not in REDUCIBLE:
        alpha = "A" in image.getbands() or "transparency" in image.info
        image = image.convert("RGBA" if alpha else "RGB")
        source.close()
    reduced = image.reduce(factor)
    image.close()  # the full-size pixels go now, not when the caller is done
    return reduced


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    height, width = pixels.shape[:2]
    ratio = max_side / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
