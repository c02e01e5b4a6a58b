"""Small geometry types and affine helpers shared by the models and the ID-photo pipeline."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from appliance.errors import ImageError

Point = tuple[float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: (x0, y0) top left, (x1, y1) bottom right."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def center(self) -> Point:
        return ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    def contains(self, point: Point, margin: float = 0.0) -> bool:
        x, y = point
        return (
            self.x0 - margin <= x <= self.x1 + margin and self.y0 - margin <= y <= self.y1 + margin
        )

    def scaled(self, factor: float) -> Box:
        return Box(self.x0 * factor, self.y0 * factor, self.x1 * factor, self.y1 * factor)

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0


def as_rgb_image(image: Any) -> np.ndarray:
    """Check that `image` is an H x W x 3 uint8 array with pixels; raise ImageError if not."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected decoded pixels (a numpy array), got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"expected 8-bit pixels (uint8), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageError(f"expected an RGB image (H x W x 3), got shape {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ImageError(
            f"the image is too small to hold a face ({image.shape[1]}x{image.shape[0]})"
        )
    return image


def rotation_about(center: Point, degrees: float, scale: float = 1.0) -> np.ndarray:
    """2x3 affine rotating by `degrees` (counter-clockwise on screen) about `center`."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    cx, cy = center
    # Image y points down, so a counter-clockwise turn on screen is (x, y) -> (x cos + y sin, ...).
    return np.array(
        [[cos, sin, cx - cos * cx - sin * cy], [-sin, cos, cy + sin * cx - cos * cy]],
        dtype=np.float64,
    )


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine that applies `inner` first, then `outer`."""
    return (np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]]))[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map N x 2 points through a 2x3 affine."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def inside_mask(
    source_shape: tuple[int, ...], affine: np.ndarray, size: tuple[int, int], margin: int = 0
) -> np.ndarray:
    """Which pixels of a (width, height) raster the 2x3 `affine` fills from inside a source of
    `source_shape` (True) rather than from beyond its edge (or from its outer `margin` px)."""
    source = np.zeros(source_shape[:2], np.uint8)
    source[margin : source.shape[0] - margin, margin : source.shape[1] - margin] = 255
    return np.asarray(
        cv2.warpAffine(
            source,
            affine,
            size,
            flags=cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        > 0
    )


def resize_for_model(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale pixels to a model's (width, height) input: Gaussian pyramid halvings while the
    shrink is over 2x, then one bilinear step. That averages every source pixel like area
    resampling does (no aliasing on hair, fabric or a small face in a big frame) at a tenth
    of the cost of area resampling at a fractional ratio. (The segmenter's mask moves by
    under 0.3 % IoU against area resampling on the shared portraits; the face detector keeps
    area resampling, its eye keypoints place the mesh's crop and were steadier with it.)"""
    width, height = size
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        image = cv2.pyrDown(image)
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR))
