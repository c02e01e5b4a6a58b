"""Faithful variants of real portraits for the faults no public image shows: spectacles,
sunglasses, glare, a cap, a headscarf, a fringe over the eyes, a side shadow, red-eye, a
colour cast, bright and dim exposure. Each is painted onto the real face at the places the
face mesh finds on it (frames around the eyes, a cap above the forehead), so the face, the
skin, the hair and the background stay the photographer's.

Used by benchmarks/eval_checks.py and by tests/test_checks.py.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
RIGHT_EYE, LEFT_EYE = (33, 133), (263, 362)

Painter = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _eyes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    right = points[list(RIGHT_EYE)].mean(axis=0)
    left = points[list(LEFT_EYE)].mean(axis=0)
    return right, left, float(np.hypot(*(left - right)))


def _blend(image: np.ndarray, layer: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = weight[..., None].astype(np.float32)
    out = image.astype(np.float32) * (1 - w) + layer.astype(np.float32) * w
    return np.clip(out, 0, 255).astype(np.uint8)


def _lens_outlines(points: np.ndarray) -> list[np.ndarray]:
    right, left, d = _eyes(points)
    outlines = []
    for centre in (right, left):
        rect = ((float(centre[0]), float(centre[1] + 0.03 * d)), (0.82 * d, 0.56 * d), 0.0)
        outlines.append(cv2.boxPoints(rect))
    return outlines


def _frame_mask(image: np.ndarray, points: np.ndarray, thickness: float) -> np.ndarray:
    right, left, d = _eyes(points)
    mask = np.zeros(image.shape[:2], np.uint8)
    width = max(2, round(thickness * d))
    for centre in (right, left):
        axes = (round(0.41 * d), round(0.28 * d))
        cv2.ellipse(mask, (round(centre[0]), round(centre[1] + 0.03 * d)), axes, 0, 0, 360, 255,
                    width, cv2.LINE_AA)  # fmt: skip
    bridge_y = round((right[1] + left[1]) / 2 - 0.06 * d)
    cv2.line(mask, (round(right[0] + 0.41 * d), bridge_y), (round(left[0] - 0.41 * d), bridge_y),
             255, width, cv2.LINE_AA)  # fmt: skip
    for centre, edge, side in ((right, points[234], -1), (left, points[454], 1)):
        start = (round(centre[0] + side * 0.41 * d), round(centre[1]))
        cv2.line(mask, start, (round(edge[0]), round(centre[1] - 0.05 * d)), 255, width,
                 cv2.LINE_AA)  # fmt: skip
    return mask.astype(np.float32) / 255.0


def _lens_fill(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    right, left, d = _eyes(points)
    mask = np.zeros(image.shape[:2], np.uint8)
    for centre in (right, left):
        axes = (round(0.41 * d), round(0.28 * d))
        cv2.ellipse(mask, (round(centre[0]), round(centre[1] + 0.03 * d)), axes, 0, 0, 360, 255,
                    -1, cv2.LINE_AA)  # fmt: skip
    return mask.astype(np.float32) / 255.0


def spectacles(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Dark acetate frames, 5 % of the eye distance thick, with bridge and temple arms."""
    frame = _frame_mask(image, points, 0.05)
    return _blend(image, np.full_like(image, 28), frame)


def sunglasses(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    lenses = _lens_fill(image, points)
    out = _blend(image, np.full_like(image, 18), lenses * 0.88)
    return _blend(out, np.full_like(image, 10), _frame_mask(image, points, 0.05))


def glare(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Spectacles with a flash's reflection across one lens, over the eye."""
    out = spectacles(image, points)
    right, _left, d = _eyes(points)
    mask = np.zeros(image.shape[:2], np.float32)
    cv2.ellipse(mask, (round(right[0] + 0.05 * d), round(right[1] - 0.04 * d)),
                (round(0.2 * d), round(0.09 * d)), -20, 0, 360, 1.0, -1)  # fmt: skip
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.02 * d))
    return _blend(out, np.full_like(image, 252), np.clip(mask * 1.1, 0, 1))


def _shaded_fabric(image: np.ndarray, colour: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3) * 6
    shade = np.linspace(1.08, 0.9, h, dtype=np.float32)[:, None] + noise / 100
    return np.clip(np.asarray(colour, np.float32) * shade[..., None], 0, 255).astype(np.uint8)


def cap(
    image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int] = (34, 42, 88)
) -> np.ndarray:
    """A peaked cap (navy unless told): the crown over the hair down to the upper forehead,
    and a brim."""
    _right, _left, d = _eyes(points)
    oval = points[list(OVAL)]
    x0, x1 = float(oval[:, 0].min()), float(oval[:, 0].max())
    brow_y = float(points[9][1])
    band_y = brow_y - 0.3 * d
    top = float(points[10][1]) - 1.0 * d
    mask = np.zeros(image.shape[:2], np.uint8)
    crown = np.array([[x0 - 0.12 * d, band_y], [x0 + 0.05 * d, top + 0.25 * d],
                      [(x0 + x1) / 2, top], [x1 - 0.05 * d, top + 0.25 * d],
                      [x1 + 0.12 * d, band_y]], np.int32)  # fmt: skip
    cv2.fillPoly(mask, [crown], 255, cv2.LINE_AA)
    brim_axes = (round((x1 - x0) * 0.62), round(0.16 * d))
    cv2.ellipse(mask, (round((x0 + x1) / 2), round(band_y)), brim_axes, 0, 0, 180, 255, -1,
                cv2.LINE_AA)  # fmt: skip
    fabric = _shaded_fabric(image, colour, 1)
    out = _blend(image, fabric, mask.astype(np.float32) / 255.0)
    # The brim's shadow on the forehead below it.
    shadow = np.zeros(image.shape[:2], np.float32)
    cv2.ellipse(shadow, (round((x0 + x1) / 2), round(band_y + 0.14 * d)),
                (round((x1 - x0) * 0.5), round(0.1 * d)), 0, 0, 180, 0.45, -1)  # fmt: skip
    shadow = cv2.GaussianBlur(shadow, (0, 0), 0.04 * d) * (1 - mask / 255.0)
    return _blend(out, np.zeros_like(image), shadow)


