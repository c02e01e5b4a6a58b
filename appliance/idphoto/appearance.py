"""How the face is lit and coloured: exposure, illumination, shadows, colour, red-eye, and
whether the eyes are visible, each measured on the finished photo with the mesh's zones.

Definitions and limits come from OFIQ (BSI's reference implementation of ISO/IEC 29794-5)
where it has them: over-exposure is the share of face pixels whose luminance is 247-255,
under-exposure the share at 0-25 (scored by OFIQ's sigmoid, h=120 a=0.832 s=-1 x0=0.92
w=0.05), illumination uniformity the histogram intersection of the two cheek zones (score
100 * raw^0.3), natural colour the CIELAB a*/b* distance of the cheeks from a* 5-25,
b* 5-35 (score 200 * (1 - sigmoid(raw / 10))). A quality score of 50 is the pass line, 25 the
fail line, unless a limit below says otherwise. Where OFIQ uses its occlusion or parsing
networks, the skin here is the mesh's face oval without eyes, brows, nostrils and lips.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from appliance.idphoto.checks import Check, Region, Verdict, check
from appliance.idphoto.face_zones import Box, FaceImage, FaceZones, crop, lab
from appliance.inference.landmarks import LEFT_EYE_RING, RIGHT_EYE_RING

# Spec rules (ICAO 9303 Part 3 / ISO/IEC 19794-5 Annex B) the checks below serve.
RULE_EXPOSURE = "ICAO: appropriate brightness and contrast, no over- or under-exposure"
RULE_LIGHT = "ICAO: lighting uniform, no shadows or hot spots on the face"
RULE_BACK_SHADOW = "ICAO: no shadows on the background behind the head"
RULE_COLOUR = "ICAO: natural skin tones, colour photo"
RULE_RED_EYE = "ICAO: no red-eye"
RULE_EYES = "ICAO: eyes open and clearly visible, no hair across the eyes"


def _sigmoid(x: float, x0: float, w: float) -> float:
    return 1.0 / (1.0 + math.exp(min(50.0, (x0 - x) / w)))


def _score_verdict(score: float, good: float = 50.0, poor: float = 25.0) -> Verdict:
    return "pass" if score >= good else "warn" if score >= poor else "fail"


def _boxes(
    mask: np.ndarray, kind: str, min_area: int = 1, offset: tuple[int, int] = (0, 0)
) -> tuple[Region, ...]:
    """The boxes of the mask's four largest parts (at least `min_area` pixels each)."""
    if not mask.any():
        return ()
    _count, _labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    ox, oy = offset
    regions = [
        Region(kind, (ox + int(x), oy + int(y), ox + int(x + w), oy + int(y + h)))
        for x, y, w, h, area in stats[1:]
        if area >= min_area
    ]
    return tuple(sorted(regions, key=lambda r: -(r.box[2] - r.box[0]) * (r.box[3] - r.box[1]))[:4])


def exposure_check(face: FaceImage) -> Check:
    """Blown and black skin by OFIQ's luminance ranges; a specular highlight (a small bright
    spot on the forehead or nose, normal under studio flash) is opened away first."""
    zones = face.zones
    size = max(3, round(0.08 * zones.eye_distance)) | 1
    # The skin's box and a kernel's margin: the opening sees the skin's edge as on the photo.
    box = _grown(face.skin_box, size, zones)
    skin = face.skin_in(box)
    total = int(np.count_nonzero(skin))
    if total < 50:
        return check("exposure", "warn", 0.0, "face skin visible", "exposure dim", mean="?")
    y = face.luminance_in(box)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    blown_raw = ((y >= 247) & skin).astype(np.uint8)
    blown = cv2.morphologyEx(blown_raw, cv2.MORPH_OPEN, kernel).astype(bool)
    bright = float(np.count_nonzero(blown)) / total
    dark = float(np.count_nonzero((y <= 25) & skin)) / total
    mean = float(y[skin].mean()) / 255.0
    over_score = min(100.0, 1.0 / (bright + 0.01))
    under_score = max(0.0, min(100.0, 120.0 * (0.832 - _sigmoid(dark, 0.92, 0.05))))
    mean_score = 100.0 * _sigmoid(mean, 0.2, 0.05) * (1.0 - _sigmoid(mean, 0.8, 0.05))
    over = _score_verdict(over_score, 50.0, 20.0)  # 1 % and 4 % of the skin blown
    under = _score_verdict(under_score)
    # OFIQ's mean-luminance band (0.2-0.8 linear) would fail dark skin that is well exposed:
    # the mean only warns, and only far outside the band.
    level: Verdict = "warn" if mean_score < 10.0 else "pass"
    status = max((over, under, level), key=("pass", "warn", "fail").index)
    values = {"bright": f"{bright * 100:.1f}%", "dark": f"{dark * 100:.1f}%", "mean": f"{mean:.2f}"}
    if over != "pass":
        text = "overexposed"
    elif under != "pass":
        text = "underexposed"
    elif level != "pass":
        text = "exposure dim" if mean < 0.5 else "exposure bright"
    else:
        text = "exposed"
    return check(
        "exposure",
        status,
        round(bright * 100, 2),
        "blown skin (luminance 247-255) under 1%, very dark skin (0-25) under 87%",
        text,
        rules=(RULE_EXPOSURE,),
        regions=_boxes(blown, "overexposed", size * size, box[:2]) if status != "pass" else (),
        **values,
    )


