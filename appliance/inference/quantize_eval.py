"""Measuring int8 models against float ones on real portraits: the data for the build.

Calibration inputs are made exactly as the appliance's wrappers make them (the detector's own
letterbox, the mesh's face crops for both landmark passes, the segmenter's stretch), from the
calibration portraits and deterministic variations of them. The accuracy gate runs the float
and the int8 model through the same wrappers on held-out portraits (as taken and mirrored) and
keeps the worst value of each measure, and runs the whole ID-photo pipeline with the int8 model
swapped in. Thresholds live in `variants`; this module is used only by the build.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.config import Config, InferenceConfig
from appliance.errors import ApplianceError, SubjectCutError
from appliance.imaging.decode import decode
from appliance.inference.detector import FULL_RANGE, SHORT_RANGE, FaceDetector
from appliance.inference.landmarks import FaceLandmarker, face_crop_affine
from appliance.inference.registry import get_model
from appliance.inference.runtime import TFLiteModel, load_backend, select_accelerator
from appliance.inference.segmenter import PortraitSegmenter
from appliance.inference.service import InferenceService
from appliance.inference.variants import (
    BOX_IOU_MIN,
    ID_GEOMETRY_MAX_PX,
    KEYPOINT_ERROR_MAX_PCT,
    LANDMARK_ERROR_MAX_PCT,
    MASK_IOU_MIN,
    GateCheck,
)

AUGMENTATIONS = ("as is", "mirrored", "centre 70 %", "zoomed out 50 %", "exposure x0.6", "x1.3")
ID_METRIC = "ID photo crown/chin/eye line shift"
MIN_PERSON_SHARE = 0.02  # of the frame, for a mask to be compared
Labelled = Iterable[tuple[str, np.ndarray]]  # (image label, RGB pixels)


@dataclass(frozen=True)
class Portrait:
    """A calibration or held-out photo: bytes, name, hash, and the pixels the models see."""

    name: str
    sha256: str
    data: bytes
    pixels: np.ndarray

    @classmethod
    def load(cls, path: Path) -> Portrait:
        data = path.read_bytes()
        pixels = decode(data, max_pixels=64_000_000, max_side=1024).pixels  # the analysis size
        return cls(path.name, hashlib.sha256(data).hexdigest(), data, pixels)


# --- the models as the wrappers use them -----------------------------------------------------


@dataclass(frozen=True)
class Runner:
    """Loads model files into the appliance's own wrappers, on XNNPACK."""

    models_dir: Path
    num_threads: int

    def model(self, path: Path, name: str) -> TFLiteModel:
        backend, spec = load_backend(), get_model(name)
        return TFLiteModel(
            path,
            backend,
            select_accelerator("cpu", backend),
            num_threads=self.num_threads,
            input_range=(spec.input_min, spec.input_max),
        )

    @functools.cached_property
    def reference(self) -> InferenceService:
        """Every model in float: what the int8 models are measured against."""
        return InferenceService.from_config(self.config, variant="float")

    @property
    def config(self) -> InferenceConfig:
        return InferenceConfig(
            models_dir=self.models_dir, accelerator="cpu", num_threads=self.num_threads
        )

    def service(self, swap: dict[str, Path] | None = None) -> InferenceService:
        """The float service, with the files in `swap` (model name -> path) put in."""
        base, config, swap = self.reference, self.config, swap or {}
        if not swap:
            return base

        def pick(name: str, current: TFLiteModel) -> TFLiteModel:
            return self.model(swap[name], name) if name in swap else current

        short = pick("face_detection_short_range", base.detector.model)
        far = pick("face_detection_full_range", base.far_detector.model)
        return dataclasses.replace(
            base,
            detector=FaceDetector(
                short, SHORT_RANGE, min_score=config.min_face_score, nms_iou=config.nms_iou
            ),
            far_detector=FaceDetector(far, FULL_RANGE, nms_iou=config.nms_iou),
            landmarker=FaceLandmarker(pick("face_landmark", base.landmarker.model)),
            segmenter=PortraitSegmenter(pick("selfie_segmentation", base.segmenter.model)),
            variants={},
        )


