"""Where the head is, and where it must go: crown, chin, eye line, and the frame placement.

The chin and eyes come from the face mesh; the crown (top of the head, hair included) from the
person matte, read in an upright head frame (the eye line made level) so a tilted head is
measured along its own axis. The placement then solves the document's rules in millimetres:
head height at the middle of the allowed range, the eye line inside its band, the crown and
chin margins respected, the face centred.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from appliance.errors import SubjectCutError
from appliance.idphoto.specs import DocumentSpec
from appliance.imaging.geometry import (
    Point,
    apply_affine,
    inside_mask,
    invert_affine,
    rotation_about,
)
from appliance.inference.landmarks import FaceLandmarks
from appliance.inference.segmenter import PortraitMask, PortraitSegmenter, refine_radius

# Upright head frame: eye distances (u) either side of the eye midpoint, and pixels per u.
FRAME_HALF_WIDTH_U = 3.0
FRAME_ABOVE_U = 4.5
FRAME_BELOW_U = 3.0
FRAME_PX_PER_U = 48
CROWN_BAND_U = 0.5  # half-width of the column band the crown is read in
# Space kept above the hair where the document sets no crown margin.
MIN_CROWN_MARGIN_MM = 1.0


@dataclass(frozen=True)
class HeadGeometry:
    """The head measured in one image's pixels (the analysis image)."""

    roll: float  # degrees; rotating the image by this makes the eyes level
    eye_mid: Point
    eye_distance: float
    chin: Point
    crown: Point
    centre_x: float  # horizontal face centre in the upright frame, relative to eye_mid
    chin_depth: float  # chin below the eye line, upright, in pixels
    crown_height: float  # crown above the eye line, upright, in pixels
    crown_from_matte: bool
    notes: tuple[str, ...] = ()

    @property
    def head_height(self) -> float:
        return self.chin_depth + self.crown_height


def _upright_affine(marks: FaceLandmarks) -> tuple[np.ndarray, float]:
    """Affine from image pixels to the upright head frame raster, and the eye distance."""
    u = marks.eye_distance
    scale = FRAME_PX_PER_U / u
    ex, ey = marks.eye_mid
    level = rotation_about(marks.eye_mid, marks.roll, scale)  # eyes level, about eye_mid
    level[0, 2] += FRAME_HALF_WIDTH_U * FRAME_PX_PER_U - ex
    level[1, 2] += FRAME_ABOVE_U * FRAME_PX_PER_U - ey
    return level, u


