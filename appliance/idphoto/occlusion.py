"""Face and mouth occlusion (OFIQ's two occlusion components): a hand, a mask, a scarf, a
phone or a microphone over the face.

OFIQ segments the face with a network; the appliance runs none, and the mesh places its
points on an occluded face all the same (it draws a mouth on a mask or a hand), so these checks
read the pixels inside the mesh's zones: the nose, the lips, the two cheeks (below where a
spectacle frame's rim can lie) and the chin. A zone pixel is covered where no skin has its
colour against the sitter's skin (taken on the forehead and on the cheeks, whichever is
skin-coloured): a hue far from the skin's (a blue mask), far more vivid (a coloured scarf), or
dull and much darker (a black phone; not on the chin and the lips, where beards and
moustaches grow). Lightness alone is shading and is not counted. Over the mouth, lips that are
no redder than the skin around them are hidden too: a hand of the sitter's own skin tone over
the mouth hides the lips' colour, while a beard, a moustache or lipstick makes them stand out
more. A hand of the sitter's skin colour on the cheek or under the chin is not seen
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.idphoto.checks import Check, Region, Verdict, check
from appliance.idphoto.face_zones import FACE_OVAL, LIPS, Box, FaceImage, FaceZones, crop

RULE_FACE = "ICAO: the whole face visible, nothing covering it (hands, masks, scarves, objects)"
RULE_RELIGIOUS = "ICAO: a religious covering may not cover the face from chin to forehead"
RULE_MOUTH = "ICAO: the mouth visible and closed, nothing in front of it"
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81,
              80, 191)  # fmt: skip
NOSE = (5, 4, 45, 275, 220, 440, 115, 344, 131, 360)
RIGHT_CHEEK = (117, 118, 100, 36, 203, 206, 187, 123)
LEFT_CHEEK = (346, 347, 329, 266, 423, 426, 411, 352)
CHIN = (18, 200, 199, 175, 152, 148, 176, 377, 400, 83, 313, 201, 421, 208, 428)
WRONG_HUE_CHROMA = 8.0  # chroma from which a hue far from the skin's counts
WRONG_HUE = 75.0  # degrees of CIELAB hue from the skin's (lipstick and blush stay within 40)
VIVID = 22.0  # chroma above the skin's that no skin has
DULL, DARKER = 0.4, 12.0  # under 0.4 of the skin's chroma and 12 L* darker: black or grey
DIM_PHOTO = 30.0  # the person's 99th-percentile luminance under which the photo is too dark
# (real photos here: 50 and up, dark skin in dark clothes included; at x0.28 exposure: 11-16)
CHEEK_TOP = 0.34  # eye distances below the eyes where the cheek zones start
FACE_LIMIT = 0.40  # the most occluded zone's foreign share (clean faces: at most 0.33)
MOUTH_LIMIT = 0.35  # the lips' foreign share
LIP_CONTRAST_LEAST = 2.0  # a* by which the lips are redder than the skin around them
LIP_CONTRAST = 3.0  # ... and by which they are, where the mouth shows no seam or teeth
LIP_SPREAD = 26.0  # L* spread over a mouth whose lips are not redder (its seam, its teeth)


def _skin_like(lab: np.ndarray) -> bool:
    """A colour skin can have: warm hue (CIELAB 20-90 degrees), chroma 5-60 (warm light)."""
    chroma = float(np.hypot(lab[1], lab[2]))
    hue = float(np.degrees(np.arctan2(lab[2], lab[1])))
    return 5.0 <= chroma <= 60.0 and 20.0 <= hue <= 90.0


def _references(face: FaceImage) -> list[np.ndarray]:
    """The sitter's skin colour where it is skin-coloured: the cheeks' median and the
    forehead's (a mask or a scarf can cover the cheek zones, a fringe the forehead)."""
    forehead = _forehead(face.zones)
    found = [face.reference]
    values = face.lab_in(forehead)[crop(face.alpha, forehead) >= 0.5]
    if len(values) >= 9:
        found.append(np.median(values.reshape(-1, 3), axis=0))
    skin = [r for r in found if _skin_like(r)]
    return skin or found


