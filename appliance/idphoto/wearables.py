"""What the sitter wears on the head and face: spectacles (frame, tinted lenses, glare) and
head coverings, judged against what the document's authority allows.

OFIQ finds head coverings with a face-parsing network; the appliance runs no such network, so
these checks read the mesh's zones and the person mask: a spectacle frame is a line that runs
straight across many pixels at the places a frame must cross (over the nose bridge, under each
eye, beside each eye), where skin has only short, incoherent edges; a head covering is person
that is neither skin nor hair-like above and beside the face, or the straight edge of a brim.
"""

from __future__ import annotations

import cv2
import numpy as np

from appliance.idphoto.appearance import foreign
from appliance.idphoto.checks import Check, Region, Verdict, check
from appliance.idphoto.face_zones import FACE_OVAL, FaceImage, FaceZones, crop
from appliance.idphoto.specs import DocumentSpec
from appliance.inference.landmarks import LEFT_EYE_RING, RIGHT_EYE_RING

RULE_GLASSES = {
    "forbidden": "authority: no glasses (medical exemption only)",
    "no-glare": "ICAO: glasses only with clear lenses, frames off the eyes, no glare",
    "allowed": "authority: glasses allowed",
}
RULE_TINT = "ICAO: no sunglasses or tinted lenses"
RULE_GLARE = "ICAO: no reflections or glare on glasses"
RULE_COVERING = {
    "religious": "authority: no head covering except for religious reasons, face from the "
    "bottom of the chin to the top of the forehead showing",
    "none": "authority: no head covering",
}
FRAME_LIMIT = 3.4  # median coherent-edge ratio over the five frame sites
BRIDGE_LIGHT_LIMIT = 3.4  # a bar across the nose bridge, in L*
BRIDGE_COLOUR_LIMIT = 1.0  # the same bar in b*: skin there has no straight colour edge
TINT_EYE_CONTRAST = 20.0  # L* between an eye's white and iris; 40-65 on an open, visible eye
BRIM_LIMIT = 4.0  # a straight edge across the forehead (a brim, a scarf's edge), over skin's
# Untextured fabric: over 20 % of the head outline with a Sobel gradient under 2 grey levels
# (|gx| + |gy|). Hair and bare heads reach at most 2.7 % (benchmarks/RESULTS.md), the painted
# black and navy caps and scarves 35 % and more; the real caps and hats here 0-2.2 %.
SMOOTH_LIMIT = 0.2
SMOOTH_GRADIENT = 2.0
GLARE_LIMIT = 0.04  # 3 catchlights of 0.05 eye distances' radius, in a 0.84 x 0.6 lens zone
EYES = (RIGHT_EYE_RING, LEFT_EYE_RING)
FRAME_NOTE = {
    "forbidden": "glasses not allowed",
    "no-glare": "frames must not cover the eyes",
    "allowed": "glasses allowed",
}


def _line_strength(patch: np.ndarray, horizontal: bool) -> float:
    """How strongly a straight line crosses the patch: the signed derivative across the line,
    averaged along it (a frame's edge adds up, skin texture cancels), at its strongest."""
    if patch.shape[0] < 3 or patch.shape[1] < 3:
        return 0.0
    if not horizontal:
        patch = patch.T
    derivative = np.diff(patch, axis=0)
    return float(np.abs(derivative.mean(axis=1)).max())


