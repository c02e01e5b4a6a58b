"""Stricter rules for the remnant measure than the matte step removes by.

The matte step (`appliance.imaging.body`) must not take a real shoulder, lock of hair or
collar off, so it removes only what its shape rules are sure of. The measure must not pass
a photo that still shows part of a flag, so it looks further, with rules of its own (a
failed check that says where the remnant is, is acceptable; a false pass is not):

- `continued`: a kept part near the outline that continues the old background beyond it
  without a seam (a stripe that runs on past the person's outline into the replaced area),
  where that background is a thing of its own (its colours are found nowhere in the old
  background further away: a flag, a pole, a chair back) and not the backdrop (a white
  collar on a white wall has no seam either, but the wall's colour is everywhere);
- `off_the_side`: what shows outside the body and runs out of the frame at a side in
  another colour than the body beside it, its soft matte included (the matte step judges
  only the solid part of such a piece);
- `at_side`: what shows outside the body beside the head (above the eyes) and runs out of
  the frame at a side (the document keeps a margin beside the head).

All work on the measure's working copy (about 24 px per eye distance).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from appliance.imaging.body import NEXT_TO, other_colour

# The old background is what the matte left at most CLEAR_ALPHA of.
CLEAR_ALPHA = 0.05
# A kept pixel within BAND eye distances of the old background continues it "without a
# seam" when no channel of its CIELAB colour (8-bit) differs from the nearest old
# background pixel's by more than SEAM_LEVELS; that background is "a thing of its own" when
# at least LOCAL_SHARE of those nearest pixels have colours found nowhere in the old
# background further than LOCAL eye distances from the piece (LAB_LEVELS per axis, a
# neighbouring bin counting as the same colour).
BAND = 0.35
SEAM_LEVELS = 12
LOCAL = 1.0
LOCAL_SHARE = 0.5
LAB_LEVELS = 32
# Pieces of fewer working pixels than this are left to noise (a hair tip's resampling).
MIN_PIECE = 6
# Off the side of the frame, pieces under (SIDE_PIECE eye distances) squared are left too
# (a wedge of hair or clothing the frame's corner cuts off).
SIDE_PIECE = 0.15


def continued(old: np.ndarray, alpha: np.ndarray, shown: np.ndarray, u: float) -> np.ndarray:
    """The pixels of `shown` (bool) that continue a thing of the old background across the
    outline, by the rule above. `old` is the photo before the replacement (uint8 RGB),
    `alpha` the matte the replacement used, `u` the eye distance (all working copy)."""
    clear = (alpha <= CLEAR_ALPHA).view(np.uint8)
    none = np.zeros(alpha.shape, dtype=bool)
    if not clear.any() or clear.all():
        return none
    distance, nearest = cv2.distanceTransformWithLabels(
        np.uint8(1) - clear, cv2.DIST_L2, 3, labelType=cv2.DIST_LABEL_PIXEL
    )
    near = shown & (distance <= BAND * u)
    if not near.any():
        return none
    width = alpha.shape[1]
    lab = cv2.cvtColor(old, cv2.COLOR_RGB2LAB)
    flat_lab = lab.reshape(-1, 3)
    where_clear = np.flatnonzero(clear.reshape(-1))
    # Each pixel's nearest old background pixel: the labels number the clear pixels.
    lookup = np.zeros(int(nearest.max()) + 1, dtype=np.intp)
    lookup[nearest.reshape(-1)[where_clear]] = where_clear
    ys, xs = np.nonzero(near)
    beyond = lookup[nearest[ys, xs]]
    step = np.abs(flat_lab[ys * width + xs].astype(np.int16) - flat_lab[beyond]).max(axis=1)
    same = step <= SEAM_LEVELS
    if np.count_nonzero(same) < MIN_PIECE:
        return none
    index = colour_index(lab)
    beyond_bin = np.full(alpha.shape, -1, dtype=np.intp)
    beyond_bin[ys[same], xs[same]] = index.reshape(-1)[beyond[same]]
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        (beyond_bin >= 0).view(np.uint8), connectivity=8
    )
    everywhere = np.bincount(index.reshape(-1)[where_clear], minlength=LAB_LEVELS**3)
    ring = max(1, round(LOCAL * u))
    found = np.zeros(count, dtype=bool)
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < MIN_PIECE:
            continue
        x0, y0, x1, y1 = max(0, x - ring), max(0, y - ring), x + w + ring, y + h + ring
        local = clear[y0:y1, x0:x1] > 0
        far = colour_set(
            everywhere - np.bincount(index[y0:y1, x0:x1][local], minlength=LAB_LEVELS**3)
        )
        bins = beyond_bin[y : y + h, x : x + w][pieces[y : y + h, x : x + w] == label]
        found[label] = np.count_nonzero(~far[bins]) >= LOCAL_SHARE * bins.size
    return np.asarray(found[pieces])


def off_the_side(
    outside: np.ndarray, distance: np.ndarray, colours: Callable[[], np.ndarray], u: float
) -> np.ndarray:
    """The pieces of `outside` (what shows beyond the body: `distance` from it > 1) that run
    out of the frame at a side in another colour than the body beside them. `colours()`
    gives the subject's colour per pixel (uint8 RGB, asked for only when needed)."""
    found = np.zeros(outside.shape, dtype=bool)
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        outside.view(np.uint8), connectivity=8
    )
    if count <= 1:
        return found
    touching = np.zeros(count, dtype=bool)
    touching[pieces[:, 0]] = True
    touching[pieces[:, -1]] = True
    touching[0] = False
    touching &= stats[:, cv2.CC_STAT_AREA] >= (SIDE_PIECE * u) ** 2
    if not touching.any():
        return found
    lab = cv2.cvtColor(colours(), cv2.COLOR_RGB2LAB).astype(np.float32)
    core = (distance <= 0.0).view(np.uint8)
    margin = round(NEXT_TO * u) + 2
    for label in np.flatnonzero(touching):
        x, y, w, h, _ = (int(v) for v in stats[label])
        x0, y0 = max(0, x - margin), max(0, y - margin)
        x1, y1 = x + w + margin, y + h + margin
        piece = pieces[y0:y1, x0:x1] == label
        if other_colour(piece, core[y0:y1, x0:x1], lab[y0:y1, x0:x1], NEXT_TO * u):
            found[y0:y1, x0:x1] |= piece
    return found


