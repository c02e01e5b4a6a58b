"""Compliance checks react to the faults they name (real models, altered real portraits)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from appliance.config import Config
from appliance.idphoto.checks import TEXTS
from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest


@pytest.fixture(scope="module")
def pipeline(inference: Any, config: Config) -> IdPhotoPipeline:
    return IdPhotoPipeline(inference, config)


def checks_for(pipeline: IdPhotoPipeline, image: Image.Image) -> dict[str, dict[str, Any]]:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    report = pipeline.process(buffer.getvalue(), ProductRequest(spec_id="icao-35x45")).report
    return {check["name"]: check for check in report["checks"]}


def test_every_check_is_reported_with_value_and_limit(
    sample_dir: Path, pipeline: IdPhotoPipeline
) -> None:
    checks = checks_for(pipeline, Image.open(sample_dir / "astronaut.png").convert("RGB"))
    expected = {
        "single face",
        "head height",
        "eye line",
        "centring",
        "roll",
        "yaw",
        "pitch",
        "eyes open",
        "mouth closed",
        "exposure",
        "sharpness",
        "background",
        "resolution",
        "glasses",
        "framing",
    }
    assert expected <= set(checks)
    for check in checks.values():
        assert check["status"] in ("pass", "warn", "fail")
        assert check["limit"] and check["message"]
        # The English message is its template filled in; the pages translate the template.
        assert check["text"] in TEXTS.values()
        assert check["message"] == check["text"] % check["values"]
    # The astronaut smiles with her teeth showing: the mouth check says so.
    assert checks["mouth closed"]["status"] != "pass"
    assert checks["sharpness"]["status"] == "pass"


def test_blur_fails_sharpness(sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    blurred = (
        Image.open(sample_dir / "astronaut.png").convert("RGB").filter(ImageFilter.GaussianBlur(3))
    )
    checks = checks_for(pipeline, blurred)
    assert checks["sharpness"]["status"] == "fail", checks["sharpness"]


def test_overexposure_is_flagged(sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    pixels = np.asarray(Image.open(sample_dir / "astronaut.png").convert("RGB")).astype(np.float32)
    bright = np.clip(pixels * 1.9 + 40, 0, 255).astype(np.uint8)
    checks = checks_for(pipeline, Image.fromarray(bright))
    assert checks["exposure"]["status"] != "pass", checks["exposure"]


def test_glasses_frames_are_hinted(
    sample_dir: Path, pipeline: IdPhotoPipeline, inference: Any
) -> None:
    pixels = np.ascontiguousarray(
        np.asarray(Image.open(sample_dir / "astronaut.png").convert("RGB"))
    )
    face = inference.detector.detect(pixels)[0]
    marks = inference.landmarker.landmarks(pixels, face)
    (rx, ry), (lx, ly) = marks.right_eye, marks.left_eye
    radius = int(marks.eye_distance * 0.33)
    drawn = pixels.copy()
    for x, y in ((rx, ry), (lx, ly)):
        cv2.ellipse(
            drawn, (int(x), int(y)), (radius, int(radius * 0.75)), 0, 0, 360, (15, 15, 15), 2
        )
    cv2.line(drawn, (int(rx + radius), int(ry)), (int(lx - radius), int(ly)), (15, 15, 15), 2)
    checks = checks_for(pipeline, Image.fromarray(drawn))
    assert checks["glasses"]["status"] == "warn", checks["glasses"]
    plain = checks_for(pipeline, Image.fromarray(pixels))
    assert plain["glasses"]["status"] == "pass", plain["glasses"]