def illumination_check(face: FaceImage) -> Check:
    """Left against right: the median lightness (CIELAB L*) of a zone below each eye. OFIQ's
    own measure (the histogram intersection of its two small cheek zones, in linear light) is
    reported too; alone it fails evenly lit faces whose one cheek zone falls on blush."""
    zones = face.zones
    d = zones.eye_distance
    medians, boxes = [], []
    for eye in (zones.right_eye, zones.left_eye):
        top = int(eye[1] + 0.4 * zones.eye_mouth_distance)
        box = zones.clip((int(eye[0] - 0.25 * d), top, int(eye[0] + 0.25 * d), int(top + 0.4 * d)))
        values = face.lab_in(box)[..., 0][face.skin_in(box)]
        if values.size < 9:
            return check("illumination", "pass", 0.0, "cheeks visible", "lit evenly")
        medians.append(float(np.median(values)))
        boxes.append(box)
    difference = abs(medians[0] - medians[1])
    status: Verdict = "pass" if difference <= 20 else "warn" if difference <= 28 else "fail"
    return check(
        "illumination",
        status,
        round(difference, 1),
        "cheeks within 20 L* of each other",
        "lit evenly" if status == "pass" else "lit unevenly",
        rules=(RULE_LIGHT,),
        regions=(Region("shadow", boxes[int(np.argmin(medians))]),),
        ofiq=f"{_ofiq_uniformity(face):.0f}",
    )


def _ofiq_uniformity(face: FaceImage) -> float:
    hists = []
    for box in face.zones.cheek_boxes():
        values = face.luminance_in(box)[face.skin_in(box)]
        if values.size < 9:
            return 100.0
        hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
        hists.append(hist / hist.sum())
    return 100.0 * float(np.minimum(*hists).sum()) ** 0.3


def face_shadow_check(face: FaceImage) -> Check:
    """Shadow patches inside the face: skin-coloured pixels (by chroma: a shadow darkens skin
    but keeps its hue; hair and brows do not have it) whose smoothed lightness lies far below
    the face's typical lightness. The face's outer rim, turning away from the light, is left
    out."""
    zones = face.zones
    # Only the face's box is read (the blurs below are the costliest step of the checks).
    size = max(3, round(0.2 * zones.eye_distance)) | 1
    # A margin of non-skin so the erosion sees the skin's edge as in the whole photo.
    box = _grown(face.skin_box, size, zones)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    eroded = cv2.erode(face.skin_in(box).astype(np.uint8), kernel)
    # From here on only the eroded skin's box is read: nothing else can be inner.
    ex, ey, ew, eh = cv2.boundingRect(eroded)
    x0, y0 = box[0] + ex, box[1] + ey
    colours = face.lab_in((x0, y0, x0 + ew, y0 + eh))
    light = colours[..., 0]
    reference = face.reference
    chroma_far = np.hypot(colours[..., 1] - reference[1], colours[..., 2] - reference[2]) > 10
    inner = eroded[ey : ey + eh, ex : ex + ew].astype(bool) & ~chroma_far
    if np.count_nonzero(inner) < 50:
        return check("face shadows", "pass", 0.0, "face visible", "no face shadow")
    sigma = max(1.0, 0.08 * zones.eye_distance)
    # Zero beyond the box, as beyond the inner skin: the same as blurring the whole photo.
    edge = cv2.BORDER_CONSTANT
    weight = cv2.GaussianBlur(inner.astype(np.float32), (0, 0), sigma, borderType=edge)
    smooth = cv2.GaussianBlur(
        np.where(inner, light, 0).astype(np.float32), (0, 0), sigma, borderType=edge
    )
    smooth = smooth / np.maximum(weight, 1e-3)
    typical = float(np.percentile(smooth[inner], 70))
    deep = inner & (smooth < typical * 0.6)
    share = float(np.count_nonzero(deep)) / float(np.count_nonzero(inner))
    status: Verdict = "pass" if share <= 0.22 else "warn" if share <= 0.30 else "fail"
    least = round(zones.eye_distance * 0.1) ** 2
    return check(
        "face shadows",
        status,
        round(share * 100, 1),
        "under 22% of the face in shadow (lightness under 60% of typical)",
        "no face shadow" if status == "pass" else "face shadow",
        rules=(RULE_LIGHT,),
        regions=_boxes(deep, "shadow", least, (x0, y0)) if status != "pass" else (),
    )