def at_side(outside: np.ndarray, row: int) -> np.ndarray:
    """The pieces of `outside` above `row` (the eyes) that run out of the frame at a side."""
    upper = np.ascontiguousarray(outside[: max(0, row)]).view(np.uint8)
    found = np.zeros(outside.shape, dtype=bool)
    if not upper.any():
        return found
    count, pieces = cv2.connectedComponents(upper, connectivity=8)
    touching = np.zeros(count, dtype=bool)
    touching[pieces[:, 0]] = True
    touching[pieces[:, -1]] = True
    touching[0] = False
    found[: upper.shape[0]] = touching[pieces]
    return found


def colour_index(lab: np.ndarray) -> np.ndarray:
    """Each 8-bit CIELAB pixel's colour bin (LAB_LEVELS levels per axis)."""
    bins = (lab // (256 // LAB_LEVELS)).astype(np.intp)
    return (bins[..., 0] * LAB_LEVELS + bins[..., 1]) * LAB_LEVELS + bins[..., 2]


def colour_set(counts: np.ndarray) -> np.ndarray:
    """The colour bins `counts` (per bin) has seen twice or more, with their neighbours on
    every axis (rows L, columns a * n + b: dilations along L, along b, and along a, which
    is n columns apart)."""
    n = LAB_LEVELS
    seen = (counts >= 2).astype(np.uint8).reshape(n, n * n)
    along_a = np.zeros((1, 2 * n + 1), np.uint8)
    along_a[0, [0, n, 2 * n]] = 1
    for kernel in (np.ones((3, 1), np.uint8), np.ones((1, 3), np.uint8), along_a):
        seen = np.asarray(cv2.dilate(seen, kernel), dtype=np.uint8)
    return seen.reshape(-1) > 0
