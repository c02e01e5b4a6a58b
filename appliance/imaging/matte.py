"""Background replacement with a soft matte, without the old background's halo.

Where the matte is partly transparent (hair, shoulder edges) the photo's pixel mixes the subject
with the *old* background. Blending that pixel over a new colour keeps a fringe of the old one
(the halo most ID-photo tools show). Here the old background is estimated around each edge pixel
(a normalised blur of the pixels the matte calls background), its share is taken out of the
pixel, and only then is the subject blended over the new background.
"""

from __future__ import annotations

import cv2
import numpy as np


def parse_hex_colour(value: str) -> tuple[int, int, int]:
    """'#RRGGBB' (or 'RRGGBB', or '#RGB') to an RGB tuple; ValueError names the bad value."""
    text = value.strip().lstrip("#")
    if len(text) == 3:
        text = "".join(ch * 2 for ch in text)
    if len(text) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in text):
        raise ValueError(f"{value!r} is not a colour: use #RRGGBB, for example #FFFFFF")
    return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))


def tighten(alpha: np.ndarray, low: float = 0.08, high: float = 0.92) -> np.ndarray:
    """Stretch the matte so near-certain pixels become certain (no see-through clothing)."""
    return np.clip((alpha - np.float32(low)) / np.float32(high - low), 0.0, 1.0)


def solid(height: int, width: int, colour: tuple[int, int, int]) -> np.ndarray:
    """An H x W x 3 uint8 image of one colour (numpy broadcasting over a last axis of 3 is
    many times slower than tiling a row)."""
    row = np.tile(np.asarray(colour, dtype=np.uint8), width)
    return np.tile(row, (height, 1)).reshape(height, width, 3)