def _grown(box: Box, margin: int, zones: FaceZones) -> Box:
    x0, y0, x1, y1 = box
    return zones.clip((x0 - margin, y0 - margin, x1 + margin, y1 + margin))


def background_shadow_check(face: FaceImage) -> Check:
    """A shadow on the background beside and above the head: the background in a band around
    the head darker than the rest of the background."""
    zones, alpha = face.zones, face.alpha
    back = alpha < 0.05
    outside = (alpha < 0.5).astype(np.uint8)
    reach = max(3, round(0.6 * zones.eye_distance))
    # Distance to the person (a transform is linear time; a dilation this wide is not).
    near = cv2.distanceTransform(outside, cv2.DIST_L2, 3) <= reach
    chin_row = int(zones.pt(152)[1])
    band = near & back
    band[chin_row:] = False
    rest = back & ~near
    if np.count_nonzero(band) < 50 or np.count_nonzero(rest) < 50:
        return check("background shadow", "pass", 0.0, "background visible", "no back shadow")
    light = face.lightness(back)
    reference = float(np.median(light[rest]))
    dark = band & (light < reference - 8.0)
    share = float(np.count_nonzero(dark)) / float(np.count_nonzero(band))
    status: Verdict = "pass" if share <= 0.05 else "warn" if share <= 0.15 else "fail"
    return check(
        "background shadow",
        status,
        round(share * 100, 1),
        "under 5% of the background around the head darker by 8 L*",
        "no back shadow" if status == "pass" else "back shadow",
        rules=(RULE_BACK_SHADOW,),
        regions=_boxes(dark, "shadow", reach) if status != "pass" else (),
    )


def colour_check(face: FaceImage) -> Check:
    """OFIQ's natural colour on the cheek zones; a photo without colour fails (authorities
    ask for colour, though OFIQ itself scores grey as natural)."""
    pixels, zones = face.pixels, face.zones
    if _grey_photo(pixels, face.region):
        return check("natural colour", "fail", 0.0, "a colour photo", "greyscale",
                     rules=(RULE_COLOUR,))  # fmt: skip
    chosen = [crop(pixels, b)[face.skin_in(b)] for b in zones.cheek_boxes()]
    values = np.concatenate([c for c in chosen if c.size]) if any(c.size for c in chosen) else None
    if values is None or len(values) < 9:
        return check("natural colour", "pass", 100.0, "cheeks visible", "colour natural")
    mean = values.reshape(-1, 3).mean(axis=0).astype(np.float32).reshape(1, 1, 3)
    _l, a, b = (float(v) for v in lab(np.clip(mean, 0, 255).astype(np.uint8))[0, 0])
    raw = math.hypot(max(0.0, 5 - a, a - 25), max(0.0, 5 - b, b - 35))
    score = 200.0 * (1.0 - _sigmoid(raw, 0.0, 10.0))
    status = _score_verdict(score)
    return check(
        "natural colour",
        status,
        round(score, 1),
        "OFIQ natural colour at least 50 (cheeks a* 5-25, b* 5-35)",
        "colour natural" if status == "pass" else "colour cast",
        rules=(RULE_COLOUR,),
    )