def headscarf(
    image: np.ndarray, points: np.ndarray, colour: tuple[int, int, int] = (96, 38, 52)
) -> np.ndarray:
    """A plain headscarf (maroon unless told) as worn for religious reasons: hair, ears and
    neck covered, the face from chin to forehead showing with its edges."""
    _right, _left, d = _eyes(points)
    oval = points[list(OVAL)].astype(np.float32)
    centre = oval.mean(axis=0)
    face = centre + (oval - centre) * 1.02
    outer = centre + (oval - centre) * np.array([1.75, 1.5], np.float32)
    outer[:, 1] -= 0.15 * d
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(outer).astype(np.int32)], 255, cv2.LINE_AA)
    chin = points[152]
    h = image.shape[0]
    low = min(h - 1, chin[1] + 1.2 * d)
    left_x, right_x = outer[:, 0].min(), outer[:, 0].max()
    drape = np.array([[left_x, centre[1]], [right_x, centre[1]], [right_x + 0.4 * d, low],
                      [left_x - 0.4 * d, low]], np.int32)  # fmt: skip
    cv2.fillPoly(mask, [drape], 255, cv2.LINE_AA)
    cv2.fillPoly(mask, [np.round(face).astype(np.int32)], 0, cv2.LINE_AA)
    weight = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.0)
    return _blend(image, _shaded_fabric(image, colour, 2), weight)


def black_cap(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return cap(image, points, (22, 22, 24))


def black_scarf(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return headscarf(image, points, (24, 24, 28))


def fringe(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Dark hair strands from the forehead down over both eyes."""
    rng = np.random.default_rng(3)
    right, left, d = _eyes(points)
    mask = np.zeros(image.shape[:2], np.float32)
    # The strands come out of the hair above the forehead, so they start in it.
    top = float(points[10][1]) - 0.8 * d
    for _ in range(160):
        x = rng.uniform(right[0] - 0.6 * d, left[0] + 0.6 * d)
        length = rng.uniform(0.93, 1.15) * (max(right[1], left[1]) + 0.15 * d - top)
        bend = rng.normal(0, 0.08 * d)
        pts = np.array([[x, top], [x + bend, top + length / 2], [x + 2 * bend, top + length]])
        cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1.0,
                      max(1, round(0.012 * d)), cv2.LINE_AA)  # fmt: skip
    mask = np.clip(mask, 0, 1) * 0.95
    return _blend(image, np.full_like(image, (42, 30, 22)), mask)


def side_shadow(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """One side of the face in shadow: a single light from the side, no fill."""
    _right, _left, d = _eyes(points)
    nose_x = float(points[1][0])
    h, w = image.shape[:2]
    xs = np.arange(w, dtype=np.float32)
    ramp = np.clip((xs - nose_x) / (0.15 * d), 0, 1)[None, :].repeat(h, 0)
    return _blend(image, (image * 0.38).astype(np.uint8), ramp)


def red_eye(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    _right, _left, d = _eyes(points)
    out = image
    for ring in ((33, 133, 159, 145), (263, 362, 386, 374)):
        centre = points[list(ring)].mean(axis=0)
        mask = np.zeros(image.shape[:2], np.float32)
        cv2.circle(mask, (round(centre[0]), round(centre[1])), max(2, round(0.085 * d)), 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.8, 0.01 * d))
        out = _blend(out, np.full_like(image, (205, 24, 20)), mask)
    return out


def colour_cast(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A green-blue cast, as from fluorescent light with the camera on daylight balance."""
    gains = np.array([0.62, 1.0, 1.18], np.float32)
    return np.clip(image.astype(np.float32) * gains, 0, 255).astype(np.uint8)


def bright(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Brighter but still correctly exposed: a lighter tone curve, highlights kept."""
    lut = (255.0 * (np.arange(256) / 255.0) ** 0.72).astype(np.uint8)
    return np.asarray(lut[image])


def overexposed(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * 1.9 + 40, 0, 255).astype(np.uint8)


def underexposed(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (image.astype(np.float32) * 0.28).astype(np.uint8)


# Variant name -> (painter, the check it makes fail, what the label means).
VARIANTS: dict[str, tuple[Painter, tuple[str, ...]]] = {
    "spectacles": (spectacles, ("glasses",)),
    "sunglasses": (sunglasses, ("glasses", "tinted glasses", "eyes visible")),
    "glare": (glare, ("glasses", "glare")),
    "cap": (cap, ("head covering",)),
    "headscarf": (headscarf, ("head covering",)),
    "black-cap": (black_cap, ("head covering",)),
    "black-scarf": (black_scarf, ("head covering",)),
    "fringe": (fringe, ("eyes visible",)),
    "side-shadow": (side_shadow, ("illumination", "face shadows")),
    "red-eye": (red_eye, ("red-eye",)),
    "colour-cast": (colour_cast, ("natural colour",)),
    "bright": (bright, ()),
    "overexposed": (overexposed, ("exposure",)),
    "underexposed": (underexposed, ("exposure",)),
}
