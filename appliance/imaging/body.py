"""The person's body in a matte, and the parts of the matte that are not the person.

The segmenter joins to the person whatever thin thing touches their outline: a pole, a flag's
fringe beside the shoulder, a chair back; and now and then it half believes a patch of the
old background on its own. Here the body is the solid matte opened so parts narrower than
half an eye distance fall away (beside the neck below the chin, where the body is the
shoulders, parts narrower than 1.2 eye distances), the piece on the face only. What the
opening took away is edge detail (hair strands, fabric) unless it

- runs out of the frame at the top (a pole; hair ends inside the frame there: the document
  keeps a margin above the crown),
- runs out at a side, or stands on the shoulders, in another colour than the body beside it
  (long hair and clothing leave the frame at the sides and lie on the shoulders too, in
  their own colour; a flag's stripe does not share it),
- reaches further from the body than hanging hair does, or
- is not joined to the body and lies beyond the reach of hair.

And on the shoulders, solid matte near the outline that survives the opening but has
colours found nowhere inside the body (the foot of a flag beside the shoulder) is not the
person either.

The decisions are about shapes a few eye distances across, so they are made on a copy of
the matte at about 24 px per eye distance (some ten thousand pixels: a millisecond or two),
and only their result is brought back to the full-resolution matte.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

# In eye distances: the opening's radius, the reach of hair beyond the body (a loose piece
# nearer than this is hair), the reach of a long thin part that is no hair any more, and
# over how far soft matte beyond that fades out.
OPEN_RADIUS = 0.25
HAIR_REACH = 0.6
LONG_REACH = 1.2
EDGE_FADE = 0.15
# The shoulders: below the chin by this much, outside the neck's column (half-width), where
# the body is opened with the wider radius.
SHOULDER_BELOW = 0.2
NECK_HALF = 0.9
SHOULDER_RADIUS = 0.6
# The shoulders' outer band (eye distances) whose colours are checked against the body's
# inside, and the side of the smallest square a piece of other colours there must cover.
SHOULDER_BAND = 0.6
ODD_SIDE = 0.2
ODD_ALPHA = 0.6  # (the colour of softer matte, un-mixed from the new background, is noise)
# "Another colour": CIELAB distance between a part and the body beside it (a third of
# NEXT_TO to NEXT_TO eye distances away: where a stripe meets the shoulder, the matte has
# taken a little of the stripe into the body too); hair against hair and fabric against
# fabric stay well below it.
OTHER_COLOUR = 30.0
NEXT_TO = 0.9
# The working copy's scale: eye distance in its pixels.
WORK_EYE_PX = 24.0


@dataclass(frozen=True)
class Parts:
    """The verdict on a matte, on its working copy: `scale` (working px per full px), what
    is not the person (bool), every working pixel's distance from the body (px), and where
    there is any matte (or other colour) at all."""

    scale: float
    foreign: np.ndarray
    distance: np.ndarray
    soft: np.ndarray  # where the working copy has any matte at all

    def to_full(self, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """A working-copy mask at the full (width, height), nearest neighbour."""
        if self.scale >= 1.0:
            return mask
        return np.asarray(
            cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST), dtype=bool
        )


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Per pixel, the distance (px) to the nearest nonzero pixel of a uint8 `mask`."""
    return np.asarray(cv2.distanceTransform(np.uint8(1) - mask, cv2.DIST_L2, 5))


def work_scale(eye_px: float) -> float:
    """The working copy's scale: halvings (each a fast Gaussian pyramid step) until the eye
    distance is nearest WORK_EYE_PX, never enlarged."""
    halvings = max(0, round(np.log2(max(eye_px, 1.0) / WORK_EYE_PX)))
    return float(0.5**halvings)


def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """`image` at `scale` (one of work_scale's): a Gaussian pyramid step per halving (area
    resampling at an odd ratio costs ten times as much)."""
    small = np.ascontiguousarray(image)
    while scale < 0.99:
        small = np.asarray(cv2.pyrDown(small))
        scale *= 2.0
    return small


def person_core(solid: np.ndarray, seed: tuple[float, float], radius: float) -> np.ndarray:
    """The person's body in a uint8 0/1 `solid` mask: its opening by a disc of `radius` px
    (parts narrower than twice that removed), the piece holding `seed` (a point on the face)
    only. Distance transforms instead of a structuring element: the cost does not grow with
    the radius."""
    inside = cv2.distanceTransform(solid, cv2.DIST_L2, 5)
    eroded = (inside > radius).view(np.uint8)
    opened = ((_distance_to(eroded) <= radius) & (solid > 0)).view(np.uint8)
    count, labels = cv2.connectedComponents(opened, connectivity=8)
    if count <= 1:
        return opened
    height, width = solid.shape
    x = min(max(round(seed[0]), 0), width - 1)
    y = min(max(round(seed[1]), 0), height - 1)
    label = int(labels[y, x])
    if label == 0:  # the seed fell in a gap: take the piece nearest to it
        ys, xs = np.nonzero(labels)
        nearest = int(np.argmin((xs - x) ** 2 + (ys - y) ** 2))
        label = int(labels[ys[nearest], xs[nearest]])
    return (labels == label).view(np.uint8)