def frame_score(face: FaceImage) -> float:
    """The frame evidence, 1.0 at the line: the strongest of (a) the median coherent-edge
    ratio over the five places a frame crosses (the bridge, under and beside each eye), (b) a
    bar across the nose bridge in lightness and (c) the same bar in CIELAB b* (a frame's
    colour is not skin's, even where a translucent or amber bridge barely differs in
    lightness); each ratio is against the same measure on cheek skin."""
    zones = face.zones
    d = zones.eye_distance
    right_in, left_in = zones.pt(133), zones.pt(362)
    brow = zones.pt(9)
    span = left_in[0] - right_in[0]
    low = max(right_in[1], left_in[1])
    sites = [((right_in[0] + 0.2 * span, brow[1], left_in[0] - 0.2 * span, low + 0.1 * d), True)]
    for ring, outward in ((RIGHT_EYE_RING, -1.0), (LEFT_EYE_RING, 1.0)):
        points = zones.points[list(ring)]
        (ex0, _ey0), (ex1, ey1) = points.min(0), points.max(0)
        cx, cy = points.mean(0)
        width = ex1 - ex0
        # Under the eye: the lower rim, between the lid and the cheekbone.
        sites.append(((ex0 + 0.2 * width, ey1 + 0.08 * d, ex1 - 0.2 * width, ey1 + 0.45 * d), True))
        # Beside the eye: the rim's outer side, a vertical line.
        near, far = cx + outward * 0.3 * d, cx + outward * 0.62 * d
        sites.append(((min(near, far), cy - 0.18 * d, max(near, far), cy + 0.18 * d), False))
    boxes = [zones.clip(tuple(round(v) for v in box)) for box, _ in sites]
    strengths = [_line_strength(face.grey_in(b), h) for b, (_, h) in zip(boxes, sites, strict=True)]
    cheeks = _skin_patches(zones)
    reference = float(np.median([_line_strength(face.grey_in(b), True) for b in cheeks]))
    ratios = np.array(strengths) / (reference + 2.0)
    # The bridge from the brows' inner ends to below the eyes (a browline frame's bar runs
    # just under the brows), in lightness and in b*.
    bridge = zones.clip((round(right_in[0] + 0.25 * span), round(brow[1] + 0.02 * d),
                         round(left_in[0] - 0.25 * span), round(low + 0.15 * d)))  # fmt: skip
    bar_light, bar_yellow = (
        _line_strength(face.lab_in(bridge)[..., k], True)
        / (float(np.median([_line_strength(face.lab_in(b)[..., k], True) for b in cheeks])) + 1.0)
        for k in (0, 2)
    )
    evidence = (
        float(np.median(ratios)) / FRAME_LIMIT,
        bar_light / BRIDGE_LIGHT_LIMIT,
        bar_yellow / BRIDGE_COLOUR_LIMIT,
    )
    return max(evidence)


def _skin_patches(zones: FaceZones) -> list[tuple[int, int, int, int]]:
    """Skin to compare a frame's edges with: OFIQ's two cheek zones (where a large frame's
    lower rim can lie), the chin and the forehead; their median is the reference."""
    d = zones.eye_distance
    chin, brow = zones.pt(152), zones.pt(9)
    return [
        *zones.cheek_boxes(),
        zones.clip((round(chin[0] - 0.15 * d), round(chin[1] - 0.4 * d),
                    round(chin[0] + 0.15 * d), round(chin[1] - 0.1 * d))),
        zones.clip((round(brow[0] - 0.15 * d), round(brow[1] - 0.45 * d),
                    round(brow[0] + 0.15 * d), round(brow[1] - 0.15 * d))),
    ]  # fmt: skip


def glasses_checks(face: FaceImage, spec: DocumentSpec) -> list[Check]:
    score = frame_score(face)
    rule = spec.glasses
    worn = score > 1.0
    if not worn:
        frame_status: Verdict = "pass"
    else:
        frame_status = {"forbidden": "fail", "no-glare": "warn", "allowed": "pass"}[rule]  # type: ignore[assignment]
    frame = check(
        "glasses",
        frame_status,
        round(score, 2),
        f"frame evidence at most 1.0 ({FRAME_NOTE[rule]})",
        "glasses seen" if worn else "no glasses",
        rules=(RULE_GLASSES[rule],),
        regions=tuple(Region("glasses", face.zones.lens_box(r)) for r in EYES) if worn else (),
        score=f"{score:.1f}",
    )
    return [frame, _tint_check(face), _glare_check(face, worn, rule)]


def _tint_check(face: FaceImage) -> Check:
    """Lenses darker than the skin all over: the lens zone's median lightness against the
    cheeks' (an open eye with its lids is only a little darker than skin), with the eye behind
    it dimmed to no contrast (hair over the eyes darkens the zone too, but leaves the eye's
    white and iris apart)."""
    zones = face.zones
    reference = face.reference
    drops, contrasts, boxes = [], [], []
    for ring in (RIGHT_EYE_RING, LEFT_EYE_RING):
        box = zones.lens_box(ring)
        zone = face.lab_in(box)[..., 0]
        inner = zones.ring_box(ring)
        opening = zones.polygon(ring, box=inner)
        if zone.size < 9 or np.count_nonzero(opening) < 9:
            continue
        drops.append(float(reference[0] - np.median(zone)))
        low, high = np.percentile(face.lab_in(inner)[..., 0][opening], (10, 90))
        contrasts.append(float(high - low))
        boxes.append(box)
    drop = min(drops) if drops else 0.0  # both lenses tinted
    limit = max(14.0, 0.45 * float(reference[0]))
    hidden = bool(contrasts) and max(contrasts) < TINT_EYE_CONTRAST
    status: Verdict = "pass"
    if hidden and drop > limit:
        status = "warn" if drop <= limit + 8 else "fail"
    return check(
        "tinted glasses",
        status,
        round(drop, 1),
        f"lens zones at most {limit:.0f} L* darker than the cheeks, or the eyes seen through "
        f"them (white and iris {TINT_EYE_CONTRAST:.0f} L* apart)",
        "no tint" if status == "pass" else "glasses tinted",
        rules=(RULE_TINT,),
        regions=tuple(Region("tinted", b) for b in boxes),
    )