def _foreign(
    seen: np.ndarray,
    polar: tuple[np.ndarray, np.ndarray],
    ref: np.ndarray,
    name: str,
    hair_allowed: bool,
) -> np.ndarray:
    """Pixels (N x 3 CIELAB) no skin under any light can have, against the skin `ref`: a hue
    skin never has (over 75 degrees from the skin's: blue, green, violet), far more vivid than the
    skin (a coloured scarf; not on the lips, where lipstick is), or dull and much darker
    (black fabric, a phone; not where a beard or moustache may grow). Lightness alone is
    shading and is not counted, nor dull and light (a specular highlight)."""
    light = seen[:, 0]
    chroma, hue = polar
    ref_chroma = float(np.hypot(ref[1], ref[2]))
    ref_hue = float(np.degrees(np.arctan2(ref[2], ref[1])))
    turned = np.abs((hue - ref_hue + 180.0) % 360.0 - 180.0)
    wrong_hue = (chroma >= WRONG_HUE_CHROMA) & (turned > WRONG_HUE)
    foreign = wrong_hue
    if name == "mouth":  # lips and lipstick: red to orange, pink to violet-red
        foreign = foreign & ~((hue > -40.0) & (hue < 60.0))
    if name not in ("mouth", "nose"):  # lipstick; a nose lit warm and shiny
        foreign = foreign | (chroma > ref_chroma + VIVID)
    if not hair_allowed:
        dull = chroma < max(4.0, DULL * ref_chroma)
        foreign = foreign | (dull & (light < ref[0] - DARKER))
    return np.asarray(foreign)


def _zone_box(mask: np.ndarray, canvas: _Canvas) -> Box:
    """The mask's box in the photo's pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return (0, 0, 0, 0)
    ox, oy, _x1, _y1 = canvas.box
    k = canvas.step
    return canvas.clip((ox + k * int(cols[0]), oy + k * int(rows[0]),
                        ox + k * (int(cols[-1]) + 1), oy + k * (int(rows[-1]) + 1)))  # fmt: skip


class _Canvas:
    """Masks of mesh rings on the lower face's box only, on every second pixel where the
    face is large enough (the whole photo costs twenty times as much to fill, index and
    count; the zones are tens of pixels across either way)."""

    def __init__(self, zones: FaceZones, ring: tuple[int, ...], margin: float, step: int) -> None:
        d = zones.eye_distance
        around = zones.points[list(ring)]
        (ax0, ay0), (ax1, ay1) = around.min(axis=0), around.max(axis=0)
        grow = margin * d
        self.box = zones.clip((round(ax0 - grow), round(ay0 - grow),
                               round(ax1 + grow), round(ay1 + grow)))  # fmt: skip
        x0, y0, x1, y1 = self.box
        self.step = step if d >= 30 * step else 1
        k = self.step
        self.shape = (max(0, -(-(y1 - y0) // k)), max(0, -(-(x1 - x0) // k)))
        self.points = (zones.points - (x0, y0)) / k
        self.d = d / k
        self.clip = zones.clip

    def view(self, image: np.ndarray) -> np.ndarray:
        """The image on the canvas's pixels."""
        x0, y0, x1, y1 = self.box
        return np.ascontiguousarray(image[y0 : y1 : self.step, x0 : x1 : self.step])

    def lab(self, face: FaceImage) -> np.ndarray:
        """The face's CIELAB on the canvas's pixels (converted for the face's region only)."""
        return np.ascontiguousarray(face.lab_in(self.box)[:: self.step, :: self.step])

    def ring(self, ring: tuple[int, ...], grow: float = 0.0, hull: bool = False) -> np.ndarray:
        corners = np.round(self.points[list(ring)]).astype(np.int32)
        outline = np.asarray(cv2.convexHull(corners)) if hull else corners
        mask = np.zeros(self.shape, np.uint8)
        cv2.fillPoly(mask, [outline], 1)
        radius = round(grow * self.d)
        if radius > 0:
            cv2.polylines(mask, [outline], True, 1, 2 * radius + 1)
        return mask.astype(bool)