def other_colour(part: np.ndarray, core: np.ndarray, lab: np.ndarray, near: float) -> bool:
    """Whether a part's median colour is far (CIELAB) from that of the body beside it."""
    apart = _distance_to(part.view(np.uint8))
    body = (core > 0) & (apart > near / 3.0) & (apart <= near)
    if not body.any():
        return True
    here, there = np.median(lab[part], axis=0), np.median(lab[body], axis=0)
    return bool(np.linalg.norm(here - there) > OTHER_COLOUR)


def _odd_colours(core: np.ndarray, zone: np.ndarray, lab: np.ndarray, u: float) -> np.ndarray:
    """Body pixels near the outline in `zone` whose colour (8-bit CIELAB) appears nowhere in
    the body's inside, in pieces of some size. What stands on the shoulders wide enough to
    survive the opening (the foot of a flag beside the shoulder) has its own colours; hair
    and clothing at the outline have the colours of the hair and clothing within."""
    inner = cv2.distanceTransform(core, cv2.DIST_L2, 5)
    band = zone & (core > 0) & (inner <= SHOULDER_BAND * u)
    deep = (core > 0) & (inner > SHOULDER_BAND * u)
    none = np.zeros(core.shape, dtype=bool)
    if not band.any() or np.count_nonzero(deep) < 16:
        return none
    bins = (lab >> 3).astype(np.intp)  # 32 levels per axis
    index = (bins[..., 0] * 32 + bins[..., 1]) * 32 + bins[..., 2]
    # Rows L, columns a * 32 + b; a neighbouring bin on any axis counts as the same colour
    # (three dilations: along L, along b, and along a, which is 32 columns apart).
    seen = (np.bincount(index[deep], minlength=32**3) >= 2).astype(np.uint8).reshape(32, 1024)
    along_a = np.zeros((1, 65), np.uint8)
    along_a[0, [0, 32, 64]] = 1
    for kernel in (np.ones((3, 1), np.uint8), np.ones((1, 3), np.uint8), along_a):
        seen = np.asarray(cv2.dilate(seen, kernel), dtype=np.uint8)
    odd = (band & (seen.reshape(-1)[index] == 0)).view(np.uint8)
    count, pieces = cv2.connectedComponents(odd, connectivity=8)
    if count <= 1:
        return none
    big = np.bincount(pieces.ravel(), minlength=count) >= (ODD_SIDE * u) ** 2
    big[0] = False
    return np.asarray(big[pieces])


def _loose(mask: np.ndarray, distance: np.ndarray, reach: float) -> np.ndarray:
    """The pieces of a uint8 `mask` that do not touch the body (`distance` 0 there) and come
    no nearer to it than `reach` px."""
    count, pieces = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    loose = np.ones(count, dtype=bool)
    loose[pieces[distance <= reach]] = False
    loose[0] = False
    return np.asarray(loose[pieces])