def _glare_check(face: FaceImage, worn: bool, rule: str) -> Check:
    """Near-white, colourless patches over the eyes (at least a quarter of each on the eye
    opening), each larger than three catchlights (the small reflection of the light in the
    cornea, which every authority accepts): the reflection of a light in a lens."""
    zones = face.zones
    reference = face.reference
    d = zones.eye_distance
    least = GLARE_LIMIT * (0.84 * d) * (0.60 * d)  # share of a lens zone (see lens_box)
    worst, regions = 0.0, []
    for ring in (RIGHT_EYE_RING, LEFT_EYE_RING):
        box = zones.lens_box(ring)
        zone = face.lab_in(box)
        if zone.size < 27:
            continue
        chroma = np.hypot(zone[..., 1], zone[..., 2])
        white = (zone[..., 0] > max(92.0, float(reference[0]) + 10.0)) & (chroma < 8.0)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            white.astype(np.uint8), connectivity=8
        )
        # Glare that hides the eye covers the eye opening; a shine on the skin around it
        # (the lid, the cheekbone under a bright light) does not.
        opening = zones.polygon(ring, 0.03, box=box)
        over_eye = np.bincount(labels[opening].ravel(), minlength=count)[:count]
        area = stats[:count, cv2.CC_STAT_AREA]
        areas = np.where(over_eye * 4 >= area, area, 0)[1:]
        if areas.size:
            worst = max(worst, float(areas.max()) / float(zone.shape[0] * zone.shape[1]))
        for i in range(1, count):
            if areas[i - 1] >= least:
                x, y, w, h = (int(v) for v in stats[i, :4])
                regions.append(
                    Region("glare", (box[0] + x, box[1] + y, box[0] + x + w, box[1] + y + h))
                )
    glare = worst > GLARE_LIMIT
    # Glare hides the eyes whatever the rule; without a frame seen it may be a rimless lens
    # or a bright eyelid, so the operator is asked to look.
    status: Verdict = "pass" if not glare else "warn" if rule == "allowed" or not worn else "fail"
    return check(
        "glare",
        status,
        round(worst * 100, 1),
        f"no white patch over {GLARE_LIMIT * 100:.0f}% of a lens zone (3 catchlights)",
        "glasses glare" if glare else "no glare",
        rules=(RULE_GLARE,),
        regions=tuple(regions),
    )