def measure_head(
    pixels: np.ndarray,
    marks: FaceLandmarks,
    mask: PortraitMask,
    segmenter: PortraitSegmenter,
) -> HeadGeometry:
    """Crown from the refined matte above the face; chin and eyes from the mesh."""
    to_frame, u = _upright_affine(marks)
    g = FRAME_PX_PER_U
    width = round(2 * FRAME_HALF_WIDTH_U * g)
    height = round((FRAME_ABOVE_U + FRAME_BELOW_U) * g)
    eye_row = round(FRAME_ABOVE_U * g)
    chin_f, forehead_f = apply_affine(to_frame, np.array([marks.chin, marks.forehead]))
    chin_x, chin_y, forehead_y = float(chin_f[0]), float(chin_f[1]), float(forehead_f[1])
    centre = (width / 2.0 + chin_x) / 2.0  # between the eye midpoint and the chin
    # The crown is read in a column band above the eyes: only that strip of the frame (and
    # the pixels the refinement looks at around it) is warped and refined.
    reach = 2 * refine_radius(mask, to_frame) + 2
    x0 = max(0, round(centre - CROWN_BAND_U * g) - reach)
    x1 = min(width, round(centre + CROWN_BAND_U * g) + 1 + reach)
    strip_h = min(height, eye_row + reach)
    to_strip = to_frame.copy()
    to_strip[0, 2] -= x0
    guide = cv2.warpAffine(
        pixels,
        to_strip,
        (x1 - x0, strip_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    inside = inside_mask(pixels.shape, to_strip, (x1 - x0, strip_h))
    alpha = segmenter.refine(mask, guide, to_strip)
    band = slice(round(centre - CROWN_BAND_U * g) - x0, round(centre + CROWN_BAND_U * g) + 1 - x0)
    person = (alpha[:, band] >= 0.5).mean(axis=1)
    in_photo = inside[:, band].mean(axis=1)
    notes: list[str] = []
    row = eye_row
    while row > 0 and person[row - 1] >= 0.3:
        if in_photo[row - 1] < 0.99:
            raise SubjectCutError(
                "the top of the head is cut off in the photo: leave space above the hair "
                "(step back or tilt the camera up) and retake"
            )
        row -= 1
    if row == 0:
        notes.append("the hair or headwear reaches past the measuring frame")
    crown_height = (eye_row - row) / g * u
    chin_depth = (chin_y - eye_row) / g * u
    forehead_height = (eye_row - forehead_y) / g * u
    from_matte = True
    if crown_height < forehead_height * 1.05:
        # The matte missed the top of the head (hair against a similar background): use the
        # typical proportion of the head above the mesh's top instead, and say so.
        crown_height = forehead_height + 0.3 * (forehead_height + chin_depth)
        from_matte = False
        notes.append("crown estimated from the face proportions: the matte did not show it")
    elif crown_height + chin_depth > 2.0 * (forehead_height + chin_depth):
        notes.append("hair or headwear makes the head unusually tall")
    from_frame = invert_affine(to_frame)
    crown_frame = np.array([[centre, eye_row - crown_height / u * g]])
    crown = apply_affine(from_frame, crown_frame)[0]
    return HeadGeometry(
        roll=marks.roll,
        eye_mid=marks.eye_mid,
        eye_distance=u,
        chin=marks.chin,
        crown=(float(crown[0]), float(crown[1])),
        centre_x=(centre - width / 2.0) / g * u,
        chin_depth=chin_depth,
        crown_height=crown_height,
        crown_from_matte=from_matte,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class FramePlan:
    """Image pixels -> millimetres on the document (origin top left), and what was aimed at."""

    to_mm: np.ndarray  # 2x3 affine
    mm_per_px: float
    width_mm: float
    height_mm: float
    head_mm: float
    eye_from_bottom_mm: float
    crown_from_top_mm: float
    roll: float
    notes: tuple[str, ...] = field(default=())


def _eye_interval(spec: DocumentSpec, head: HeadGeometry, mm_per_px: float) -> tuple[float, float]:
    """Where the eye line may sit (mm from the top) at this scale, by every rule at once."""
    height_mm = spec.height_mm
    crown_above_eye = head.crown_height * mm_per_px
    chin_below_eye = head.chin_depth * mm_per_px
    eye_lo, eye_hi = spec.eye_line_mm  # from the bottom
    low, high = height_mm - eye_hi, height_mm - eye_lo
    crown_margin = spec.crown_margin_mm or (MIN_CROWN_MARGIN_MM, height_mm)
    low = max(low, crown_margin[0] + crown_above_eye)
    high = min(high, crown_margin[1] + crown_above_eye)
    if spec.chin_margin_mm is not None:
        chin_lo, chin_hi = spec.chin_margin_mm
        high = min(high, height_mm - chin_lo - chin_below_eye)
        low = max(low, height_mm - chin_hi - chin_below_eye)
    return low, high


def plan_frame(head: HeadGeometry, spec: DocumentSpec) -> FramePlan:
    """Scale and place the head by the spec's rules (all in millimetres).

    The head height aims at the middle of its range; where the head's own proportions (a tall
    hairstyle, a long chin) make the eye band and the margins impossible together at that
    size, the nearest head height in the range that satisfies all of them is taken.
    """
    width_mm, height_mm = spec.width_mm, spec.height_mm
    head_lo, head_hi = spec.head_height_mm
    middle = (head_lo + head_hi) / 2.0
    steps = 16
    candidates = [middle] + [
        middle + sign * (head_hi - head_lo) / 2.0 * i / steps
        for i in range(1, steps + 1)
        for sign in (-1.0, 1.0)
    ]
    eye_lo, eye_hi = spec.eye_line_mm
    target = height_mm - (eye_lo + eye_hi) / 2.0
    notes: list[str] = []
    for head_mm in candidates:
        mm_per_px = head_mm / head.head_height
        low, high = _eye_interval(spec, head, mm_per_px)
        if low <= high:
            eye_y = min(max(target, low), high)
            break
    else:
        # Nothing fits: keep the crown inside the frame at the smallest allowed head, and let
        # the eye-line check report how far off it is.
        head_mm = head_lo
        mm_per_px = head_mm / head.head_height
        low, _ = _eye_interval(spec, head, mm_per_px)
        eye_y = low
        notes.append("the head's proportions do not fit every rule of this document at once")
    crown_above_eye = head.crown_height * mm_per_px
    # image px -> upright (level eyes, eye midpoint at the origin) -> mm
    level = rotation_about(head.eye_mid, head.roll, mm_per_px)
    level[0, 2] += width_mm / 2.0 - head.eye_mid[0] - head.centre_x * mm_per_px
    level[1, 2] += eye_y - head.eye_mid[1]
    return FramePlan(
        to_mm=level,
        mm_per_px=mm_per_px,
        width_mm=width_mm,
        height_mm=height_mm,
        head_mm=head_mm,
        eye_from_bottom_mm=height_mm - eye_y,
        crown_from_top_mm=eye_y - crown_above_eye,
        roll=head.roll,
        notes=tuple(notes),
    )


def raster_affine(plan: FramePlan, size: tuple[int, int], px_per_mm: float) -> np.ndarray:
    """mm -> pixels of a raster `size` (w, h) at `px_per_mm`, centred horizontally."""
    width, height = size
    offset_x = (width - plan.width_mm * px_per_mm) / 2.0
    offset_y = (height - plan.height_mm * px_per_mm) / 2.0
    return np.array([[px_per_mm, 0.0, offset_x], [0.0, px_per_mm, offset_y]])