def foreign_parts(
    small: np.ndarray,
    scale: float,
    colours: Callable[[], np.ndarray],
    seed: tuple[float, float],
    eye_px: float,
    chin_y: float,
    extra: np.ndarray | None = None,
) -> Parts:
    """What in a matte is not the person, by the rules above, on its working copy `small`
    (float32, at `scale` = work_scale(eye_px) of the full matte: see `shrink`).

    `colours()` gives the subject's colour per working pixel (uint8 RGB; asked for only when
    colour decides), `seed` is a point on the face (the eye midpoint), `eye_px` the eye
    distance and `chin_y` the chin's row, in full-resolution px. `extra` (working-copy bool)
    adds pixels that are not the new background without being solid matte: their loose
    pieces count too."""
    solid = (small >= 0.5).view(np.uint8)
    u = eye_px * scale
    empty = np.zeros(small.shape, dtype=bool)
    if not solid.any():
        return Parts(scale, empty, np.full(small.shape, np.inf, dtype=np.float32), empty)
    centre_x = seed[0] * scale
    core = person_core(solid, (centre_x, seed[1] * scale), OPEN_RADIUS * u)
    # Beside the neck, below the chin, the body is the shoulders: far wider than anything
    # that stands on them (a flag, a chair back), so it is opened wider there.
    shoulders = np.zeros(small.shape, dtype=bool)
    chin = max(0, round((chin_y + SHOULDER_BELOW * eye_px) * scale))
    shoulders[chin:] = True
    neck = slice(max(0, round(centre_x - NECK_HALF * u)), max(0, round(centre_x + NECK_HALF * u)))
    shoulders[:, neck] = False
    # The wider opening not along the bottom edge: the frame cuts the shoulders into thin
    # wedges there (their colours are checked all the same).
    upper = shoulders.copy()
    upper[max(chin, solid.shape[0] - round(SHOULDER_RADIUS * u)) :] = False
    wide = person_core(solid, (centre_x, seed[1] * scale), SHOULDER_RADIUS * u)
    core = (core.view(bool) & (~upper | wide.view(bool))).view(np.uint8)
    lab: np.ndarray | None = None
    if (shoulders & (core > 0)).any():
        lab = cv2.cvtColor(colours(), cv2.COLOR_RGB2LAB)
        odd = _odd_colours(core, shoulders & (small >= ODD_ALPHA), lab, u)
        if odd.any():
            core = (core.view(bool) & ~odd).view(np.uint8)
    distance = _distance_to(core)
    rest = ((solid > 0) & (core == 0) & (distance > 1.0)).view(np.uint8)
    soft = small > 0.02
    if extra is not None:
        soft |= extra
    foreign = _loose(soft.view(np.uint8), distance, HAIR_REACH * u)
    count, parts = cv2.connectedComponents(rest, connectivity=8)
    if count <= 1:
        return Parts(scale, foreign, distance, soft)
    edge = np.zeros(count, dtype=bool)
    edge[parts[0]] = True
    # Judged by their colour: parts leaving the frame at a side, and parts standing on the
    # shoulders.
    judged = np.zeros(count, dtype=bool)
    judged[parts[:, 0]] = True
    judged[parts[:, -1]] = True
    judged[parts[upper]] = True
    # A wedge of clothing the frame's bottom corner cuts off is not judged; a strip that
    # runs down into the corner from above the shoulders is.
    band = max(0, solid.shape[0] - round(SHOULDER_RADIUS * u)) - 1
    above = np.bincount(parts[:band].ravel(), minlength=count) > 0
    bottom = np.bincount(parts[-1], minlength=count) > 0
    judged[bottom & ~above] = False
    judged[0] = False
    if (judged & ~edge).any():
        if lab is None:
            lab = cv2.cvtColor(colours(), cv2.COLOR_RGB2LAB)
        lab_f = lab.astype(np.float32)
        for label in np.flatnonzero(judged & ~edge):
            edge[label] = other_colour(parts == label, core, lab_f, NEXT_TO * u)
    verdict = edge
    verdict[parts[distance > LONG_REACH * u]] = True
    verdict[0] = False
    return Parts(scale, foreign | verdict[parts], distance, soft)


def drop_foreign(
    alpha: np.ndarray,
    pixels: np.ndarray,
    seed: tuple[float, float],
    eye_px: float,
    chin_y: float,
) -> tuple[np.ndarray, int]:
    """The matte of `pixels` without what is not the person, and how many pixels of solid
    matte that took away. The soft edge round a removed part goes with it, and soft matte
    far from the body fades out, so neither leaves a tinted shadow."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    scale = work_scale(eye_px)
    small = shrink(alpha, scale)
    verdict = foreign_parts(small, scale, lambda: shrink(pixels, scale), seed, eye_px, chin_y)
    u = eye_px * verdict.scale
    reach, fade = LONG_REACH * u, max(1.0, EDGE_FADE * u)
    if not verdict.foreign.any() and not (verdict.soft & (verdict.distance > reach)).any():
        return alpha, 0
    keep = np.clip((reach + fade - verdict.distance) / np.float32(fade), 0.0, 1.0)
    if verdict.foreign.any():
        # The removed parts' own soft rim (a working pixel round them) goes too, except
        # where it is the person's edge as well.
        rim = _distance_to(verdict.foreign.view(np.uint8)) <= 1.5
        keep[rim & (verdict.distance > 1.0)] = 0.0
        keep[verdict.foreign] = 0.0
    height, width = alpha.shape
    # Brought back bilinearly: the cut is a soft ramp of a working pixel, not a staircase.
    keep_full = np.asarray(
        cv2.resize(keep.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    )
    removed = int(np.count_nonzero((alpha >= 0.5) & (keep_full < 0.5)))
    return np.asarray(cv2.multiply(alpha, keep_full)), removed
