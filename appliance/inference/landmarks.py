"""Face landmarks: MediaPipe's 468-point face mesh on a crop around a detected face.

The crop follows MediaPipe's own recipe: a square 1.5 times the detection's longest side,
centred on the detection and rotated so the eyes are level. The mesh comes back in
source-image pixels, with the measures the ID-photo checks need: eye centres and openness,
chin, mouth, and roll / yaw / pitch estimates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.errors import ImageError
from appliance.imaging.geometry import Point, apply_affine, as_rgb_image, invert_affine
from appliance.inference.detector import Face
from appliance.inference.runtime import TFLiteModel

# Mesh indices (the subject's right eye appears on the image's left).
RIGHT_EYE_RING = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_RING = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_CORNERS, RIGHT_EYE_LIDS = (33, 133), (159, 145)
LEFT_EYE_CORNERS, LEFT_EYE_LIDS = (263, 362), (386, 374)
MOUTH_CORNERS, INNER_LIPS = (61, 291), (13, 14)
CHIN, FOREHEAD, NOSE_TIP = 152, 10, 1
RIGHT_CHEEK, LEFT_CHEEK = 234, 454

CROP_SCALE = 1.5
# The presence score the mesh must give a crop for it to count as a face (real faces score
# near 1; fur, fabric and logos a detector took for faces score near 0).
MIN_PRESENCE = 0.5
# The mesh's forehead-to-chin line leans back by about this much on a level, frontal face
# (measured on the frontal ID portraits in the shared test set); pitch is reported relative to it.
PITCH_NEUTRAL_DEG = -11.0


@dataclass(frozen=True)
class FaceLandmarks:
    """The face mesh in source-image pixels (z in the same pixel units, relative depth)."""

    points: np.ndarray  # 468 x 3, float32
    presence: float  # the model's confidence that the crop holds a face, 0..1

    def point(self, index: int) -> Point:
        x, y = self.points[index, :2]
        return (float(x), float(y))

    def _mean(self, ring: tuple[int, ...]) -> Point:
        x, y = self.points[list(ring), :2].mean(axis=0)
        return (float(x), float(y))

    @property
    def right_eye(self) -> Point:
        return self._mean(RIGHT_EYE_RING)

    @property
    def left_eye(self) -> Point:
        return self._mean(LEFT_EYE_RING)

    @property
    def eye_mid(self) -> Point:
        (rx, ry), (lx, ly) = self.right_eye, self.left_eye
        return ((rx + lx) / 2.0, (ry + ly) / 2.0)

    @property
    def eye_distance(self) -> float:
        return math.dist(self.right_eye, self.left_eye)

    @property
    def chin(self) -> Point:
        return self.point(CHIN)

    @property
    def forehead(self) -> Point:
        """Top of the face mesh (the hairline region), not the crown of the head."""
        return self.point(FOREHEAD)

    @property
    def mouth_center(self) -> Point:
        return self._mean(INNER_LIPS)

    def _ratio(self, pair: tuple[int, int], span: tuple[int, int]) -> float:
        width = math.dist(self.point(span[0]), self.point(span[1]))
        return math.dist(self.point(pair[0]), self.point(pair[1])) / width if width else 0.0

    @property
    def right_eye_openness(self) -> float:
        """Lid gap over eye width: about 0.25-0.35 open, under 0.1 closed."""
        return self._ratio(RIGHT_EYE_LIDS, RIGHT_EYE_CORNERS)

    @property
    def left_eye_openness(self) -> float:
        return self._ratio(LEFT_EYE_LIDS, LEFT_EYE_CORNERS)

    @property
    def mouth_openness(self) -> float:
        """Inner-lip gap over mouth width: near 0 closed."""
        return self._ratio(INNER_LIPS, MOUTH_CORNERS)

    @property
    def roll(self) -> float:
        """Degrees the eye line is turned; positive when the subject's left eye is lower."""
        (rx, ry), (lx, ly) = self.right_eye, self.left_eye
        return math.degrees(math.atan2(ly - ry, lx - rx))

    @property
    def yaw(self) -> float:
        """Degrees the head is turned (estimate from cheek depth); 0 faces the camera."""
        right, left = self.points[RIGHT_CHEEK], self.points[LEFT_CHEEK]
        return math.degrees(math.atan2(float(left[2] - right[2]), float(left[0] - right[0])))

    @property
    def pitch(self) -> float:
        """Degrees the head is tilted (estimate from forehead/chin depth); positive is up."""
        top, chin = self.points[FOREHEAD], self.points[CHIN]
        tilt = math.degrees(math.atan2(float(top[2] - chin[2]), float(chin[1] - top[1])))
        return tilt - PITCH_NEUTRAL_DEG


