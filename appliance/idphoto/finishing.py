"""What is made from the finished photo: the print sheet, every check, the report's geometry.

The pipeline (appliance/idphoto/pipeline.py) runs these beside each other: see `side_work`
there for which runs where.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from appliance.config import Config
from appliance.idphoto import checks as checks_mod
from appliance.idphoto.framing import raster_affine
from appliance.idphoto.render import chain, kept_to_view, render
from appliance.idphoto.specs import DocumentSpec
from appliance.idphoto.stages import Timings
from appliance.imaging.decode import DecodedImage
from appliance.imaging.encode import encode_jpeg
from appliance.imaging.geometry import apply_affine
from appliance.imaging.layout import compose_sheet
from appliance.imaging.remnants import Remnant
from appliance.inference.detector import Face
from appliance.inference.service import InferenceService


def print_sheet(
    inference: InferenceService,
    config: Config,
    pixels: np.ndarray,
    spec: DocumentSpec,
    paper: str,
    plan: Any,
    mask: Any,
    view: Any,
    kept: DecodedImage,
    background: tuple[int, int, int],
    chin_mm: float,
    head: Any,
) -> bytes:
    """The print sheet of the finished photo, JPEG-encoded (`view` is the pipeline's View)."""
    dpi = config.product.sheet_dpi
    per_mm = dpi / 25.4
    print_size = (round(spec.width_mm * per_mm), round(spec.height_mm * per_mm))
    height, width = pixels.shape[:2]
    if abs(width / height - print_size[0] / print_size[1]) < 0.01:
        photo = pixels  # same shape: compose_sheet resizes it to the exact print pixels
    else:  # a portal-shaped digital frame: render the print shape on its own
        to_raster = chain(plan.to_mm, raster_affine(plan, print_size, per_mm))
        kept_to_raster = chain(kept_to_view(view.scale, view.origin, kept.scale), to_raster)
        photo = render(
            kept.pixels,
            kept_to_raster,
            to_raster,
            print_size,
            mask,
            inference,
            background,
            chin_mm * per_mm,
            plan.head_mm * per_mm,
            *face_on(to_raster, head),
        ).pixels
    sheet = compose_sheet(photo, (spec.width_mm, spec.height_mm), paper=paper, dpi=dpi)
    # Printed at 300 dpi, 4:2:0 chroma (150 dpi) is below what the eye resolves on paper.
    return encode_jpeg(sheet.image, dpi=sheet.dpi, quality=95, subsampling=2)


def all_checks(
    rendered: Any,
    measured: Any,
    spec: DocumentSpec,
    px_per_mm: float,
    background: tuple[int, int, int],
    source_per_out: float,
    roll: float,
    remnants: list[Remnant],
    face: list[checks_mod.Check],
) -> list[checks_mod.Check]:
    """Every check in report order; `face` are the face checks (face_checks.py), measured
    beside the others."""
    if measured is None:
        return [checks_mod.check("single face", "fail", 0, "exactly 1", "no face")]
    measure, _points = measured
    return [
        *checks_mod.geometry_checks(measure, spec, px_per_mm),
        *checks_mod.pose_checks(measure, roll),
        *checks_mod.image_checks(
            rendered.pixels, rendered.alpha, measure, background, source_per_out
        ),
        checks_mod.background_check(
            rendered.pixels, rendered.alpha, measure, background, px_per_mm, remnants
        ),
        *face,
        checks_mod.framing_check(rendered.extended_share),
    ]


def face_on(view_to_raster: np.ndarray, head: Any) -> tuple[tuple[float, float], float]:
    """The eye midpoint and the eye distance of `head` on a raster."""
    x, y = apply_affine(view_to_raster, np.array([head.eye_mid]))[0]
    return (float(x), float(y)), head.eye_distance * float(np.hypot(*view_to_raster[:, 0]))


def geometry(measure: Any, px_per_mm: float, size: tuple[int, int]) -> dict[str, float]:
    if measure is None:
        return {}
    return {
        "crown_y": round(measure.crown_y, 1),
        "chin_y": round(measure.chin_y, 1),
        "eye_line_y": round(measure.eye_mid[1], 1),
        "face_centre_x": round(measure.face_centre_x, 1),
        "head_height_mm": round((measure.chin_y - measure.crown_y) / px_per_mm, 2),
        "eye_line_from_bottom_mm": round((size[1] - measure.eye_mid[1]) / px_per_mm, 2),
        "centre_offset_mm": round((measure.face_centre_x - size[0] / 2) / px_per_mm, 2),
        "eye_distance_px": round(measure.eye_distance, 1),
    }


def make_report(
    spec: DocumentSpec,
    analysis: DecodedImage,
    face: Face,
    view: Any,
    size: tuple[int, int],
    px_per_mm: float,
    digital: Any,
    measured: Any,
    head: Any,
    plan: Any,
    out_per_full: float,
    background: tuple[int, int, int],
    rendered: Any,
    report_checks: list[checks_mod.Check],
    timings: Timings,
) -> dict[str, Any]:
    """The report of one ID photo (`view` is the View the face was found in)."""
    return {
        "spec": spec.id,
        "input": {"format": analysis.format, "size": list(analysis.full_size)},
        "face": {
            "score": round(face.score, 3),
            "box": [
                round(v)
                for v in (
                    *view.to_full(face.box.x0, face.box.y0),
                    *view.to_full(face.box.x1, face.box.y1),
                )
            ],
        },
        "output": {
            "size": list(size),
            "dpi": round(px_per_mm * 25.4),
            "bytes": len(digital.data),
            "jpeg_quality": digital.quality,
        },
        "geometry": geometry(measured[0] if measured else None, px_per_mm, size),
        "transforms": {
            "roll_corrected_deg": round(head.roll, 2),
            "scale_out_per_source_px": round(out_per_full, 4),
            "background": "#{:02X}{:02X}{:02X}".format(*background),
            "subject_extended_px": rendered.extended_px,
            "matte_dropped_px": rendered.dropped_px,
            "crown_from_matte": head.crown_from_matte,
        },
        "checks": [c.to_dict() for c in report_checks],
        "verdict": checks_mod.worst(report_checks),
        "notes": list(head.notes + plan.notes),
        "timings_ms": timings.stages,
    }
