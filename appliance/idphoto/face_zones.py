"""Zones of the face from the 468-point mesh on the finished photo, and OFIQ's colour maths.

The zones follow OFIQ (ISO/IEC 29794-5's reference implementation) where it defines them:
the two cheek zones below the eyes (side 0.3 x the eye distance, half the eye-to-mouth
distance below each eye centre) for illumination uniformity and natural colour; luminance is
the relative luminance Y of linearised sRGB scaled to 0-255.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from appliance.inference.landmarks import LEFT_EYE_RING, RIGHT_EYE_RING

FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
RIGHT_BROW = (46, 53, 52, 65, 55, 70, 63, 105, 66, 107)
LEFT_BROW = (276, 283, 282, 295, 285, 300, 293, 334, 296, 336)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
NOSTRILS = (98, 97, 2, 326, 327, 294, 278, 344, 440, 275, 4, 45, 220, 115, 48, 64)
# Eye corners (outer, inner) as OFIQ takes them for the eye centres.
RIGHT_CORNERS, LEFT_CORNERS = (33, 133), (263, 362)
MOUTH_CORNERS = (61, 291)
FOREHEAD_TOP = 10
BROW_MIDDLE = 9

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceZones:
    """The mesh's points on the finished photo and the zones every check reads."""

    points: np.ndarray  # 468 x 2, output pixels
    shape: tuple[int, int]  # height, width of the photo

    def pt(self, index: int) -> np.ndarray:
        return self.points[index]

    @property
    def right_eye(self) -> np.ndarray:
        return self.points[list(RIGHT_CORNERS)].mean(axis=0)

    @property
    def left_eye(self) -> np.ndarray:
        return self.points[list(LEFT_CORNERS)].mean(axis=0)

    @cached_property
    def eye_distance(self) -> float:
        return float(np.hypot(*(self.left_eye - self.right_eye)))

    @property
    def eye_mouth_distance(self) -> float:
        mouth = self.points[list(MOUTH_CORNERS)].mean(axis=0)
        return float(np.hypot(*(mouth - (self.left_eye + self.right_eye) / 2)))

    def polygon(self, ring: tuple[int, ...], grow: float = 0.0) -> np.ndarray:
        """A filled mask of the ring's polygon, grown by `grow` eye distances."""
        return self._filled(np.round(self.points[list(ring)]).astype(np.int32), grow)

    def hull(self, ring: tuple[int, ...], grow: float = 0.0) -> np.ndarray:
        hull = cv2.convexHull(np.round(self.points[list(ring)]).astype(np.int32))
        return self._filled(hull, grow)

    def _filled(self, outline: np.ndarray, grow: float) -> np.ndarray:
        mask = np.zeros(self.shape, np.uint8)
        cv2.fillPoly(mask, [outline], 1)
        radius = round(grow * self.eye_distance)
        if radius > 0:  # a thick outline with round joins grows it (far cheaper than dilating)
            cv2.polylines(mask, [outline], True, 1, 2 * radius + 1)
        return mask.astype(bool)

    def skin_area(self) -> np.ndarray:
        """The face oval without eyes, brows, nostrils and lips: where skin should show."""
        inner = self.polygon(FACE_OVAL)
        for ring, grow in (
            (RIGHT_EYE_RING, 0.08),
            (LEFT_EYE_RING, 0.08),
            (RIGHT_BROW, 0.05),
            (LEFT_BROW, 0.05),
            (LIPS, 0.05),
            (NOSTRILS, 0.02),
        ):
            inner &= ~self.hull(ring, grow)
        return inner

    def cheek_boxes(self) -> tuple[Box, Box]:
        """OFIQ's two zones below the eyes (image-left first): side 0.3 eye distances, the top
        half the eye-to-mouth distance below each eye centre, outer edge at the eye centre."""
        side = int(self.eye_distance * 0.3)
        drop = int(self.eye_mouth_distance / 2)
        rx, ry = (int(v) for v in self.right_eye)
        lx, ly = (int(v) for v in self.left_eye)
        return (
            self.clip((rx - side, ry + drop, rx, ry + drop + side)),
            self.clip((lx, ly + drop, lx + side, ly + drop + side)),
        )

    def eye_box(self, ring: tuple[int, ...], margin: float) -> Box:
        """The eye's bounding box grown by `margin` eye distances (ISO/IEC 39794-5's eye
        visibility zone uses 1/20)."""
        grow = margin * self.eye_distance
        (x0, y0), (x1, y1) = self.points[list(ring)].min(0), self.points[list(ring)].max(0)
        return self.clip((round(x0 - grow), round(y0 - grow), round(x1 + grow), round(y1 + grow)))

    def lens_box(self, ring: tuple[int, ...]) -> Box:
        """Where a spectacle lens over this eye would be: eye centre +- 0.42 x 0.30 eye
        distances (a typical lens is 50 x 35 mm against a 63 mm eye distance)."""
        centre = self.points[list(ring)].mean(axis=0)
        half_w, half_h = 0.42 * self.eye_distance, 0.30 * self.eye_distance
        cx, cy = centre
        return self.clip(
            (round(cx - half_w), round(cy - half_h), round(cx + half_w), round(cy + half_h))
        )

    def clip(self, box: Box) -> Box:
        h, w = self.shape
        x0, y0, x1, y1 = box
        return (max(0, min(x0, w)), max(0, min(y0, h)), max(0, min(x1, w)), max(0, min(y1, h)))


