"""Studio portraits: level the eyes, frame head and shoulders at a print ratio, and replace
(or blur) the background. Only pixels inside the photo are used: a portrait is never padded.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from appliance.errors import ApplianceError
from appliance.imaging.decode import decode
from appliance.imaging.encode import encode_jpeg
from appliance.imaging.geometry import compose_affine
from appliance.imaging.layout import compose_sheet, paper_size_mm
from appliance.imaging.matte import (
    blurred_background,
    parse_hex_colour,
    replace_background,
    tighten,
)

if TYPE_CHECKING:
    from appliance.idphoto.pipeline import IdPhotoPipeline, Product, ProductRequest

RATIOS = {"4:5": (4, 5), "2:3": (2, 3), "1:1": (1, 1)}
# Head-and-shoulders: the eyes a third of the way down, the head about a third of the height.
EYES_FROM_TOP = 0.36
HEAD_SHARE = 0.34
MAX_SIDE = 3000
PRINT_DPI = 300


class PortraitError(ApplianceError, ValueError):
    """The portrait request cannot be met (unknown ratio, bad background)."""


def _ratio(text: str) -> tuple[int, int]:
    try:
        return RATIOS[text]
    except KeyError:
        raise PortraitError(
            f"unknown portrait ratio {text!r}: use one of {', '.join(RATIOS)}"
        ) from None


def make_portrait(pipeline: IdPhotoPipeline, data: bytes, request: ProductRequest) -> Product:
    from appliance.idphoto.pipeline import Product, Timings

    rw, rh = _ratio(request.portrait or "4:5")
    timings = Timings()
    imaging = pipeline.config.imaging
    with timings("decode"):
        analysis = decode(
            data,
            max_pixels=imaging.max_pixels,
            max_side=imaging.analysis_max_side,
            at_least=False,
            max_bytes=imaging.decode_budget_bytes,
        )
    _, marks, view, mask = pipeline._find_face_and_mask(data, analysis, timings)
    full_w, full_h = analysis.full_size
    # Head height from chin to the top of the face mesh, plus the usual share above it.
    head = math.dist(marks.chin, marks.forehead) * 1.3 / view.scale
    eye_x, eye_y = view.to_full(*marks.eye_mid)
    crop_h = head / HEAD_SHARE
    crop_w = crop_h * rw / rh
    # Shrink the frame until it fits inside the photo around the eyes, keeping its ratio.
    fit = min(
        1.0,
        full_w / crop_w,
        full_h / crop_h,
    )
    crop_w, crop_h = crop_w * fit, crop_h * fit
    x0 = min(max(eye_x - crop_w / 2.0, 0.0), full_w - crop_w)
    y0 = min(max(eye_y - EYES_FROM_TOP * crop_h, 0.0), full_h - crop_h)
    scale = min(1.0, MAX_SIDE / max(crop_w, crop_h))
    out_w, out_h = max(1, round(crop_w * scale)), max(1, round(crop_h * scale))
    with timings("decode_kept"):
        kept = decode(
            data,
            max_pixels=imaging.max_pixels,
            max_side=math.ceil(max(full_w, full_h) * scale),
            max_bytes=imaging.decode_budget_bytes,
        )
    # full px -> output px: level the eyes about their midpoint, then crop and scale.
    roll = marks.roll
    level = cv2.getRotationMatrix2D((eye_x, eye_y), roll, 1.0)
    crop = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
    full_to_out = compose_affine(crop, level)
    kept_to_full = np.array([[1 / kept.scale, 0, 0], [0, 1 / kept.scale, 0]])
    with timings("render"):
        pixels = cv2.warpAffine(
            kept.pixels,
            compose_affine(full_to_out, kept_to_full),
            (out_w, out_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        view_to_full = np.array(
            [[1 / view.scale, 0, view.origin[0]], [0, 1 / view.scale, view.origin[1]]]
        )
        alpha = tighten(
            pipeline.inference.segmenter.refine(
                mask, pixels, compose_affine(full_to_out, view_to_full)
            )
        )
        background = request.background
        if background == "blur":
            pixels = replace_background(pixels, alpha, blurred_background(pixels, alpha))
        elif background:
            pixels = replace_background(pixels, alpha, parse_hex_colour(background))
    with timings("encode"):
        digital = encode_jpeg(pixels, dpi=PRINT_DPI, quality=95)
        preview = cv2.resize(
            pixels,
            None,
            fx=min(1.0, 900 / max(out_w, out_h)),
            fy=min(1.0, 900 / max(out_w, out_h)),
            interpolation=cv2.INTER_AREA,
        )
    with timings("sheet"):
        sheet = _print_sheet(pixels, request.paper, rw / rh)
    report = {
        "product": "portrait",
        "ratio": request.portrait,
        "input": {"format": analysis.format, "size": [full_w, full_h]},
        "output": {"size": [out_w, out_h], "dpi": PRINT_DPI, "bytes": len(digital)},
        "transforms": {
            "roll_corrected_deg": round(roll, 2),
            "crop_source": [round(x0), round(y0), round(crop_w), round(crop_h)],
            "background": background or "original",
        },
        "checks": [],
        "verdict": "pass",
        "notes": [] if fit >= 1.0 else ["the photo is tighter than a head-and-shoulders frame"],
        "timings_ms": timings.stages,
    }
    return Product(digital, sheet, encode_jpeg(preview, dpi=72, quality=85), report)


def _print_sheet(pixels: np.ndarray, paper: str, ratio: float) -> bytes:
    """The portrait as large as the paper allows (one copy, 5 mm margins)."""
    paper_w, paper_h = paper_size_mm(paper)
    long_side, short_side = max(paper_w, paper_h) - 10.0, min(paper_w, paper_h) - 10.0
    # Try the photo upright on the paper's long side, then across, and take the larger.
    candidates = []
    for box_w, box_h in ((short_side, long_side), (long_side, short_side)):
        width = min(box_w, box_h * ratio)
        candidates.append((width * width / ratio, width, width / ratio))
    _, width_mm, height_mm = max(candidates)
    sheet = compose_sheet(pixels, (width_mm, height_mm), paper=paper, dpi=PRINT_DPI, margin_mm=5.0)
    return encode_jpeg(sheet.image, dpi=sheet.dpi, quality=95, subsampling=2)