def _zones(zones: FaceZones, canvas: _Canvas) -> dict[str, tuple[np.ndarray, bool]]:
    """Each zone's mask on the canvas and whether beard and hair are allowed in it."""
    lips = canvas.ring(LIPS) & ~canvas.ring(INNER_LIPS, 0.02)
    # The cheeks from 0.34 eye distances below the eyes: a spectacle frame's lower rim
    # stays above.
    below = round(max(zones.right_eye[1], zones.left_eye[1]) + CHEEK_TOP * zones.eye_distance)
    cheeks = []
    for ring in (RIGHT_CHEEK, LEFT_CHEEK):
        cheek = canvas.ring(ring, hull=True)
        cheek[: max(0, -(-(below - canvas.box[1]) // canvas.step))] = False
        cheeks.append(cheek)
    return {
        "nose": (canvas.ring(NOSE, hull=True), False),
        "right cheek": (cheeks[0], False),
        "left cheek": (cheeks[1], False),
        "chin": (canvas.ring(CHIN, hull=True), True),
        "mouth": (lips, True),
    }


LOWER_FACE = (*RIGHT_CHEEK, *LEFT_CHEEK, *CHIN, *NOSE)


def measure(face: FaceImage) -> dict[str, object]:
    """Each zone's foreign share, the lips' redness over the skin around them, and where."""
    zones = face.zones
    canvas = _Canvas(zones, LOWER_FACE, 0.02, 2)
    lab = canvas.lab(face)
    person = canvas.view(face.alpha) >= 0.5
    references = _references(face)
    shares: dict[str, float] = {}
    boxes: dict[str, Box] = {}
    colours: dict[str, np.ndarray] = {}
    for name, (mask, hair_allowed) in _zones(zones, canvas).items():
        inside = mask & person
        if int(inside.sum()) < 9:  # off the photo or the person: nothing to judge
            shares[name] = 0.0
            boxes[name] = _zone_box(mask, canvas)
            continue
        seen = lab[inside]
        polar = (np.hypot(seen[:, 1], seen[:, 2]), np.degrees(np.arctan2(seen[:, 2], seen[:, 1])))
        best, chosen = 2.0, np.zeros(len(seen), bool)
        for ref in references:
            foreign = _foreign(seen, polar, ref, name, hair_allowed)
            share = float(foreign.mean())
            if share < best:
                best, chosen = share, foreign
        shares[name] = best
        # The occluder's colour, for its box: what was found, else the zone's mean.
        colours[name] = np.median(seen[chosen], axis=0) if chosen.any() else seen.mean(axis=0)
        where = np.zeros_like(inside)
        where[inside] = chosen
        boxes[name] = _zone_box(where if chosen.any() else mask, canvas)
    mouth = _Canvas(zones, LIPS, 0.25, 1)
    contrast, spread = _lips_shown(mouth.lab(face), mouth)
    return {
        "shares": shares,
        "boxes": boxes,
        "colours": colours,
        "lip contrast": contrast,
        "lip spread": spread,
    }


def _lips_shown(lab: np.ndarray, canvas: _Canvas) -> tuple[float, float]:
    """How the mouth shows: the median a* of the lips over that of a band of skin 0.05-0.2
    eye distances around them, and the spread of lightness (10th to 90th percentile) over
    the mouth (lips, their seam, teeth)."""
    mouth = canvas.ring(LIPS)
    lips = mouth & ~canvas.ring(INNER_LIPS, 0.02)
    around = canvas.ring(LIPS, 0.2) & ~canvas.ring(LIPS, 0.05)
    if lips.sum() < 9 or around.sum() < 9:
        return 0.0, 0.0
    a, light = lab[..., 1], lab[..., 0]
    low, high = np.percentile(light[mouth], (10, 90))
    return float(np.median(a[lips]) - np.median(a[around])), float(high - low)


def _judged(face: FaceImage) -> bool:
    """Whether the skin shows its colour at all: not where the forehead and the cheek zones
    are blown (over 4%, as the exposure check counts them), nor where nothing on the person
    is bright (under-exposed; a dark face is judged: its clothes, teeth or eyes are light)."""
    zones = face.zones
    values = [crop(face.luminance, b)[crop(face.alpha, b) >= 0.5]
              for b in (*zones.cheek_boxes(), _forehead(zones))]  # fmt: skip
    y = np.concatenate([v.ravel() for v in values])
    if y.size < 9:
        return False
    person = face.alpha[::4, ::4] >= 0.9  # inside the person: the backdrop is new, the edge mixed
    sample = face.luminance[::4, ::4][person]
    brightest = float(np.percentile(sample, 99)) if sample.size else 0.0
    return float((y >= 247).mean()) <= 0.04 and brightest >= DIM_PHOTO


def _forehead(zones: FaceZones) -> Box:
    d = zones.eye_distance
    brow = zones.pt(9)
    return zones.clip((round(brow[0] - 0.3 * d), round(brow[1] - 0.45 * d),
                       round(brow[0] + 0.3 * d), round(brow[1] - 0.1 * d)))  # fmt: skip


def occlusion_checks(face: FaceImage, religious: bool = False) -> list[Check]:
    rules = (RULE_FACE, RULE_RELIGIOUS) if religious else (RULE_FACE,)
    if not _judged(face):
        return [
            check("face occlusion", "pass", 0.0, "skin exposed to judge", "occlusion unjudged",
                  rules=rules),
            check("mouth occlusion", "pass", 0.0, "skin exposed to judge", "occlusion unjudged",
                  rules=(RULE_MOUTH,)),
        ]  # fmt: skip
    found = measure(face)
    shares: dict[str, float] = found["shares"]  # type: ignore[assignment]
    boxes: dict[str, Box] = found["boxes"]  # type: ignore[assignment]
    colours: dict[str, np.ndarray] = found["colours"]  # type: ignore[assignment]
    contrast = float(found["lip contrast"])  # type: ignore[arg-type]
    spread = float(found["lip spread"])  # type: ignore[arg-type]
    # The mouth: something over the lips, or lips that do not show as lips: under 2 a*
    # redder than the skin around them (the mesh draws a mouth on the hand's edge, whose
    # lightness spreads like a mouth's), or under 3 with no dark seam or bright teeth.
    mouth_share = shares["mouth"]
    mouth_hidden = (
        mouth_share > MOUTH_LIMIT
        or contrast < LIP_CONTRAST_LEAST
        or (contrast < LIP_CONTRAST and spread < LIP_SPREAD)
    )
    face_zones = {k: v for k, v in shares.items() if k != "mouth"}
    worst = max(face_zones, key=lambda k: face_zones[k])
    covered = [k for k, v in face_zones.items() if v > FACE_LIMIT]
    if mouth_hidden:
        covered.append("mouth")
    # One box round the occluder (found only on a face that fails): grown from the covered
    # zones in the colour of the most covered one.
    occluder: tuple[Region, ...] = ()
    if covered:
        seeds = np.array([boxes[k] for k in covered])
        seed = (int(seeds[:, 0].min()), int(seeds[:, 1].min()), int(seeds[:, 2].max()),
                int(seeds[:, 3].max()))  # fmt: skip
        most = max(covered, key=lambda k: shares[k])
        colour = colours.get(most if shares[most] > 0 else "mouth")
        occluder = (Region("face covered", _occluder_box(face, seed, colour)),)
    mouth_status: Verdict = "fail" if mouth_hidden else "pass"
    mouth = check(
        "mouth occlusion",
        mouth_status,
        round(mouth_share * 100, 1),
        f"under {MOUTH_LIMIT * 100:.0f}% of the lips covered; lips {LIP_CONTRAST_LEAST:g} a* "
        f"redder than the skin around them ({LIP_CONTRAST:g} unless the mouth spreads "
        f"{LIP_SPREAD:g} L*)",
        "mouth covered" if mouth_hidden else "mouth visible",
        rules=(RULE_MOUTH,),
        regions=tuple(Region("mouth covered", r.box) for r in occluder) if mouth_hidden else (),
        share=f"{mouth_share * 100:.0f}%",
        contrast=f"{contrast:.1f}",
    )
    status: Verdict = "fail" if covered else "pass"
    value = max(face_zones[worst], mouth_share if mouth_hidden else 0.0)
    face_check = check(
        "face occlusion",
        status,
        round(value * 100, 1),
        f"under {FACE_LIMIT * 100:.0f}% of the nose, each cheek, the chin and the lips covered",
        "face covered" if covered else "face visible",
        rules=rules,
        regions=occluder,
        where=", ".join(covered) if covered else "none",
    )
    return [face_check, mouth]


def _occluder_box(face: FaceImage, seed: Box, colour: np.ndarray | None) -> Box:
    """The whole occluder, grown from what a zone found: the pixels of its colour (within
    12 CIELAB units, lightness at half weight) connected to it, around the face (run only
    on a face that fails)."""
    if colour is None:
        return seed
    zones = face.zones
    d = zones.eye_distance
    oval = zones.points[list(FACE_OVAL)]
    (fx0, fy0), (fx1, fy1) = oval.min(axis=0), oval.max(axis=0)
    box = zones.clip((round(fx0 - 0.6 * d), round(fy0), round(fx1 + 0.6 * d),
                      round(fy1 + 0.8 * d)))  # fmt: skip
    x0, y0, x1, y1 = box
    k = 2  # every second pixel: the box is a mark, not a measure
    lab = face.lab_in(box)[::k, ::k]
    near = np.hypot((lab[..., 0] - colour[0]) * 0.5,
                    np.hypot(lab[..., 1] - colour[1], lab[..., 2] - colour[2])) < 12.0  # fmt: skip
    _count, labels, stats, _ = cv2.connectedComponentsWithStats(
        near.astype(np.uint8), connectivity=8
    )
    sx0, sy0, sx1, sy1 = (max(0, (v - o) // k) for v, o in zip(seed, (x0, y0, x0, y0), strict=True))
    touching = np.unique(labels[sy0:sy1, sx0:sx1])
    touching = touching[touching > 0]
    if not touching.size:
        return seed
    parts = stats[touching]
    grown = (x0 + k * int(parts[:, 0].min()), y0 + k * int(parts[:, 1].min()),
             min(x1, x0 + k * int((parts[:, 0] + parts[:, 2]).max())),
             min(y1, y0 + k * int((parts[:, 1] + parts[:, 3]).max())))  # fmt: skip
    return (min(grown[0], seed[0]), min(grown[1], seed[1]), max(grown[2], seed[2]),
            max(grown[3], seed[3]))  # fmt: skip