def crop(image: np.ndarray, box: Box) -> np.ndarray:
    x0, y0, x1, y1 = box
    return image[y0:y1, x0:x1]


_LINEAR = ((np.arange(256) / 255.0 + 0.055) / 1.055) ** 2.4
_LINEAR[:11] = np.arange(11) / 255.0 / 12.92  # sRGB's linear toe (x <= 0.04045)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """OFIQ's luminance: Y of linearised sRGB (Rec. 709 weights), as uint8 0-255."""
    lin = _LINEAR.astype(np.float32)
    y = 0.2126 * lin[rgb[..., 0]] + 0.7152 * lin[rgb[..., 1]] + 0.0722 * lin[rgb[..., 2]]
    return np.floor(y * 255.0 + 0.5).astype(np.uint8)


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB with L in 0-100 and a, b signed (OpenCV's float conversion, D65)."""
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab))


class FaceImage:
    """The finished photo with its matte and mesh zones, and the colour planes every check
    reads, each computed once (CIELAB, OFIQ luminance, grey, the face's skin colour)."""

    def __init__(self, pixels: np.ndarray, alpha: np.ndarray, zones: FaceZones) -> None:
        self.pixels = pixels
        self.alpha = alpha
        self.zones = zones

    @cached_property
    def skin(self) -> np.ndarray:
        return np.asarray(self.zones.skin_area() & (self.alpha >= 0.5))

    @cached_property
    def lab(self) -> np.ndarray:
        return lab(self.pixels)

    @cached_property
    def luminance(self) -> np.ndarray:
        return luminance(self.pixels)

    @cached_property
    def grey(self) -> np.ndarray:
        return np.asarray(cv2.cvtColor(self.pixels, cv2.COLOR_RGB2GRAY), dtype=np.float32)

    @cached_property
    def reference(self) -> np.ndarray:
        """The face's typical skin colour in CIELAB: the median over the cheek zones."""
        chosen = [crop(self.lab, b)[crop(self.skin, b)] for b in self.zones.cheek_boxes()]
        values = np.concatenate([c.reshape(-1, 3) for c in chosen])
        if len(values) < 9:
            values = self.lab[self.skin].reshape(-1, 3)
        return np.median(values, axis=0) if len(values) else np.array([60.0, 15.0, 20.0])