def augmented(pixels: np.ndarray) -> Iterator[np.ndarray]:
    """The photo and deterministic variations of it, in `AUGMENTATIONS` order."""
    height, width = pixels.shape[:2]
    yield pixels
    yield np.ascontiguousarray(pixels[:, ::-1])
    dy, dx = round(height * 0.15), round(width * 0.15)
    yield np.ascontiguousarray(pixels[dy : height - dy, dx : width - dx])
    canvas = np.empty_like(pixels)
    canvas[:] = pixels.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    small = cv2.resize(pixels, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    canvas[height // 4 : height // 4 + small.shape[0], width // 4 : width // 4 + small.shape[1]] = (
        small
    )
    yield canvas
    for gain in (0.6, 1.3):
        yield np.clip(pixels.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def model_inputs(name: str, image: np.ndarray, reference: InferenceService) -> list[np.ndarray]:
    """The uint8 input(s) the appliance's wrapper feeds model `name` for `image`."""
    if name.startswith("face_detection"):
        detector = reference.detector if "short" in name else reference.far_detector
        return [detector._letterbox(image)[0]]  # the wrapper's own letterbox, not a copy
    if name.startswith("selfie_segmentation"):
        width, height = (256, 144) if name.endswith("landscape") else (256, 256)
        return [cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)]
    crops = []
    marks = reference.landmarker
    for face in reference.detector.detect(image)[:1]:
        first = marks.landmarks(image, face)
        for eyes in (None, (first.right_eye, first.left_eye)):  # both passes' crops
            affine = face_crop_affine(face, marks.size, eyes)
            crops.append(cv2.warpAffine(image, affine, (marks.size, marks.size)))
    return crops


def calibration_samples(
    name: str, portraits: Sequence[Portrait], reference: InferenceService
) -> list[np.ndarray]:
    """Float32 samples in the model's input range."""
    spec = get_model(name)
    gain, low = np.float32((spec.input_max - spec.input_min) / 255.0), np.float32(spec.input_min)
    return [
        pixels.astype(np.float32) * gain + low
        for portrait in portraits
        for image in augmented(portrait.pixels)
        for pixels in model_inputs(name, image, reference)
    ]


# --- the gate --------------------------------------------------------------------------------


def worst_of(
    metric: str, values: list[tuple[float, str]], limit: float, higher: bool, unit: str = ""
) -> GateCheck:
    """The check for the worst of (value, image label) pairs."""
    if not values:
        return GateCheck(metric, 0.0, limit, higher, "", 0, unit)
    value, image = (min if higher else max)(values, key=lambda v: v[0])
    return GateCheck(metric, round(value, 4), limit, higher, image, len(values), unit)


def detector_gate(
    float_det: FaceDetector, int8_det: FaceDetector, images: Labelled
) -> list[GateCheck]:
    """Box IoU and worst keypoint shift of the int8 face matching the float's best face."""
    ious: list[tuple[float, str]] = []
    errors: list[tuple[float, str]] = []
    for label, image in images:
        reference = float_det.detect(image)
        if not reference:
            continue  # no face to compare with
        face, found = reference[0], int8_det.detect(image)
        if not found:
            ious.append((0.0, f"{label}: int8 found no face"))
            errors.append((100.0, f"{label}: int8 found no face"))
            continue
        match = max(found, key=lambda f: f.box.iou(face.box))
        shift = max(
            float(np.hypot(a[0] - b[0], a[1] - b[1]))
            for a, b in zip(face.keypoints, match.keypoints, strict=True)
        )
        ious.append((match.box.iou(face.box), label))
        errors.append((100.0 * shift / max(face.box.width, face.box.height), label))
    return [
        worst_of("face box IoU", ious, BOX_IOU_MIN, True),
        worst_of("keypoint error", errors, KEYPOINT_ERROR_MAX_PCT, False, " % of box"),
    ]


def landmark_gate(
    detector: FaceDetector,
    float_marks: FaceLandmarker,
    int8_marks: FaceLandmarker,
    images: Labelled,
) -> list[GateCheck]:
    """Mean 2-D error over the mesh, on the same face crop for both."""
    errors: list[tuple[float, str]] = []
    for label, image in images:
        for face in detector.detect(image)[:1]:
            want, got = float_marks.landmarks(image, face), int8_marks.landmarks(image, face)
            mean = float(np.linalg.norm(want.points[:, :2] - got.points[:, :2], axis=1).mean())
            errors.append((100.0 * mean / want.eye_distance, label))
    unit = " % of inter-ocular"
    return [worst_of("landmark mean error", errors, LANDMARK_ERROR_MAX_PCT, False, unit)]


def mask_gate(
    float_seg: PortraitSegmenter, int8_seg: PortraitSegmenter, images: Labelled
) -> list[GateCheck]:
    """IoU of the person masks (cut at 0.5) at the model's own resolution."""
    ious: list[tuple[float, str]] = []
    for label, image in images:
        want = float_seg.segment(image).mask >= 0.5
        if want.mean() < MIN_PERSON_SHARE:
            continue  # no person in the frame: the IoU of two near-empty masks means nothing
        got = int8_seg.segment(image).mask >= 0.5
        union = np.logical_or(want, got).sum()
        ious.append((float(np.logical_and(want, got).sum() / union), label))
    return [worst_of("mask IoU", ious, MASK_IOU_MIN, True)]


def gate_images(portraits: Sequence[Portrait]) -> Labelled:
    for portrait in portraits:
        yield portrait.name, portrait.pixels
        yield f"{portrait.name} mirrored", np.ascontiguousarray(portrait.pixels[:, ::-1])


def model_gate(
    name: str,
    float_model: TFLiteModel,
    int8_model: TFLiteModel,
    runner: Runner,
    holdout: Sequence[Portrait],
) -> list[GateCheck]:
    """The model-level checks of `name`'s int8 model against its float model."""
    images = gate_images(holdout)
    if name.startswith("face_detection"):
        layout = SHORT_RANGE if "short" in name else FULL_RANGE
        return detector_gate(
            FaceDetector(float_model, layout), FaceDetector(int8_model, layout), images
        )
    if name == "face_landmark":
        detector = runner.service().detector
        return landmark_gate(
            detector, FaceLandmarker(float_model), FaceLandmarker(int8_model), images
        )
    return mask_gate(PortraitSegmenter(float_model), PortraitSegmenter(int8_model), images)


def id_geometry(service: InferenceService, data: bytes, spec_id: str) -> dict[str, float]:
    """Crown, chin and eye line (output px) of the ID photo the pipeline makes of `data`."""
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest

    pipeline = IdPhotoPipeline(service, Config(inference=InferenceConfig(accelerator="cpu")))
    geometry = pipeline.process(data, ProductRequest(spec_id=spec_id)).report["geometry"]
    return {k: float(geometry[k]) for k in ("crown_y", "chin_y", "eye_line_y") if k in geometry}


def framed(data: bytes) -> bytes:
    """The photo on a larger canvas: room above the hair and beside it in the border's median
    colour, and the clothes continued downwards. Close-up portraits (the corpus's are cropped at
    the crown) become photos the ID pipeline accepts; float and int8 see the same bytes."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ApplianceError("the held-out photo does not decode")
    height = image.shape[0]
    top, side = round(0.4 * height), round(0.2 * height)
    border = np.concatenate([image[0], image[:, 0], image[:, -1]])
    colour = [float(v) for v in np.median(border, axis=0)]
    image = cv2.copyMakeBorder(image, 0, side, 0, 0, cv2.BORDER_REPLICATE)
    image = cv2.copyMakeBorder(image, top, 0, side, side, cv2.BORDER_CONSTANT, value=colour)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ApplianceError("the framed held-out photo does not encode")
    return encoded.tobytes()


def id_subjects(
    service: InferenceService, holdout: Sequence[Portrait], spec_id: str
) -> tuple[dict[str, dict[str, float]], list[Portrait], int]:
    """The float pipeline's ID geometry per held-out portrait, the portraits as the ID check
    feeds them, and how many needed `framed`: a photo the float pipeline refuses as cut off is
    checked on its framed copy; one it still refuses (two faces, ...) is not compared."""
    reference: dict[str, dict[str, float]] = {}
    fed: list[Portrait] = []
    count = 0
    for portrait in holdout:
        try:
            reference[portrait.name] = id_geometry(service, portrait.data, spec_id)
        except SubjectCutError:
            copy = dataclasses.replace(portrait, data=framed(portrait.data))
            try:
                reference[portrait.name] = id_geometry(service, copy.data, spec_id)
            except ApplianceError:
                fed.append(portrait)
                continue
            fed.append(copy)
            count += 1
            continue
        except ApplianceError:
            pass
        fed.append(portrait)
    return reference, fed, count


def id_gate(
    reference: dict[str, dict[str, float]],
    candidate: InferenceService,
    holdout: Sequence[Portrait],
    spec_id: str,
    metric: str = ID_METRIC,
) -> GateCheck:
    """Worst crown/chin/eye-line shift against the float pipeline's ID photos."""
    shifts: list[tuple[float, str]] = []
    for portrait in holdout:
        want = reference.get(portrait.name)
        if not want:
            continue  # the float pipeline made no ID photo of it: nothing to compare
        try:
            got = id_geometry(candidate, portrait.data, spec_id)
        except ApplianceError as exc:
            shifts.append((999.0, f"{portrait.name}: refused ({exc})"))
            continue
        if set(got) != set(want):
            shifts.append((999.0, f"{portrait.name}: no face in the result"))
            continue
        key = max(want, key=lambda k: abs(want[k] - got[k]))
        shifts.append((abs(want[key] - got[key]), f"{portrait.name} {key}"))
    return worst_of(metric, shifts, ID_GEOMETRY_MAX_PX, False, " px")
