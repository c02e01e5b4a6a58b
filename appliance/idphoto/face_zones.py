"""Zones of the face from the 468-point mesh on the finished photo, and OFIQ's colour maths.

The zones follow OFIQ (ISO/IEC 29794-5's reference implementation) where it defines them:
the two cheek zones below the eyes (side 0.3 x the eye distance, half the eye-to-mouth
distance below each eye centre) for illumination uniformity and natural colour; luminance is
the relative luminance Y of linearised sRGB scaled to 0-255.
"""

from __future__ import annotations

import math
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

    def polygon(
        self, ring: tuple[int, ...], grow: float = 0.0, box: Box | None = None
    ) -> np.ndarray:
        """A filled mask of the ring's polygon, grown by `grow` eye distances: of the whole
        photo, or of `box` only (the same pixels, cut to the box)."""
        return self._filled(np.round(self.points[list(ring)]).astype(np.int32), grow, box)

    def hull(self, ring: tuple[int, ...], grow: float = 0.0, box: Box | None = None) -> np.ndarray:
        hull = cv2.convexHull(np.round(self.points[list(ring)]).astype(np.int32))
        return self._filled(hull, grow, box)

    def ring_box(self, ring: tuple[int, ...]) -> Box:
        """The box holding every pixel of the ring's polygon (not grown)."""
        corners = np.round(self.points[list(ring)]).astype(np.int64)
        (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
        return self.clip((int(x0), int(y0), int(x1) + 1, int(y1) + 1))

    def _filled(self, outline: np.ndarray, grow: float, box: Box | None = None) -> np.ndarray:
        x0, y0, x1, y1 = box if box is not None else (0, 0, self.shape[1], self.shape[0])
        mask = np.zeros((max(0, y1 - y0), max(0, x1 - x0)), np.uint8)
        if not mask.size:
            return mask.astype(bool)
        # Whole pixels moved: the same pixels as on the whole photo, cut to the box.
        outline = outline - np.array([x0, y0], np.int32)
        cv2.fillPoly(mask, [outline], 1)
        radius = round(grow * self.eye_distance)
        if radius > 0:  # a thick outline with round joins grows it (far cheaper than dilating)
            cv2.polylines(mask, [outline], True, 1, 2 * radius + 1)
        return mask.astype(bool)

    def skin_area(self, box: Box | None = None) -> np.ndarray:
        """The face oval without eyes, brows, nostrils and lips: where skin should show (of
        the whole photo, or of `box`)."""
        inner = self.polygon(FACE_OVAL, box=box)
        for ring, grow in (
            (RIGHT_EYE_RING, 0.08),
            (LEFT_EYE_RING, 0.08),
            (RIGHT_BROW, 0.05),
            (LEFT_BROW, 0.05),
            (LIPS, 0.05),
            (NOSTRILS, 0.02),
        ):
            inner &= ~self.hull(ring, grow, box)
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


# Each channel's weighted linear value, in float32 (one table lookup per channel).
_WEIGHTED = np.stack(
    [np.float32(w) * _LINEAR.astype(np.float32) for w in (0.2126, 0.7152, 0.0722)], axis=-1
).reshape(1, 256, 3)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """OFIQ's luminance: Y of linearised sRGB (Rec. 709 weights), as uint8 0-255 (in float32,
    the channels summed red, green, blue)."""
    weighted = cv2.LUT(np.ascontiguousarray(rgb), _WEIGHTED)
    y = weighted[..., 0] + weighted[..., 1] + weighted[..., 2]
    return np.floor(y * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB with L in 0-100 and a, b signed (OpenCV's float conversion, D65)."""
    return np.asarray(cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab))


def inside(box: Box, outer: Box) -> bool:
    """Whether `box` lies within `outer` (an empty box inside it counts)."""
    return outer[0] <= box[0] and outer[1] <= box[1] and box[2] <= outer[2] and box[3] <= outer[3]


def grey(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), dtype=np.float32)


_PLANES = {"lab": lab, "luminance": luminance, "grey": grey}


class FaceImage:
    """The finished photo with its matte and mesh zones, and the colour planes every check
    reads (CIELAB, OFIQ luminance, grey, the face's skin and skin colour).

    The planes are converted once, for the face's neighbourhood only (`region`: the face
    oval's box and a margin; every zone the face checks read lies in it); a box or mask
    reaching beyond it is converted on its own. Either way a pixel's value is the one a
    conversion of the whole photo gives (each conversion is per pixel)."""

    def __init__(self, pixels: np.ndarray, alpha: np.ndarray, zones: FaceZones) -> None:
        self.pixels = pixels
        self.alpha = alpha
        self.zones = zones
        self._planes: dict[str, np.ndarray] = {}

    @cached_property
    def region(self) -> Box:
        """The face oval's box grown by a quarter eye distance (at least 4 px): room for the
        erosions and openings at the skin's edge, the lens zones and the frame's sites."""
        outline = np.round(self.zones.points[list(FACE_OVAL)]).astype(np.int64)
        (x0, y0), (x1, y1) = outline.min(0), outline.max(0)
        grow = max(4, math.ceil(0.25 * self.zones.eye_distance))
        return self.zones.clip(
            (int(x0) - grow, int(y0) - grow, int(x1) + 1 + grow, int(y1) + 1 + grow)
        )

    def _plane(self, name: str, box: Box) -> np.ndarray:
        region = self.region
        if not inside(box, region):
            return _convert(name, crop(self.pixels, box))
        if name not in self._planes:
            self._planes[name] = _convert(name, crop(self.pixels, region))
        x, y = region[:2]
        return crop(self._planes[name], (box[0] - x, box[1] - y, box[2] - x, box[3] - y))

    def lab_in(self, box: Box) -> np.ndarray:
        """CIELAB (L 0-100, a and b signed) of the photo in `box`."""
        return self._plane("lab", box)

    def luminance_in(self, box: Box) -> np.ndarray:
        """OFIQ's luminance (uint8) in `box`."""
        return self._plane("luminance", box)

    def grey_in(self, box: Box) -> np.ndarray:
        """Grey (float32 0-255) in `box`."""
        return self._plane("grey", box)

    def lab_at(self, mask: np.ndarray) -> np.ndarray:
        """CIELAB of the pixels the photo-sized `mask` selects, N x 3, in row order."""
        box = _mask_box(mask)
        if inside(box, self.region):
            return self.lab_in(box)[crop(mask, box)]
        return _lab_of(self.pixels, np.flatnonzero(mask))

    def lightness(self, mask: np.ndarray) -> np.ndarray:
        """CIELAB L* of the photo, photo-sized, where `mask` holds (0 elsewhere): the mask's
        first colour (on a replaced background, nearly every pixel's) converted once, the
        other pixels one by one."""
        light = np.zeros(mask.shape, np.float32)
        first = int(np.argmax(mask))
        if not mask.flat[first]:
            return light
        colour = self.pixels.reshape(-1, 3)[first]
        same = (cv2.inRange(self.pixels, colour, colour) > 0) & mask
        light[same] = lab(colour.reshape(1, 1, 3))[0, 0, 0]
        others = np.flatnonzero(mask & ~same)
        if others.size:
            light.ravel()[others] = _lab_of(self.pixels, others)[:, 0]
        return light

    @cached_property
    def _skin_region(self) -> np.ndarray:
        region = self.region
        return np.asarray(self.zones.skin_area(region) & (crop(self.alpha, region) >= 0.5))

    def skin_in(self, box: Box) -> np.ndarray:
        """The skin mask (see FaceZones.skin_area; person only) in `box`."""
        region = self.region
        if not inside(box, region):
            return crop(self.skin, box)
        x, y = region[:2]
        return crop(self._skin_region, (box[0] - x, box[1] - y, box[2] - x, box[3] - y))

    @cached_property
    def skin_box(self) -> Box:
        """The skin's bounding box (the region when there is no skin)."""
        x, y = self.region[:2]
        x0, y0, x1, y1 = _mask_box(self._skin_region)
        if x0 >= x1:
            return self.region
        return (x + x0, y + y0, x + x1, y + y1)

    @cached_property
    def skin(self) -> np.ndarray:
        """The skin mask of the whole photo (the skin lies inside the region)."""
        whole = np.zeros(self.alpha.shape, bool)
        region = self.region
        whole[region[1] : region[3], region[0] : region[2]] = self._skin_region
        return whole

    @cached_property
    def lab(self) -> np.ndarray:
        """CIELAB of the whole photo (costly: the checks read `lab_in` and `lab_at`)."""
        return self.lab_in(self._whole)

    @cached_property
    def luminance(self) -> np.ndarray:
        """OFIQ's luminance of the whole photo (costly: the checks read `luminance_in`)."""
        return self.luminance_in(self._whole)

    @cached_property
    def grey(self) -> np.ndarray:
        """Grey of the whole photo (costly: the checks read `grey_in`)."""
        return self.grey_in(self._whole)

    @property
    def _whole(self) -> Box:
        return (0, 0, self.pixels.shape[1], self.pixels.shape[0])

    @cached_property
    def reference(self) -> np.ndarray:
        """The face's typical skin colour in CIELAB: the median over the cheek zones."""
        chosen = [self.lab_in(b)[self.skin_in(b)] for b in self.zones.cheek_boxes()]
        values = np.concatenate([c.reshape(-1, 3) for c in chosen])
        if len(values) < 9:
            values = self.lab_in(self.region)[self._skin_region].reshape(-1, 3)
        return np.median(values, axis=0) if len(values) else np.array([60.0, 15.0, 20.0])


def _convert(name: str, rgb: np.ndarray) -> np.ndarray:
    if not rgb.size:  # OpenCV refuses an empty image
        return np.zeros(rgb.shape[:2] + ((3,) if name == "lab" else ()), _DTYPES[name])
    return _PLANES[name](rgb)


_DTYPES = {"lab": np.float32, "luminance": np.uint8, "grey": np.float32}


def _mask_box(mask: np.ndarray) -> Box:
    """The mask's bounding box (an empty box at the origin for an empty mask)."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return (x, y, x + w, y + h)


def _lab_of(pixels: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """CIELAB of the photo's pixels at these flat indices, N x 3 (converted as one row)."""
    chosen = np.take(pixels.reshape(-1, 3), indices, axis=0)
    return _convert("lab", chosen.reshape(1, -1, 3)).reshape(-1, 3)