def face_crop_affine(face: Face, size: int, eyes: tuple[Point, Point] | None = None) -> np.ndarray:
    """2x3 affine from source pixels to the model's square crop around `face`, turned so the
    eyes (the detector's, or better ones from an earlier mesh) are level in it."""
    (rx, ry), (lx, ly) = eyes or (face.right_eye, face.left_eye)
    angle = math.atan2(ly - ry, lx - rx)  # turn the crop so the eyes are level in it
    side = max(face.box.width, face.box.height) * CROP_SCALE
    if side <= 1.0:
        raise ImageError("the detected face is too small to measure")
    cx, cy = face.box.center
    scale = size / side
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    # crop = R(-angle) * scale * (p - centre) + size / 2
    return np.array(
        [
            [cos, sin, size / 2.0 - cos * cx - sin * cy],
            [-sin, cos, size / 2.0 + sin * cx - cos * cy],
        ],
        dtype=np.float64,
    )


class FaceLandmarker:
    """Runs the face mesh model on the crop around a detected face."""

    def __init__(self, model: TFLiteModel) -> None:
        width, height = model.input_size
        if width != height:
            raise ValueError(f"the face mesh takes a square input, got {width}x{height}")
        self.model = model
        self.size = width

    def landmarks(self, image: np.ndarray, face: Face, *, passes: int = 1) -> FaceLandmarks:
        """The mesh for `face`; with passes=2 the crop is turned again by the first mesh's own
        eye line, which the model reads more precisely than the detector's keypoints."""
        marks = self._landmarks(as_rgb_image(image), face, None)
        for _ in range(passes - 1):
            marks = self._landmarks(image, face, (marks.right_eye, marks.left_eye))
        return marks

    def realign(self, image: np.ndarray, face: Face, marks: FaceLandmarks) -> FaceLandmarks:
        """A second pass with the crop turned by an earlier mesh's own eye line."""
        return self.with_eyes(image, face, (marks.right_eye, marks.left_eye))

    def with_eyes(self, image: np.ndarray, face: Face, eyes: tuple[Point, Point]) -> FaceLandmarks:
        """One pass with the crop turned so the given (right, left) eye points are level."""
        return self._landmarks(as_rgb_image(image), face, eyes)

    def _landmarks(
        self, image: np.ndarray, face: Face, eyes: tuple[Point, Point] | None
    ) -> FaceLandmarks:
        to_crop = face_crop_affine(face, self.size, eyes)
        crop = cv2.warpAffine(
            image,
            to_crop,
            (self.size, self.size),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0, 0, 0),
        )
        outputs = self.model.run(crop)
        mesh = self.model.output_by_shape(outputs, 1404).reshape(468, 3)
        presence_logit = float(self.model.output_by_shape(outputs, 1).ravel()[0])
        presence = 1.0 / (1.0 + math.exp(-max(-80.0, min(80.0, presence_logit))))
        to_source = invert_affine(to_crop)
        xy = apply_affine(to_source, mesh[:, :2])
        # z is in crop pixels like x and y; bring it to source pixels with the crop's scale.
        z = mesh[:, 2] * math.hypot(to_source[0, 0], to_source[1, 0])
        points = np.column_stack([xy, z]).astype(np.float32)
        return FaceLandmarks(points, presence)
