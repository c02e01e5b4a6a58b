"""Render the planned frame from the kept pixels, replace the background, and measure it.

Only the region the document needs is ever resampled: the kept decode is at most the scale the
output needs, the warp goes straight from it into the output raster (crop, scale and roll in one
step), and the matte is refined on that raster. Pixels the frame needs from beyond the photo are
filled from its edge, and so is their matte: only what the matte calls the person at the
photo's edge is continued there (clothing below a photo cut under the shoulders), everything
else is the new background, so none of the old background is smeared into the frame. Where the
*subject* would have to be invented beyond the edge instead (the head), the photo is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.errors import SubjectCutError
from appliance.idphoto.checks import OutputMeasure, Region
from appliance.imaging.body import drop_foreign
from appliance.imaging.geometry import (
    Point,
    apply_affine,
    compose_affine,
    inside_mask,
    invert_affine,
)
from appliance.imaging.matte import replace_background, tighten
from appliance.inference.detector import Face
from appliance.inference.landmarks import MIN_PRESENCE
from appliance.inference.segmenter import PortraitMask
from appliance.inference.service import InferenceService

# How much of the body below the chin, in head heights, the photo itself must show.
SHOULDER_SHARE = 0.35
# The photo's outermost lines (kept-decode px) the frame is not continued from.
EDGE_LINES = 3


@dataclass(frozen=True)
class Rendered:
    pixels: np.ndarray  # the finished photo, uint8 RGB
    alpha: np.ndarray  # refined matte on it, float32
    extended_px: int  # rows of subject continued past the photo's edge
    extended_share: float  # share of the frame where the subject was continued
    dropped_px: int = 0  # solid matte taken away as not the person (poles, flag fringes)
    # The same raster before the background was replaced (None when it was kept): the
    # remnant measure sees there what a kept part continues beyond the outline.
    source: np.ndarray | None = None


def render(
    kept: np.ndarray,
    kept_to_raster: np.ndarray,
    view_to_raster: np.ndarray,
    size: tuple[int, int],
    mask: PortraitMask,
    inference: InferenceService,
    background: tuple[int, int, int] | None,
    chin_row: float,
    head_rows: float,
    face_point: Point,
    eye_px: float,
) -> Rendered:
    """`face_point` (the eye midpoint), `eye_px` (the eye distance) and `chin_row`, in raster
    pixels, tell the person's body from what the matte joined to it."""
    width, height = size
    kept, kept_to_raster = _reduce_region(kept, kept_to_raster, size)
    enlarge = float(np.hypot(*kept_to_raster[:, 0])) > 1.05
    pixels = cv2.warpAffine(
        kept,
        kept_to_raster,
        size,
        flags=cv2.INTER_CUBIC if enlarge else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    inside = inside_mask(kept.shape, kept_to_raster, size)
    continuation = EdgeContinuation(kept.shape, kept_to_raster, size)
    pixels = continuation.apply(pixels)
    alpha = tighten(inference.segmenter.refine(mask, pixels, view_to_raster))
    alpha = continuation.apply(alpha)
    alpha, dropped = drop_foreign(alpha, pixels, face_point, eye_px, chin_row)
    # The photo must show the neck and the top of the shoulders (a third of a head below the
    # chin); below that, clothing the frame needs past the photo's edge is continued from it.
    centre = inside[:, width // 2]
    last_row = int(np.flatnonzero(centre).max()) if centre.any() else -1
    if last_row < min(height - 1, chin_row + SHOULDER_SHARE * head_rows):
        raise SubjectCutError(
            "the photo ends too close to the chin: the document needs the neck and the top of "
            "the shoulders; step back (or zoom out) and retake"
        )
    outside_subject = (~inside) & (alpha >= 0.5)
    extended, share = 0, 0.0
    if outside_subject.any():
        rows = np.flatnonzero(outside_subject.any(axis=1))
        if rows.min() < chin_row:
            raise SubjectCutError(
                "part of the head is outside the photo: centre the face with space around the "
                "hair and retake"
            )
        extended = int(rows.max() - rows.min() + 1)
    share = float(outside_subject.mean())
    if background is None:
        return Rendered(pixels, alpha, extended, share, dropped)
    replaced = replace_background(pixels, alpha, background)
    return Rendered(replaced, alpha, extended, share, dropped, pixels)


class EdgeContinuation:
    """Beyond the photo's edge, each raster pixel repeats the photo's pixel at the edge along
    the photo's own axes (a photo cut below the shoulders goes on in its clothing), colour and
    matte alike, read EDGE_LINES inside the edge. The warp's own border replication would
    repeat the outermost lines, and a photo's outermost lines are often a codec or resizing
    artefact (a light or half-blended line); the segmenter's guess on the smeared rows, too,
    now and then takes a bar of the old background for the person. With the matte repeated
    from the photo, only what it calls the person at the edge is continued there; the rest is
    new background."""

    def __init__(
        self, source_shape: tuple[int, ...], to_raster: np.ndarray, size: tuple[int, int]
    ) -> None:
        width, height = size
        self.outside = ~inside_mask(source_shape, to_raster, size, margin=EDGE_LINES)
        self.maps: tuple[np.ndarray, np.ndarray] | None = None
        if not self.outside.any():
            return
        ys, xs = np.nonzero(self.outside)
        source = apply_affine(invert_affine(to_raster), np.stack([xs, ys], axis=1))
        # A raster pixel further in than the kept lines: the bilinear read below then takes
        # only pixels inside them.
        inward = EDGE_LINES + 1.0 / max(float(np.hypot(*to_raster[:, 0])), 1e-6)
        for axis, extent in ((0, source_shape[1]), (1, source_shape[0])):
            low, high = inward, extent - 1 - inward
            if low > high:
                low = high = (extent - 1) / 2.0
            source[:, axis] = np.clip(source[:, axis], low, high)
        edge = apply_affine(to_raster, source).astype(np.float32)
        map_x = np.tile(np.arange(width, dtype=np.float32), (height, 1))
        map_y = np.repeat(np.arange(height, dtype=np.float32)[:, None], width, axis=1)
        map_x[ys, xs], map_y[ys, xs] = edge[:, 0], edge[:, 1]
        self.maps = (map_x, map_y)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """`image` (a raster of the frame) with the pixels beyond the edge continued."""
        if self.maps is None:
            return image
        continued = cv2.remap(image, *self.maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # Only the pixels beyond the edge are taken from the remap: the photo's own stay
        # bit-exact.
        out = image.copy()
        out[self.outside] = continued[self.outside]
        return out


def _reduce_region(
    kept: np.ndarray, to_raster: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """When the warp would shrink a lot, area-resample just the region the output shows first
    (a bilinear warp that skips source pixels aliases hair and fabric)."""
    scale = float(np.hypot(*to_raster[:, 0]))
    if scale >= 0.8:
        return kept, to_raster
    width, height = size
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
    source = apply_affine(invert_affine(to_raster), corners)
    h, w = kept.shape[:2]
    # Margin enough that only the photo's own edges come within EDGE_LINES of the frame.
    pad = 2 + int(np.ceil((EDGE_LINES + 2) / scale))
    x0 = max(0, int(np.floor(source[:, 0].min())) - pad)
    y0 = max(0, int(np.floor(source[:, 1].min())) - pad)
    x1 = min(w, int(np.ceil(source[:, 0].max())) + pad)
    y1 = min(h, int(np.ceil(source[:, 1].max())) + pad)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return kept, to_raster
    region = kept[y0:y1, x0:x1]
    out_w, out_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    reduced = cv2.resize(region, (out_w, out_h), interpolation=cv2.INTER_AREA)
    sx, sy = (x1 - x0) / out_w, (y1 - y0) / out_h
    # reduced px -> kept px -> raster px
    back = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
    return reduced, compose_affine(to_raster, back)


def measure_output(
    pixels: np.ndarray,
    alpha: np.ndarray,
    inference: InferenceService,
    face: Face,
    eyes: tuple[Point, Point],
    face_count: int,
) -> tuple[OutputMeasure, np.ndarray] | None:
    """The pipeline's own landmark pass on the finished photo (None when the mesh finds no
    face there). `face` and `eyes` are the source's face and mesh eyes mapped onto the photo:
    they place the mesh's crop (as MediaPipe's tracking places it from the previous frame);
    every measured point comes from the mesh run on the finished pixels."""
    marks = inference.landmarker.with_eyes(pixels, face, eyes)
    if marks.presence < MIN_PRESENCE:
        return None
    eye_x, eye_y = marks.eye_mid
    centre_x = (eye_x + marks.chin[0]) / 2.0
    band = max(2, round(marks.eye_distance * 0.5))
    columns = alpha[:, max(0, round(centre_x) - band) : round(centre_x) + band + 1]
    person = (columns >= 0.5).mean(axis=1)
    row = round(eye_y)
    while row > 0 and person[row - 1] >= 0.3:
        row -= 1
    # The face's extent from the mesh on these pixels (forehead to chin, cheek to cheek).
    (x0, y0), (x1, y1) = marks.points[:, :2].min(axis=0), marks.points[:, :2].max(axis=0)
    measure = OutputMeasure(
        face_count=face_count,
        eye_mid=(eye_x, eye_y),
        eye_distance=marks.eye_distance,
        chin_y=marks.chin[1],
        crown_y=float(row),
        face_centre_x=centre_x,
        roll=marks.roll,
        yaw=marks.yaw,
        pitch=marks.pitch,
        eyes_open=min(marks.right_eye_openness, marks.left_eye_openness),
        mouth_open=marks.mouth_openness,
        face_box=(round(x0), round(y0), round(x1), round(y1)),
    )
    return measure, marks.points[:, :2]


def draw_guides(
    pixels: np.ndarray,
    measure: OutputMeasure | None,
    eye_band: tuple[float, float],
    head_band: tuple[float, float] | None,
    max_side: int = 900,
    marks: list[Region] | None = None,
) -> np.ndarray:
    """A preview for the operator: crown, chin and eye lines, the allowed eye band, centre,
    and a box around each place a check found a problem (`marks`, in output pixels)."""
    scale = min(1.0, max_side / max(pixels.shape[:2]))
    view = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    height, width = view.shape[:2]
    overlay = view.copy()
    top, bottom = (round(v * scale) for v in eye_band)
    cv2.rectangle(overlay, (0, top), (width - 1, bottom), (80, 160, 255), -1)
    view = cv2.addWeighted(overlay, 0.18, view, 0.82, 0)
    thick = max(1, round(width / 300))
    cv2.line(view, (width // 2, 0), (width // 2, height - 1), (40, 170, 60), thick)
    if head_band is not None:
        for y in head_band:
            cv2.line(
                view, (0, round(y * scale)), (width // 8, round(y * scale)), (120, 120, 120), thick
            )
    if measure is not None:
        for y, colour in (
            (measure.crown_y, (220, 40, 40)),
            (measure.chin_y, (220, 40, 40)),
            (measure.eye_mid[1], (30, 90, 230)),
        ):
            cv2.line(view, (0, round(y * scale)), (width - 1, round(y * scale)), colour, thick)
    for region in marks or ():
        draw_mark(view, region, scale, thick)
    return view


# Mark colours (RGB) by what the region holds; anything else is drawn in the default.
MARK_COLOURS = {"glare": (255, 200, 0), "shadow": (150, 60, 220), "remnant": (255, 0, 200)}
DEFAULT_MARK = (230, 30, 30)


def draw_mark(view: np.ndarray, region: Region, scale: float, thick: int) -> None:
    """A box around the region, a little larger than it, with its kind written above."""
    x0, y0, x1, y1 = (round(v * scale) for v in region.box)
    pad = 2 * thick
    colour = MARK_COLOURS.get(region.kind, DEFAULT_MARK)
    cv2.rectangle(view, (x0 - pad, y0 - pad), (x1 + pad, y1 + pad), colour, thick)
    size = max(0.35, view.shape[1] / 1500)
    cv2.putText(
        view, region.kind, (x0 - pad, max(10, y0 - pad - 3)), cv2.FONT_HERSHEY_SIMPLEX,
        size, colour, max(1, thick // 2), cv2.LINE_AA,
    )  # fmt: skip


def kept_to_view(
    view_scale: float, view_origin: tuple[float, float], kept_scale: float
) -> np.ndarray:
    """Affine from kept-decode pixels to view pixels (both are scaled copies of the photo)."""
    ratio = view_scale / kept_scale
    ox, oy = view_origin
    return np.array([[ratio, 0.0, -ox * view_scale], [0.0, ratio, -oy * view_scale]])


def chain(*affines: np.ndarray) -> np.ndarray:
    """Compose affines applied left to right."""
    result = affines[0]
    for affine in affines[1:]:
        result = compose_affine(affine, result)
    return result
