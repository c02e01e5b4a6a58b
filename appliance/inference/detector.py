"""Face detection with BlazeFace (MediaPipe): SSD anchors, box and 6 keypoints, weighted NMS.

The image is letterboxed (aspect kept, black bars) to the model's square input, the raw
regressors are decoded against the anchor grid, overlapping detections are merged by weighted
non-maximum suppression, and every face comes back in source-image pixels with its score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.imaging.geometry import Box, Point, as_rgb_image
from appliance.inference.runtime import TFLiteModel

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear", "left_ear")


@dataclass(frozen=True)
class AnchorLayout:
    """SSD anchor grid: (stride, anchors per cell) per feature map, as the model was trained."""

    layers: tuple[tuple[int, int], ...]
    min_score: float


# The anchor layouts MediaPipe's graphs use for these two models.
SHORT_RANGE = AnchorLayout(layers=((8, 2), (16, 6)), min_score=0.5)
FULL_RANGE = AnchorLayout(layers=((4, 1),), min_score=0.6)


@dataclass(frozen=True)
class Face:
    """One detected face in source-image pixels. Eye names are the subject's own."""

    score: float
    box: Box
    keypoints: tuple[Point, ...]  # in KEYPOINT_NAMES order

    @property
    def right_eye(self) -> Point:
        return self.keypoints[0]

    @property
    def left_eye(self) -> Point:
        return self.keypoints[1]

    @property
    def nose_tip(self) -> Point:
        return self.keypoints[2]

    @property
    def mouth_center(self) -> Point:
        return self.keypoints[3]

    @property
    def eye_distance(self) -> float:
        return math.dist(self.right_eye, self.left_eye)

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times the size (e.g. reduced decode -> full)."""
        return Face(
            self.score,
            self.box.scaled(factor),
            tuple((x * factor, y * factor) for x, y in self.keypoints),
        )

    def mapped(self, affine: np.ndarray) -> Face:
        """The same face after a similarity transform (2x3: scale, rotation, shift) of its
        image: the box keeps its centre and grows with the scale, keypoints move with it."""
        scale = float(np.hypot(affine[0, 0], affine[1, 0]))
        cx, cy = self.box.center
        mx, my = (float(v) for v in affine @ np.array([cx, cy, 1.0]))
        half_w, half_h = self.box.width * scale / 2.0, self.box.height * scale / 2.0
        points = affine @ np.vstack(
            [np.array(self.keypoints, dtype=np.float64).T, np.ones(len(self.keypoints))]
        )
        return Face(
            self.score,
            Box(mx - half_w, my - half_h, mx + half_w, my + half_h),
            tuple((float(x), float(y)) for x, y in points.T),
        )


def make_anchors(input_size: int, layout: AnchorLayout) -> np.ndarray:
    """Anchor centres (N x 2, normalised); anchor width and height are fixed at 1."""
    centres = []
    for stride, per_cell in layout.layers:
        cells = math.ceil(input_size / stride)
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(grid, grid, indexing="ij")
        cell = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell, per_cell, axis=0))
    return np.concatenate(centres, axis=0)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def weighted_nms(
    boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Merge overlapping detections into a score-weighted average (MediaPipe's WEIGHTED NMS)."""
    order = np.argsort(-scores)
    remaining = order
    merged = []
    while remaining.size:
        top = remaining[0]
        overlaps = _iou(boxes[top], boxes[remaining]) > iou_threshold
        group = remaining[overlaps]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(axis=0) / weights.sum()
        kps = (keypoints[group].reshape(len(group), -1) * weights).sum(axis=0) / weights.sum()
        merged.append((float(scores[top]), box, kps.reshape(-1, 2)))
        remaining = remaining[~overlaps]
    return merged


class FaceDetector:
    """BlazeFace on any RGB image; returns every face above the score threshold."""

    def __init__(
        self,
        model: TFLiteModel,
        layout: AnchorLayout = SHORT_RANGE,
        *,
        min_score: float | None = None,
        nms_iou: float = 0.3,
    ) -> None:
        width, height = model.input_size
        if width != height:
            raise ValueError(f"BlazeFace takes a square input, got {width}x{height}")
        self.model = model
        self.size = width
        self.anchors = make_anchors(width, layout)
        self.min_score = layout.min_score if min_score is None else min_score
        self.nms_iou = nms_iou

    def _letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        height, width = image.shape[:2]
        scale = self.size / max(width, height)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        off_x, off_y = (self.size - new_w) // 2, (self.size - new_h) // 2
        canvas[off_y : off_y + new_h, off_x : off_x + new_w] = resized
        return canvas, scale, float(off_x), float(off_y)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in `image` (H x W x 3 uint8 RGB), best first, in its pixel coordinates."""
        image = as_rgb_image(image)
        canvas, scale, off_x, off_y = self._letterbox(image)
        outputs = self.model.run(canvas)
        regressors = self.model.output_by_shape(outputs, 16)[0]
        logits = self.model.output_by_shape(outputs, 1)[0, :, 0]
        if regressors.shape[0] != self.anchors.shape[0]:
            raise ValueError(
                f"model has {regressors.shape[0]} anchors, layout gives {self.anchors.shape[0]}"
            )
        # MediaPipe clips the logits at +-100; float64 keeps exp() of that finite.
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -100.0, 100.0)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw, anchors, scores = regressors[keep], self.anchors[keep], scores[keep]
        # Offsets are in input pixels relative to the anchor centre (anchor size is fixed at 1).
        centre = raw[:, 0:2] / self.size + anchors
        half = raw[:, 2:4] / self.size / 2.0
        boxes = np.concatenate([centre - half, centre + half], axis=1)
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) / self.size + anchors[:, None, :]
        faces = []
        for score, box, kps in weighted_nms(boxes, keypoints, scores, self.nms_iou):

            def to_source(x: float, y: float) -> Point:
                return (
                    float((x * self.size - off_x) / scale),
                    float((y * self.size - off_y) / scale),
                )

            x0, y0 = to_source(box[0], box[1])
            x1, y1 = to_source(box[2], box[3])
            faces.append(Face(score, Box(x0, y0, x1, y1), tuple(to_source(x, y) for x, y in kps)))
        return faces
