"""How much memory decoding a photo takes, known from its header before a pixel is decoded.

A 200 KB PNG can hold 64 MP of one colour: decoding it in full takes 256 MB in Pillow (RGB is
stored at 4 bytes a pixel) before a single pixel is scaled down, which is an OOM kill on a
1 GB Pi. JPEG is the exception: DCT scaling decodes straight to 1/2, 1/4 or 1/8 size, so only
the scaled pixels are held, except for progressive JPEGs, whose whole-image DCT coefficients
(2 bytes per sample) libjpeg buffers at full resolution. Every other format is decoded in full.

``decode_cost`` adds up those buffers for one decode; the decoder refuses a decode whose cost
is over the budget, and the upload path checks the cheapest decode the pipeline will need
before the photo is stored, so a bomb is refused with a clear message at upload time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image

MB = 1_000_000
# Pillow's storage per pixel: 1 byte for "1", "L", "P"; 2 for 16-bit grey; 4 for the rest
# (RGB and LA included: both live in 32-bit pixels).
_ONE_BYTE = {"1", "L", "P"}
_TWO_BYTES = {"I;16", "I;16L", "I;16B", "I;16N"}
# Modes Image.reduce() takes as they are; others are converted (a full-size copy) first.
REDUCIBLE = {"L", "LA", "RGB", "RGBA", "RGBX", "RGBa", "La", "I", "F", "CMYK", "YCbCr"}


# Up to this many pixels the NumPy array is made through Pillow's array interface (fastest);
# above it strip by strip, without a full-size bytes copy (decode._to_array).
WHOLE_COPY_PIXELS = 4_000_000


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: enough to cost a decode without decoding."""

    format: str
    mode: str
    size: tuple[int, int]  # as stored (before EXIF orientation)
    progressive: bool = False
    # Sum over components of the sample share (1.0 for grey, 1.5 for 4:2:0, 3.0 for 4:4:4).
    samples_per_px: float = 3.0

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


def header_of(image: Image.Image) -> ImageHeader:
    progressive = bool(image.info.get("progressive") or image.info.get("progression"))
    samples = float(len(image.getbands()))
    if image.format == "JPEG":
        layers = getattr(image, "layer", None) or []
        if layers:
            h_max = max(layer[1] for layer in layers)
            v_max = max(layer[2] for layer in layers)
            samples = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
    return ImageHeader(image.format or "unknown", image.mode, image.size, progressive, samples)


def _stored_bytes_per_px(mode: str) -> int:
    if mode in _ONE_BYTE:
        return 1
    return 2 if mode in _TWO_BYTES else 4


def jpeg_draft_scale(size: tuple[int, int], requested: tuple[int, int]) -> int:
    """The DCT scale (1, 2, 4 or 8) Pillow's draft picks for ``requested``: never smaller."""
    width, height = size
    for scale in (8, 4, 2):
        if math.ceil(width / scale) >= requested[0] and math.ceil(height / scale) >= requested[1]:
            return scale
    return 1


def decoded_size(
    header: ImageHeader, max_side: int | None, at_least: bool
) -> tuple[tuple[int, int], bool]:
    """The size the decoder itself produces, and whether it reduced while decoding."""
    width, height = header.size
    if max_side is None or header.format != "JPEG":
        return header.size, False
    ratio = max_side / max(width, height) / (1.0 if at_least else 2.0)
    if ratio >= 1.0:
        return header.size, False
    requested = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    scale = jpeg_draft_scale(header.size, requested)
    return (math.ceil(width / scale), math.ceil(height / scale)), scale > 1


def decode_cost(
    header: ImageHeader, max_side: int | None, *, at_least: bool = True, shrink: bool = True
) -> int:
    """Bytes the decode holds at its peak: the largest of its phases, each the sum of the
    buffers alive together (decode.py frees each one as soon as the next exists)."""
    (width, height), reduced = decoded_size(header, max_side, at_least)
    decoded_px = width * height
    if header.format == "WEBP":
        # OpenCV (webp.py): libwebp's output and OpenCV's array (measured 6 bytes a pixel in
        # all for RGB); with alpha, two 4-byte copies and our RGB array.
        return decoded_px * (11 if "A" in header.mode else 6)
    if header.format == "HEIF":
        # heif.py: libheif's RGB(A) buffer, read in place, plus its decoder's own planes
        # (measured 4.6 bytes a pixel for RGB); with alpha, our RGB array too.
        return decoded_px * (9 if "A" in header.mode else 5)
    decoded = decoded_px * _stored_bytes_per_px(header.mode)
    kept_px = decoded_px  # what survives Image.reduce (a whole factor, at least the limit)
    limit = None if max_side is None else max_side * (1 if shrink else 2)
    phase_decode = decoded
    if header.format == "AVIF":
        phase_decode += decoded_px * 3  # pillow-heif's own decoded buffer (not measured here)
    if header.format == "JPEG" and header.progressive:
        phase_decode += math.ceil(header.pixels * header.samples_per_px * 2)  # coefficients
    if not reduced and limit is not None and max(width, height) // limit >= 2:
        factor = max(width, height) // limit
        kept_px = math.ceil(width / factor) * math.ceil(height / factor)
        if header.mode not in REDUCIBLE:
            phase_decode += decoded_px * 4  # converted to RGB(A) before it can be reduced
        phase_decode += kept_px * 4
        decoded = kept_px * 4  # the full-size image is closed once reduced
    # RGB conversion (with alpha: the RGBA copy and the white canvas), then our array (up to
    # WHOLE_COPY_PIXELS through Pillow's tobytes: its chunks and their join, 6 bytes a pixel).
    converting = 0 if header.mode == "RGB" else 2 * kept_px * 4
    array = kept_px * (6 if kept_px <= WHOLE_COPY_PIXELS else 3)
    phase_array = decoded + converting + array
    # The Pillow image is gone; shrinking or turning upright adds one more array.
    phase_after = kept_px * 3 * 2
    return max(phase_decode, phase_array, phase_after)


def fit_max_side(
    header: ImageHeader,
    max_side: int | None,
    budget: int,
    *,
    at_least: bool = True,
    shrink: bool = True,
) -> int | None:
    """The largest ``max_side`` (at most the one asked for) whose decode fits ``budget``.

    None when no decode fits: a format decoded in full whose full size is over the budget, or
    a progressive JPEG whose coefficients alone are. A decode asked for more pixels than the
    budget holds gets fewer (the caller's geometry follows the decoded scale).
    """
    side = max(header.size) if max_side is None else max_side
    while decode_cost(header, side, at_least=at_least, shrink=shrink) > budget:
        if side <= 64:
            return None  # not even a thumbnail fits: the full-size decode alone is over
        side = side * 3 // 4
    return side


def too_large_message(header: ImageHeader, cost: int, budget: int) -> str:
    width, height = header.size
    kind = "progressive JPEG" if header.progressive and header.format == "JPEG" else header.format
    advice = (
        "send a baseline (non-progressive) JPEG or a smaller photo"
        if header.format == "JPEG"
        else f"send it as a JPEG, or at most {budget // (5 * MB)} MP"
    )
    return (
        f"this {kind} of {width}x{height} ({width * height / MB:.0f} MP) needs about "
        f"{cost / MB:.0f} MB to decode, over this appliance's decode budget of "
        f"{budget / MB:.0f} MB (imaging.decode_budget_mb and the memory it has): {advice}"
    )