def _times(pixels: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Each channel of `pixels` times an H x W float32 `weight`, as float32."""
    return np.asarray(cv2.multiply(pixels.astype(np.float32), cv2.merge([weight] * 3)))


def _old_background(
    pixels: np.ndarray, alpha: np.ndarray, radius: int, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The old background's colour around each listed (flat index) pixel, and how much pure
    background that estimate rests on: a blur weighted by (1 - alpha) ** 8, so only pixels the
    matte calls background count (a lower power lets the soft edge's own mixed pixels, the
    subject's colour in them, into the estimate). The blur spans dozens of pixels, so it is
    computed at half resolution (each half-res pixel the mean of a 2 x 2 block) and read back
    at the nearest half-res pixel."""
    height, width = alpha.shape
    half = (max(1, width // 2), max(1, height // 2))
    small = cv2.resize(pixels[: 2 * half[1], : 2 * half[0]], half, interpolation=cv2.INTER_AREA)
    weight = np.float32(1.0) - cv2.resize(
        alpha[: 2 * half[1], : 2 * half[0]], half, interpolation=cv2.INTER_AREA
    )
    for _ in range(3):
        weight = np.asarray(cv2.multiply(weight, weight), dtype=np.float32)
    size = (2 * max(1, radius // 2) + 1,) * 2
    support = cv2.boxFilter(weight, -1, size)
    estimate = cv2.divide(
        cv2.boxFilter(_times(small, weight), -1, size),
        cv2.merge([np.maximum(support, np.float32(1e-4))] * 3),
    )
    at = np.minimum(index // width // 2, half[1] - 1) * half[0] + np.minimum(
        index % width // 2, half[0] - 1
    )
    return np.asarray(estimate.reshape(-1, 3)[at], dtype=np.float32), support.reshape(-1)[at]


def replace_background(
    pixels: np.ndarray, alpha: np.ndarray, background: np.ndarray | tuple[int, int, int]
) -> np.ndarray:
    """Composite the subject over `background` (an RGB colour or an image of the same size).

    `pixels` H x W x 3 uint8 and `alpha` H x W float32 in [0, 1] (1 = subject).
    """
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    height, width = alpha.shape
    if isinstance(background, np.ndarray):
        new = np.ascontiguousarray(background, dtype=np.uint8)
    else:
        new = solid(height, width, background)
    # Subject where the matte is (almost) certain, the new background elsewhere; the soft
    # edge in between is un-mixed below.
    out = new.copy()
    cv2.copyTo(pixels, (alpha >= 0.98).view(np.uint8), out)
    flat_alpha = alpha.reshape(-1)
    index = np.flatnonzero((flat_alpha > 0.02) & (flat_alpha < 0.98))
    if index.size == 0:
        return np.asarray(out)
    # Un-mix the edge pixels: observed = a * subject + (1 - a) * old, so the subject over the
    # new background is observed + (1 - a) * (new - old), with the subject kept in range.
    radius = max(3, round(max(height, width) / 30))
    old, support = _old_background(pixels, alpha, radius, index)
    # (N x 3 arrays of one shape throughout: numpy broadcasts over a last axis of 3 slowly.)
    a = np.repeat(flat_alpha[index][:, None], 3, axis=1)
    rest = np.float32(1.0) - a
    observed = pixels.reshape(-1, 3)[index].astype(np.float32)
    # Where no pure background lies within reach (deep in a mass of hair) there is nothing
    # to un-mix: taking the pixel itself as the old colour makes this a plain blend there.
    thin = support < 1e-3
    old[thin] = observed[thin]
    subject = np.clip((observed - rest * old) / np.maximum(a, np.float32(0.02)), 0, 255)
    mixed = a * subject + rest * new.reshape(-1, 3)[index].astype(np.float32)
    out.reshape(-1, 3)[index] = np.clip(mixed + np.float32(0.5), 0, 255).astype(np.uint8)
    return np.asarray(out)


def blurred_background(pixels: np.ndarray, alpha: np.ndarray, strength: float = 0.03) -> np.ndarray:
    """The photo's own background, blurred, with the subject's colours kept out of the blur."""
    height, width = alpha.shape
    sigma = max(2.0, strength * max(height, width))
    weight = np.float32(1.0) - alpha.astype(np.float32)
    for _ in range(3):  # (1 - alpha) ** 8: only background pixels feed the blur
        weight = np.asarray(cv2.multiply(weight, weight), dtype=np.float32)
    blurred = cv2.GaussianBlur(_times(pixels, weight), (0, 0), sigma)
    norm = cv2.merge([np.maximum(cv2.GaussianBlur(weight, (0, 0), sigma), np.float32(1e-3))] * 3)
    return np.clip(cv2.divide(blurred, norm), 0, 255).astype(np.uint8)


# Thin structures (poles, flag fringes, chair backs) that the segmenter joins to the person.
# The person's body is what remains of the solid matte after an opening this wide (in eye
# distances); what the opening took away is edge detail (hair strands, fabric) unless it
# runs out of the frame at the top (a pole: hair ends inside the frame there), or at a side
# in another colour than the body it touches (long hair and clothing leave the frame at the
# sides too, in their own colour; a flag's fringe beside the shoulder does not share it), or
# reaches further from the body than hanging hair does, or is not joined to the body and
# lies beyond the reach of hair.
OPEN_RADIUS = 0.25
HAIR_REACH = 0.6
LONG_REACH = 1.2
EDGE_FADE = 0.15
# "Another colour": CIELAB distance between a part and the body next to it (a third of
# NEXT_TO to NEXT_TO eye distances away); hair against hair or fabric against fabric stays
# well below it.
OTHER_COLOUR = 30.0
NEXT_TO = 0.9


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Per pixel, the distance (px) to the nearest nonzero pixel of a uint8 `mask`."""
    return np.asarray(cv2.distanceTransform(np.uint8(1) - mask, cv2.DIST_L2, 5))


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


def foreign_structures(
    solid: np.ndarray,
    seed: tuple[float, float],
    eye_px: float,
    colours: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """What in a uint8 0/1 `solid` mask is not the person (by the rules above), and every
    pixel's distance from the person's body. `colours` is the subject's colour per pixel
    (H x W x 3 uint8 RGB). Each such part goes as a whole, so no stub of it is left at the
    outline."""
    core = person_core(solid, seed, OPEN_RADIUS * eye_px)
    distance = _distance_to(core)
    rest = ((solid > 0) & (core == 0) & (distance > 1.5)).view(np.uint8)
    count, parts = cv2.connectedComponents(rest, connectivity=8)
    if count <= 1:
        return np.zeros(solid.shape, dtype=bool), distance
    # Per part: does it leave the frame at the top or a side, how far does it reach, how
    # near does it come, and is it joined to the body at all.
    edge = np.zeros(count, dtype=bool)
    edge[np.unique(parts[0])] = True
    side = np.zeros(count, dtype=bool)
    side[np.unique(np.concatenate([parts[:, 0], parts[:, -1]]))] = True
    side[0] = False
    for label in np.flatnonzero(side & ~edge):
        edge[label] = _other_colour(parts == label, core, colours, NEXT_TO * eye_px)
    where = rest.view(bool)
    labels, far = parts[where], distance[where]
    reach = np.zeros(count, dtype=np.float32)
    np.maximum.at(reach, labels, far)
    near = np.full(count, np.inf, dtype=np.float32)
    np.minimum.at(near, labels, far)
    _, pieces = cv2.connectedComponents(solid, connectivity=8)
    joined = np.zeros(count, dtype=bool)
    body = np.unique(pieces[core > 0])
    joined[np.unique(parts[np.isin(pieces, body[body > 0]) & where])] = True
    foreign = edge | (reach > LONG_REACH * eye_px) | (~joined & (near > HAIR_REACH * eye_px))
    foreign[0] = False
    return foreign[parts], distance


def loose_pieces(mask: np.ndarray, distance: np.ndarray, reach: float) -> np.ndarray:
    """The pieces of a uint8 `mask` that do not touch the person's body (where `distance`,
    from `foreign_structures`, is 0) and come no nearer to it than `reach` px."""
    count, pieces = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    near = np.full(count, np.inf, dtype=np.float32)
    np.minimum.at(near, np.asarray(pieces, dtype=np.intp).ravel(), distance.ravel())
    loose = near > reach
    loose[0] = False
    return np.asarray(loose[pieces])


def _other_colour(part: np.ndarray, core: np.ndarray, colours: np.ndarray, near: float) -> bool:
    """Whether a part's median colour is far (CIELAB) from that of the body next to it."""
    # Not the body right at the part: where a flag's stripe meets the shoulder, the matte
    # has taken a little of the stripe into the body too.
    apart = _distance_to(part.view(np.uint8))
    body = (core > 0) & (apart > near / 3.0) & (apart <= near)
    if not body.any():
        return True
    lab = cv2.cvtColor(colours, cv2.COLOR_RGB2LAB).astype(np.float32)
    here = np.median(lab[part], axis=0)
    there = np.median(lab[body], axis=0)
    return bool(np.linalg.norm(here - there) > OTHER_COLOUR)


def drop_foreign_structures(
    alpha: np.ndarray,
    pixels: np.ndarray,
    seed: tuple[float, float],
    eye_px: float,
) -> tuple[np.ndarray, int]:
    """The matte of `pixels` without what is not the person (see `foreign_structures`), and
    how many pixels of solid matte that took away. The soft edge around a removed part goes with it,
    and soft matte far from the body fades out, so neither leaves a tinted shadow."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    solid = (alpha >= 0.5).view(np.uint8)
    if not solid.any():
        return alpha, 0
    foreign, distance = foreign_structures(solid, seed, eye_px, pixels)
    # Soft matte in pieces of its own beyond the reach of hair (a faint strip of the old
    # background the segmenter half believed) goes as well.
    foreign |= loose_pieces((alpha > 0.02).view(np.uint8), distance, HAIR_REACH * eye_px)
    removed = int(np.count_nonzero(foreign & (solid > 0)))
    reach, fade = LONG_REACH * eye_px, max(1.0, EDGE_FADE * eye_px)
    keep = np.clip((reach + fade - distance) / np.float32(fade), 0.0, 1.0).astype(np.float32)
    if removed:
        # The removed parts' own soft edge (a few pixels round them) goes too, except where
        # it is the person's edge as well.
        grown = _distance_to(foreign.view(np.uint8)) <= max(2.0, 0.08 * eye_px)
        keep[grown & (distance > 2.0)] = 0.0
        keep[foreign] = 0.0
    return np.asarray(cv2.multiply(alpha, keep)), removed
