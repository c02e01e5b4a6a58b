"""Builds the runtime, the accelerator and every model wrapper from the inference config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from appliance.config import InferenceConfig
from appliance.inference.detector import FULL_RANGE, SHORT_RANGE, FaceDetector
from appliance.inference.landmarks import FaceLandmarker
from appliance.inference.placement import placement
from appliance.inference.registry import get_model, verified_model_path
from appliance.inference.runtime import (
    AcceleratorChoice,
    InterpreterBackend,
    TFLiteModel,
    load_backend,
    select_accelerator,
)
from appliance.inference.segmenter import PortraitSegmenter
from appliance.inference.variants import VariantChoice, select_model


@dataclass(frozen=True)
class InferenceService:
    """Every model the appliance runs, loaded once and shared (each run is thread-safe)."""

    backend: InterpreterBackend
    accelerator: AcceleratorChoice
    detector: FaceDetector
    far_detector: FaceDetector  # full range: small faces in a wide frame
    landmarker: FaceLandmarker
    segmenter: PortraitSegmenter
    # Which variant (float / int8) each model runs and why; see `variants`.
    variants: dict[str, VariantChoice] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, config: InferenceConfig, *, variant: str | None = None
    ) -> InferenceService:
        """`variant` overrides the config's `inference.variant` ("auto", "float" or "int8")."""
        backend = load_backend()
        accelerator = select_accelerator(config.accelerator, backend)
        setting = variant or config.variant
        choices: dict[str, VariantChoice] = {}

        def load(name: str) -> TFLiteModel:
            spec = get_model(name)

            def open_file(path: Path) -> TFLiteModel:
                return TFLiteModel(
                    path,
                    backend,
                    accelerator,
                    num_threads=config.num_threads,
                    input_range=(spec.input_min, spec.input_max),
                )

            float_path = verified_model_path(name, config.models_dir)
            model, choice = select_model(
                name, float_path, setting, open_file, edgetpu=accelerator.name == "edgetpu"
            )
            choices[name] = dataclasses.replace(choice, runs_on=placement(model))
            return model

        return cls(
            backend=backend,
            accelerator=accelerator,
            detector=FaceDetector(
                load("face_detection_short_range"),
                SHORT_RANGE,
                min_score=config.min_face_score,
                nms_iou=config.nms_iou,
            ),
            far_detector=FaceDetector(
                load("face_detection_full_range"), FULL_RANGE, nms_iou=config.nms_iou
            ),
            landmarker=FaceLandmarker(load("face_landmark")),
            segmenter=PortraitSegmenter(load("selfie_segmentation")),
            variants=choices,
        )

    def forget(self) -> None:
        """At a wipe: no model keeps activations of the session's photos (TFLiteModel.forget)."""
        for model in self.models().values():
            model.forget()

    def models(self) -> dict[str, TFLiteModel]:
        return {
            "face_detection_short_range": self.detector.model,
            "face_detection_full_range": self.far_detector.model,
            "face_landmark": self.landmarker.model,
            "selfie_segmentation": self.segmenter.model,
        }
