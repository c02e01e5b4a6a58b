"""What is left of the old background in a finished photo, and where.

Measured on the output's own pixels: every pixel whose colour is not the new background's is
either the person or a remnant. The person's body is the solid matte opened so thin parts
fall away, the piece on the face only (`appliance.imaging.body`). A remnant is a
pixel of another colour that belongs to a part the body does not explain: a thin part running
out of the frame at the top, or at a side in another colour than the body beside it (a flag's
fringe beside the shoulder, a pole), a thin part reaching further than hanging hair does, or
a blob of its own beyond the reach of hair (a patch of the old wall the matte let through).
These are the rules the matte step removes such parts by, applied to the output; and since
a rule the removal missed would then pass the photo, the measure adds stricter ones of its own
(`appliance.imaging.seams`): what shows outside the body at the frame's sides, and what
continues a thing of the old background (a flag's stripe) across the person's outline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.imaging.body import foreign_parts, shrink, work_scale
from appliance.imaging.matte import solid
from appliance.imaging.seams import at_side, continued, off_the_side

# A pixel is "not the new background" beyond this many levels (of 255) in any channel; the
# replacement writes the colour exactly where the matte is clear, so this is well above noise.
COLOUR_LEVELS = 16
# Remnants smaller than this share of an eye distance squared are ignored (a few pixels of
# a hair tip's tint).
MIN_AREA_EYE2 = 0.004
# What shows, for the stricter rules: from this much matte (a stripe's soft edge shows too).
SHOWN_ALPHA = 0.25


@dataclass(frozen=True)
class Remnant:
    """One connected remnant: its box (x0, y0, x1, y1, output px, x1/y1 exclusive), its area
    in output pixels, and its largest colour distance from the new background."""

    box: tuple[int, int, int, int]
    area_px: int
    distance: int


def find_remnants(
    pixels: np.ndarray,
    alpha: np.ndarray,
    colour: tuple[int, int, int],
    seed: tuple[float, float],
    eye_px: float,
    chin_y: float,
    old: np.ndarray | None = None,
) -> list[Remnant]:
    """The remnants of the old background in `pixels` (H x W x 3 uint8) after it was replaced
    by `colour`, largest first. `alpha` is the matte the replacement used (it fills the
    person's parts that happen to have the new colour, a white collar on white); `seed` is a
    point on the face (the eye midpoint), `eye_px` the eye distance and `chin_y` the chin's
    row, all in output pixels. `old` is the same raster before the replacement (the photo's
    own pixels there): with it the measure also sees what a kept part continues beyond the
    outline."""
    height, width = alpha.shape
    # On the working copy (about 24 px per eye distance; see appliance/imaging/body.py): the
    # pyramid's averaging also takes single off-colour pixels (a hair tip's resampling) out.
    scale = work_scale(eye_px)
    small_pixels = shrink(pixels, scale)
    small_alpha = shrink(np.ascontiguousarray(alpha, dtype=np.float32), scale)
    difference = cv2.absdiff(
        small_pixels, solid(small_alpha.shape[0], small_alpha.shape[1], colour)
    )
    off = np.maximum(np.maximum(difference[..., 0], difference[..., 1]), difference[..., 2])
    differs = off > COLOUR_LEVELS
    if not differs.any():
        return []
    unmixed: list[np.ndarray] = []

    def colours() -> np.ndarray:
        if not unmixed:
            unmixed.append(_unmixed(small_pixels, small_alpha, colour))
        return unmixed[0]

    verdict = foreign_parts(small_alpha, scale, colours, seed, eye_px, chin_y, differs)
    left = verdict.foreign & differs
    # What the matte step's rules let through is measured by stricter ones (see
    # appliance/imaging/seams.py): what shows outside the body at the frame's sides, and,
    # with the photo before the replacement, what continues a thing of the old background
    # across the outline.
    u = eye_px * scale
    shown = differs & (small_alpha >= SHOWN_ALPHA)
    outside = shown & (verdict.distance > 1.0)
    left |= at_side(outside, round(seed[1] * scale))
    left |= off_the_side(outside, verdict.distance, colours, u)
    if old is not None:
        left |= continued(shrink(old, scale), small_alpha, shown, u)
    if not left.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(left.view(np.uint8), connectivity=8)
    minimum = max(4.0, MIN_AREA_EYE2 * eye_px * eye_px)
    found: list[Remnant] = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        full_area = round(area / (scale * scale))
        if full_area < minimum:
            continue
        strongest = int(off[y : y + h, x : x + w][labels[y : y + h, x : x + w] == label].max())
        box = (
            int(x / scale),
            int(y / scale),
            min(width, int(np.ceil((x + w) / scale))),
            min(height, int(np.ceil((y + h) / scale))),
        )
        found.append(Remnant(box, full_area, strongest))
    return sorted(found, key=lambda r: -r.area_px)


def _unmixed(pixels: np.ndarray, alpha: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """The subject's own colour where the matte is partial: the output there is
    alpha * subject + (1 - alpha) * colour, so take the new colour's share back out."""
    height, width = alpha.shape
    a = cv2.merge([np.maximum(alpha, np.float32(0.3))] * 3)
    new = solid(height, width, colour).astype(np.float32)
    subject = cv2.divide(pixels.astype(np.float32) - new, a) + new
    return np.clip(subject, 0, 255).astype(np.uint8)


def where(remnant: Remnant, face_centre_x: float, chin_y: float, crown_y: float) -> str:
    """Where a remnant is, relative to the person: "left", "right" (of the photo as seen) or
    "above" the head; and beside the "head" or the "shoulder"."""
    x0, y0, x1, y1 = remnant.box
    centre_x, centre_y = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    if y1 <= crown_y:
        return "above"
    side = "left" if centre_x < face_centre_x else "right"
    return f"{side} {'shoulder' if centre_y > chin_y else 'head'}"
