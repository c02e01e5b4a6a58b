"""Compliance checks on the finished photo: each a measured value, its limit and a verdict.

Checks never block the photo: the operator sees every value in plain words and decides. The
geometry checks read the output itself (the pipeline's own landmark pass on the finished
pixels), so they report what the embassy will measure, not what the pipeline intended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import cv2
import numpy as np

from appliance.idphoto.face_texts import ADVICE, ADVICE_TEXTS, FACE_TEXTS
from appliance.idphoto.specs import DocumentSpec
from appliance.imaging.matte import solid
from appliance.imaging.remnants import Remnant, find_remnants, where

Verdict = Literal["pass", "warn", "fail"]


# What each check says, in English, with %(name)s placeholders: the report and the API carry
# the English message and, for the pages, the template and its values, so the operator reads
# it in the page's language (appliance/web/i18n.py hands these to the scripts translated).
TEXTS: dict[str, str] = {
    "one face": "one face in the photo",
    "faces": "%(count)s faces in the finished photo",
    "no face": "no face found in the finished photo",
    "head": "head is %(mm)s mm from chin to crown",
    "eyes": "eyes are %(mm)s mm above the bottom edge",
    "right": "face centre is %(mm)s mm right of the middle",
    "left": "face centre is %(mm)s mm left of the middle",
    "roll": "eye line tilted %(degrees)s degrees (corrected %(corrected)s)",
    "facing": "facing the camera",
    "turned": "head turned about %(degrees)s degrees: ask to face the camera",
    "level": "head level",
    "up": "head tilted up about %(degrees)s degrees",
    "down": "head tilted down about %(degrees)s degrees",
    "eyes open": "both eyes open",
    "eyes closed": "eyes look closed or half closed",
    "mouth closed": "mouth closed, neutral",
    "mouth open": "mouth open or smiling",
    "sharp": "in focus",
    "soft": "the face looks soft: check focus and movement",
    "even": "plain, even background",
    "uneven": "the background is not even",
    # A remnant of the old background, by where the largest one is (as the photo is seen).
    **{
        f"remnant {place}": (
            f"%(area)s mm² of the old background left {wording}: move what stands behind the "
            "person (a flag, a pole, a chair back) or retake against the plain backdrop"
        )
        for place, wording in (
            ("left head", "on the left of the photo, beside the head"),
            ("right head", "on the right of the photo, beside the head"),
            ("left shoulder", "on the left of the photo, beside the shoulder"),
            ("right shoulder", "on the right of the photo, beside the shoulder"),
            ("above", "above the head"),
        )
    },
    "resolution": "%(px)s px between the eyes in the output",
    "enlarged": (
        "%(px)s px between the eyes in the output; enlarged from a small face, may look soft"
    ),
    "covered": "the photo covers the frame",
    "extended": (
        "%(share)s of the frame (clothing below the shoulders) was continued past the photo's "
        "edge: check the preview, or retake from further away"
    ),
}


TEXTS.update(FACE_TEXTS)
TEXTS.update(ADVICE_TEXTS)


@dataclass(frozen=True)
class Region:
    """Where on the finished photo a problem is, for the preview's marks: a box in output
    pixels (x0, y0, x1, y1) and what is there (a `kind` such as "glare", "shadow")."""

    kind: str
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class Check:
    name: str
    status: Verdict
    value: float | int | str
    limit: str
    message: str  # English
    text: str = ""  # the message's template (one of TEXTS), for translation
    values: dict[str, str] = field(default_factory=dict)
    advice: str = ""  # what the operator should do (English, also a TEXTS value)
    rules: tuple[str, ...] = ()  # the spec rules this check serves
    regions: tuple[Region, ...] = ()  # where the problem is on the photo

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def check(
    name: str,
    status: Verdict,
    value: float | int | str,
    limit: str,
    text: str,
    *,
    rules: tuple[str, ...] = (),
    regions: tuple[Region, ...] = (),
    **values: object,
) -> Check:
    """A check whose message is TEXTS[text] filled with `values` (kept as strings); a check
    that does not pass carries the instruction for its fault (ADVICE) and where it is."""
    template = TEXTS[text]
    strings = {key: str(v) for key, v in values.items()}
    advice = ADVICE.get(text, "") if status != "pass" else ""
    return Check(
        name,
        status,
        value,
        limit,
        template % strings,
        template,
        strings,
        advice,
        rules,
        regions if status != "pass" else (),
    )


def marked_regions(checks: list[Check]) -> list[Region]:
    """Every region a failed or warned check marks, for the preview."""
    return [region for c in checks if c.status != "pass" for region in c.regions]


@dataclass(frozen=True)
class OutputMeasure:
    """What the landmark pass measured on the finished photo, in its pixels."""

    face_count: int
    eye_mid: tuple[float, float]
    eye_distance: float
    chin_y: float
    crown_y: float
    face_centre_x: float
    roll: float
    yaw: float
    pitch: float
    eyes_open: float  # the less open eye's lid gap over its width
    mouth_open: float
    face_box: tuple[int, int, int, int]  # x0, y0, x1, y1


def _graded(value: float, good: float, tolerable: float) -> Verdict:
    """pass up to `good`, warn up to `tolerable`, fail beyond (on the absolute value)."""
    magnitude = abs(value)
    return "pass" if magnitude <= good else "warn" if magnitude <= tolerable else "fail"


def _within(value: float, low: float, high: float, slack: float) -> Verdict:
    if low <= value <= high:
        return "pass"
    return "warn" if low - slack <= value <= high + slack else "fail"


def geometry_checks(m: OutputMeasure, spec: DocumentSpec, px_per_mm: float) -> list[Check]:
    height_px = spec.height_mm * px_per_mm
    width_px = spec.digital_size_px[0]
    head_mm = (m.chin_y - m.crown_y) / px_per_mm
    eye_mm = (height_px - m.eye_mid[1]) / px_per_mm
    offset_mm = (m.face_centre_x - width_px / 2.0) / px_per_mm
    head_lo, head_hi = spec.head_height_mm
    eye_lo, eye_hi = spec.eye_line_mm
    derived = " (derived: the authority sets none)" if spec.eye_line_derived else ""
    return [
        check(
            "single face",
            "pass" if m.face_count == 1 else "fail",
            m.face_count,
            "exactly 1",
            "one face" if m.face_count == 1 else "faces",
            count=m.face_count,
        ),
        check(
            "head height",
            _within(head_mm, head_lo, head_hi, 0.5),
            round(head_mm, 2),
            f"{head_lo:g}-{head_hi:g} mm chin to crown",
            "head",
            mm=f"{head_mm:.1f}",
        ),
        check(
            "eye line",
            _within(eye_mm, eye_lo, eye_hi, 0.5),
            round(eye_mm, 2),
            f"{eye_lo:g}-{eye_hi:g} mm from the bottom{derived}",
            "eyes",
            mm=f"{eye_mm:.1f}",
        ),
        check(
            "centring",
            _graded(offset_mm, 1.0, 2.0),
            round(offset_mm, 2),
            "within 1 mm",
            "right" if offset_mm > 0 else "left",
            mm=f"{abs(offset_mm):.1f}",
        ),
    ]


def pose_checks(m: OutputMeasure, corrected_roll: float) -> list[Check]:
    checks = [
        check(
            "roll",
            _graded(m.roll, 1.0, 2.0),
            round(m.roll, 2),
            "level within 1 degree",
            "roll",
            degrees=f"{abs(m.roll):.1f}",
            corrected=f"{corrected_roll:+.1f}",
        ),
        check(
            "yaw",
            _graded(m.yaw, 8.0, 15.0),
            round(m.yaw, 1),
            "within 8 degrees",
            "facing" if abs(m.yaw) <= 8 else "turned",
            degrees=f"{abs(m.yaw):.0f}",
        ),
        check(
            "pitch",
            _graded(m.pitch, 10.0, 20.0),
            round(m.pitch, 1),
            "within 10 degrees",
            "level" if abs(m.pitch) <= 10 else "up" if m.pitch > 0 else "down",
            degrees=f"{abs(m.pitch):.0f}",
        ),
    ]
    eyes: Verdict = "pass" if m.eyes_open >= 0.18 else "warn" if m.eyes_open >= 0.12 else "fail"
    checks.append(
        check(
            "eyes open",
            eyes,
            round(m.eyes_open, 3),
            "lid gap at least 0.18 of eye width",
            "eyes open" if eyes == "pass" else "eyes closed",
        )
    )
    mouth: Verdict = "pass" if m.mouth_open <= 0.08 else "warn" if m.mouth_open <= 0.15 else "fail"
    checks.append(
        check(
            "mouth closed",
            mouth,
            round(m.mouth_open, 3),
            "lip gap at most 0.08 of mouth width",
            "mouth closed" if mouth == "pass" else "mouth open",
        )
    )
    return checks


def _face_region(pixels: np.ndarray, m: OutputMeasure) -> np.ndarray:
    x0, y0, x1, y1 = m.face_box
    h, w = pixels.shape[:2]
    # The inner face (forehead to chin, cheek to cheek), away from hair and background.
    ix0, ix1 = x0 + (x1 - x0) // 6, x1 - (x1 - x0) // 6
    iy0, iy1 = y0 + (y1 - y0) // 8, y1 - (y1 - y0) // 10
    region = pixels[max(iy0, 0) : min(iy1, h), max(ix0, 0) : min(ix1, w)]
    return region if region.size else pixels


def image_checks(
    pixels: np.ndarray,
    alpha: np.ndarray,
    m: OutputMeasure,
    background: tuple[int, int, int],
    source_px_per_output_px: float,
) -> list[Check]:
    face = _face_region(pixels, m)
    grey = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)
    # Sharpness on a face normalised to a fixed eye distance, so it does not depend on size.
    scale = 64.0 / max(m.eye_distance, 1.0)
    normal = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    sharpness = float(cv2.Laplacian(normal, cv2.CV_32F).var())
    resolution = source_px_per_output_px
    return [
        check(
            "sharpness",
            "pass" if sharpness >= 60 else "warn" if sharpness >= 25 else "fail",
            round(sharpness, 1),
            "at least 60 (Laplacian variance at 64 px eye distance)",
            "sharp" if sharpness >= 60 else "soft",
        ),
        check(
            "resolution",
            "pass" if resolution >= 1.0 else "warn" if resolution >= 0.5 else "fail",
            round(resolution, 2),
            "at least 1 photo pixel per output pixel",
            "resolution" if resolution >= 1.0 else "enlarged",
            px=f"{m.eye_distance:.0f}",
        ),
    ]


def background_check(
    pixels: np.ndarray,
    alpha: np.ndarray,
    m: OutputMeasure,
    background: tuple[int, int, int],
    px_per_mm: float,
    remnants: list[Remnant] | None = None,
) -> Check:
    """Nothing of the old background left (see appliance/imaging/remnants.py), and the new
    one even where the matte is clear. Each remnant is a region to mark. `remnants`, when
    given, are the measure already taken on these pixels (the pipeline takes it beside the
    verification pass)."""
    if remnants is None:
        remnants = find_remnants(pixels, alpha, background, m.eye_mid, m.eye_distance, m.chin_y)
    limit = "no remnant of the old background; 95% of it within 8 levels of the colour"
    if remnants:
        area_mm2 = sum(r.area_px for r in remnants) / (px_per_mm * px_per_mm)
        place = where(remnants[0], m.face_centre_x, m.chin_y, m.crown_y)
        return check(
            "background",
            "fail",
            round(area_mm2, 1),
            limit,
            f"remnant {place}",
            regions=tuple(Region("remnant", r.box) for r in remnants),
            area=f"{area_mm2:.1f}",
        )
    # Every second pixel each way is plenty for a percentile over the background.
    sample = np.ascontiguousarray(pixels[::2, ::2])
    back = alpha[::2, ::2] < 0.05
    height, width = back.shape
    distance = _channel_max(cv2.absdiff(sample, solid(height, width, background)))[back.ravel()]
    spread = 0.0
    if distance.size:  # the 95th percentile, by counting (the distances are 0-255)
        counts = np.cumsum(np.bincount(distance, minlength=256))
        spread = float(np.searchsorted(counts, 0.95 * distance.size))
    return check(
        "background",
        _graded(spread, 8.0, 24.0),
        0.0,
        limit,
        "even" if spread <= 8 else "uneven",
        spread=f"{spread:.0f}",
    )


def _channel_max(pixels: np.ndarray) -> np.ndarray:
    """Per pixel, the largest of its three channels, flattened (OpenCV's row reduction: many
    times faster than numpy's reduction over a last axis of 3)."""
    rows = np.ascontiguousarray(pixels).reshape(-1, 3)
    return np.asarray(cv2.reduce(rows, 1, cv2.REDUCE_MAX)).ravel()


def _rank(verdict: Verdict) -> int:
    return {"pass": 0, "warn": 1, "fail": 2}[verdict]


def framing_check(extended_share: float) -> Check:
    """How much of the subject (clothing) had to be continued past the photo's edge."""
    percent = extended_share * 100.0
    return check(
        "framing",
        "pass" if percent < 0.5 else "warn" if percent < 12 else "fail",
        round(percent, 1),
        "the photo covers the whole frame",
        "covered" if percent < 0.5 else "extended",
        share=f"{percent:.0f}%",
    )


def worst(checks: list[Check]) -> Verdict:
    return max((c.status for c in checks), key=_rank, default="pass")