def head_covering_check(face: FaceImage, spec: DocumentSpec, religious: bool) -> Check:
    """Above and beside the face, the person mask holds hair, skin (a bald head, ears) or a
    covering. Fabric is what is neither skin-coloured nor hair-like in colour (hair is dull,
    black to blond or grey), or what shows no texture at all (hair always shows strands and
    their shading, so a black cap is told from black hair by its flat, untextured cloth); or
    the covering is found by the straight edge a brim or a scarf draws across the forehead.
    Only the head's box is read (the face's width and 0.35 eye distances either side, from
    1.2 eye distances above the forehead's top down to 0.6 above the chin)."""
    alpha, skin, zones = face.alpha, face.skin, face.zones
    d = zones.eye_distance
    top = zones.pt(10)
    height, width = alpha.shape
    outline = zones.points[list(FACE_OVAL)]
    x0, x1 = outline[:, 0].min(), outline[:, 0].max()
    ax0, ax1 = max(0, round(x0 - 0.35 * d)), min(width, round(x1 + 0.35 * d))
    ay0 = min(height, max(0, round(top[1] - 1.2 * d)))  # tall hair styles are not coverings
    ay1 = min(height, max(ay0, round(zones.pt(152)[1] - 0.6 * d)))
    head_box = (ax0, ay0, ax1, ay1)
    rules = (RULE_COVERING[spec.head_covering],)
    if ax1 - ax0 < 3 or ay1 - ay0 < 3:  # the head is outside the photo
        return check("head covering", "pass", 0.0, "head visible", "head bare", rules=rules)
    oval = np.zeros((ay1 - ay0, ax1 - ax0), np.uint8)
    cv2.fillPoly(oval, [np.round(outline - (ax0, ay0)).astype(np.int32)], 1)
    ring = (crop(alpha, head_box) >= 0.5) & (oval == 0)
    count = int(ring.sum())
    if count < 50:
        return check("head covering", "pass", 0.0, "head visible", "head bare", rules=rules)
    reference = face.reference
    not_skin, hair_colour = _skin_and_hair(face.lab_in(head_box), reference)
    share = np.count_nonzero(ring & not_skin & ~hair_colour) / count
    smooth = np.count_nonzero(ring & not_skin & _textureless(face.grey_in(head_box))) / count
    forehead = zones.clip((round(zones.pt(109)[0]), round(top[1] - 0.6 * d),
                           round(zones.pt(338)[0]), round(zones.pt(9)[1])))  # fmt: skip
    brim = _line_strength(face.grey_in(forehead), True)
    cheeks = max(_line_strength(face.grey_in(b), True) for b in zones.cheek_boxes())
    brim_ratio = brim / (cheeks + 2.0)
    covered = share > 0.47 or brim_ratio > BRIM_LIMIT or smooth > SMOOTH_LIMIT
    # The mark: the head above the brows, from the top of the person there, side to side.
    above = (alpha[:, ax0:ax1] >= 0.5).any(axis=1)
    crown = int(np.argmax(above)) if above.any() else 0
    head = zones.clip((ax0, crown, ax1, round(zones.pt(9)[1])))
    regions = (Region("head covering", head),)
    value = round(max(share, smooth) * 100, 1)
    flat = f"{SMOOTH_LIMIT * 100:.0f}%"
    limit = f"under 47% of the head outline is fabric, under {flat} without texture"
    if not covered:
        status: Verdict = "pass" if share <= 0.38 else "warn"
        text = "head bare" if status == "pass" else "head covered"
        return check("head covering", status, value, limit, text, rules=rules, regions=regions)
    if religious and spec.head_covering == "religious":
        shown = _face_shows(face.lab, reference, skin, zones)
        if shown:
            return check(
                "head covering", "pass", value, limit, "head covered religious", rules=rules
            )
        return check(
            "head covering", "fail", value, limit, "face hidden", rules=rules, regions=regions
        )
    return check(
        "head covering", "fail", value, limit, "head covered", rules=rules, regions=regions
    )


def _skin_and_hair(colours: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel of a CIELAB patch: not skin by hue and chroma alone (a bald scalp shines far
    lighter than the cheeks: over 12 a*b* units from the cheeks' colour), and hair-like in
    colour (grey to black under chroma 10, or brown, blond and red: hue 20-100 degrees up to
    chroma 55; the hue's bounds as signs of cross products, cheaper than an arctangent)."""
    a, b = cv2.extractChannel(colours, 1), cv2.extractChannel(colours, 2)
    not_skin = cv2.magnitude(a - np.float32(reference[1]), b - np.float32(reference[2])) > 12.0
    chroma = cv2.magnitude(a, b)
    past_20 = b * np.float32(np.cos(np.radians(20.0))) > a * np.float32(np.sin(np.radians(20.0)))
    before_100 = b * np.float32(np.cos(np.radians(100.0))) < a * np.float32(
        np.sin(np.radians(100.0))
    )
    hair = (chroma < 10.0) | ((chroma < 55.0) & past_20 & before_100)
    return not_skin, hair


def _textureless(grey: np.ndarray) -> np.ndarray:
    """Where a grey patch shows no texture: a 3 x 3 Sobel gradient (|gx| + |gy|) under
    SMOOTH_GRADIENT grey levels, where the grey is not clipped (a blown-out or crushed patch
    has no texture left to show, whatever it is)."""
    level = grey.astype(np.uint8)  # the grey of 8-bit pixels: whole numbers already
    gx, gy = cv2.spatialGradient(level)
    flat = cv2.add(cv2.convertScaleAbs(gx), cv2.convertScaleAbs(gy)) < SMOOTH_GRADIENT
    return np.asarray(flat & (level > 8) & (level < 247))


def _face_shows(
    colours: np.ndarray, reference: np.ndarray, skin: np.ndarray, zones: FaceZones
) -> bool:
    """The face from the chin to the top of the forehead: the forehead above the brows is
    mostly skin."""
    d = zones.eye_distance
    box = zones.clip((round(zones.pt(109)[0]), round(zones.pt(10)[1] + 0.1 * d),
                      round(zones.pt(338)[0]), round(zones.pt(9)[1])))  # fmt: skip
    region = crop(skin, box)
    if region.sum() < 9:
        return False
    skin_like = ~foreign(crop(colours, box), reference) & region
    return float(skin_like.sum()) / float(region.sum()) >= 0.6