def _grey_photo(pixels: np.ndarray, first: Box) -> bool:
    """Every third pixel each way has its channels within 2 levels of each other; the pixels
    of `first` on that grid are looked at first (a colour face answers there)."""
    x0, y0, x1, y1 = first
    x0, y0 = x0 + (-x0 % 3), y0 + (-y0 % 3)  # on the photo's grid
    for part in (pixels[y0:y1:3, x0:x1:3], pixels[::3, ::3]):
        sample = np.ascontiguousarray(part).astype(np.int16)
        if sample.size and int(np.abs(sample - sample[..., :1]).max()) > 2:
            return False
    return True


def red_eye_check(face: FaceImage) -> Check:
    """Saturated red inside either eye's opening (a flash reflected off the retina)."""
    zones = face.zones
    worst, regions = 0.0, []
    for ring in (RIGHT_EYE_RING, LEFT_EYE_RING):
        box = zones.ring_box(ring)
        opening = zones.polygon(ring, box=box)
        if np.count_nonzero(opening) < 9:
            continue
        # A retina lit by the flash: strongly red (a* over 45) and not dark; a brown iris,
        # even through rose-tinted lenses, stays under a* 45.
        colours = face.lab_in(box)
        red = opening & (colours[..., 1] > 45.0) & (colours[..., 0] > 25.0)
        share = float(np.count_nonzero(red)) / float(np.count_nonzero(opening))
        if share > 0.04:
            regions.append(Region("red-eye", zones.eye_box(ring, 0.05)))
        worst = max(worst, share)
    status: Verdict = "pass" if worst <= 0.04 else "warn" if worst <= 0.08 else "fail"
    return check(
        "red-eye",
        status,
        round(worst * 100, 1),
        "under 4% of the eye opening saturated red",
        "no red eye" if status == "pass" else "red eye",
        rules=(RULE_RED_EYE,),
        regions=tuple(regions),
    )


def foreign(pixels_lab: np.ndarray, reference: np.ndarray, tolerance: float = 14.0) -> np.ndarray:
    """Pixels whose colour is far from the skin's (lightness counts half: shading is not
    an occlusion)."""
    d_light = (pixels_lab[..., 0] - reference[0]) * 0.5
    d_chroma = np.hypot(pixels_lab[..., 1] - reference[1], pixels_lab[..., 2] - reference[2])
    return np.asarray(np.hypot(d_light, d_chroma) > tolerance)


def eyes_visible_check(face: FaceImage) -> Check:
    """Hair across the eyes, in ISO/IEC 39794-5's eye visibility zone (the eye's box grown, here
    by 0.12 of the eye distance to take in the lids): an eye, its lids and lashes are edges that
    run across (brightness changes up and down); strands of hair hanging over it run down
    (brightness changes sideways). The value is the sideways over the up-down edge energy.
    An eye hidden behind something dark (sunglasses) has no contrast left in its opening: the
    white and the iris, some 40-65 L* apart on an open eye, differ by under 10."""
    zones = face.zones
    worst, flattest, regions = 0.0, 100.0, []
    for ring in (RIGHT_EYE_RING, LEFT_EYE_RING):
        box = zones.eye_box(ring, 0.12)
        patch = face.grey_in(box)
        inner = zones.ring_box(ring)
        opening = zones.polygon(ring, box=inner)
        if patch.shape[0] < 3 or patch.shape[1] < 3 or np.count_nonzero(opening) < 9:
            continue
        sideways = float(np.abs(np.diff(patch, axis=1)).sum())
        updown = float(np.abs(np.diff(patch, axis=0)).sum())
        ratio = sideways / (updown + 1.0)
        low, high = np.percentile(face.lab_in(inner)[..., 0][opening], (10, 90))
        contrast = float(high - low)
        if ratio > 1.2 or contrast < 10.0:
            regions.append(Region("eye covered", box))
        worst, flattest = max(worst, ratio), min(flattest, contrast)
    status: Verdict = "pass" if worst <= 1.2 else "warn" if worst <= 1.8 else "fail"
    if flattest < 10.0:
        status = "fail"
    return check(
        "eyes visible",
        status,
        round(worst, 2),
        "sideways edges at most 1.2 x the across edges around each eye; the eye's white and "
        "iris at least 10 L* apart",
        "eyes visible" if status == "pass" else "eyes covered",
        rules=(RULE_EYES,),
        regions=tuple(regions),
    )
