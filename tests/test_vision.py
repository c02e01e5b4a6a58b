"""Face detection, landmarks and segmentation: real models on real portraits."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    NEGATIVES,
    PLAIN_BACKGROUND,
    SHARED_PORTRAITS,
    portrait_params,
    resolve_portrait,
)
from PIL import Image

from appliance.errors import ApplianceError, ImageError, ImageTooLargeError
from appliance.imaging.decode import decode

MAX_PIXELS = 64_000_000


def load(path: Path) -> np.ndarray:
    return decode(path.read_bytes(), max_pixels=MAX_PIXELS, max_side=1024).pixels


@pytest.mark.parametrize("portrait", portrait_params())
def test_one_face_with_landmarks_inside_it(portrait: str, sample_dir: Path, inference: Any) -> None:
    pixels = load(resolve_portrait(portrait, sample_dir))
    faces = inference.detector.detect(pixels)
    assert len(faces) == 1, [f.score for f in faces]
    face = faces[0]
    assert face.score >= 0.5
    marks = inference.landmarker.landmarks(pixels, face)
    assert marks.presence > 0.9
    for point in (marks.right_eye, marks.left_eye, marks.chin):
        assert face.box.contains(point, margin=0.05 * face.box.height), point
    # The subject's right eye is on the image's left, above the mouth, above the chin.
    assert marks.right_eye[0] < marks.left_eye[0]
    assert max(marks.right_eye[1], marks.left_eye[1]) < marks.mouth_center[1] < marks.chin[1]
    # Detector and mesh agree on where the eyes are (within a fifth of the eye distance).
    assert math.dist(face.right_eye, marks.right_eye) < 0.2 * marks.eye_distance
    assert math.dist(face.left_eye, marks.left_eye) < 0.2 * marks.eye_distance
    # Portraits: looking at the camera, eyes open, head roughly level.
    assert abs(marks.roll) < 10 and abs(marks.yaw) < 20 and abs(marks.pitch) < 20
    assert marks.right_eye_openness > 0.15 and marks.left_eye_openness > 0.15


@pytest.mark.parametrize("portrait", portrait_params())
def test_mask_covers_the_face_and_not_plain_corners(
    portrait: str, sample_dir: Path, inference: Any
) -> None:
    path = resolve_portrait(portrait, sample_dir)
    pixels = load(path)
    face = inference.detector.detect(pixels)[0]
    mask = inference.segmenter.segment(pixels)
    assert mask.mask.shape == (256, 256) and mask.mask.dtype == np.float32
    b = face.box
    assert mask.coverage(int(b.x0), int(b.y0), int(b.x1), int(b.y1)) > 0.85
    if path.name in PLAIN_BACKGROUND:
        h, w = pixels.shape[:2]
        cw, ch = w // 10, h // 10
        for x, y in ((0, 0), (w - cw, 0)):
            assert mask.coverage(x, y, x + cw, y + ch) < 0.05, (x, y)


def test_refined_mask_follows_edges_at_full_resolution(sample_dir: Path, inference: Any) -> None:
    pixels = load(sample_dir / "astronaut.png")
    mask = inference.segmenter.segment(pixels)
    coarse = mask.at_source_size()
    refined = inference.segmenter.refine(mask, pixels)
    assert refined.shape == pixels.shape[:2]
    assert float(refined.min()) >= 0.0 and float(refined.max()) <= 1.0
    # Same subject: the two masks agree almost everywhere...
    agree = ((refined >= 0.5) == (coarse >= 0.5)).mean()
    assert agree > 0.95
    # ...and the refined one is sharper: fewer pixels left undecided between 0.2 and 0.8.
    undecided = lambda m: float(((m > 0.2) & (m < 0.8)).mean())  # noqa: E731
    assert undecided(refined) < undecided(coarse)


def test_refine_onto_a_scaled_crop(sample_dir: Path, inference: Any) -> None:
    pixels = load(sample_dir / "astronaut.png")
    mask = inference.segmenter.segment(pixels)
    face = inference.detector.detect(pixels)[0]
    x0, y0 = int(face.box.x0), int(face.box.y0)
    crop = np.ascontiguousarray(pixels[y0 : y0 + 120, x0 : x0 + 100])
    big = np.ascontiguousarray(np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1))
    affine = np.array([[2.0, 0, -2.0 * x0], [0, 2.0, -2.0 * y0]])
    refined = inference.segmenter.refine(mask, big, affine)
    assert refined.shape == big.shape[:2]
    assert float((refined[60:180, 40:160] > 0.5).mean()) > 0.9  # the face itself


@pytest.mark.parametrize("name", NEGATIVES)
def test_no_face_in_negatives(name: str, sample_dir: Path, inference: Any) -> None:
    local = {"negative-cat.png": "chelsea.png", "negative-coffee.png": "coffee.png"}[name]
    paths = [sample_dir / local]
    if SHARED_PORTRAITS.is_dir():
        paths.append(SHARED_PORTRAITS / name)
    for path in paths:
        pixels = load(path)
        assert inference.detector.detect(pixels) == []
        assert inference.far_detector.detect(pixels) == []


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((100, 100), np.uint8),
        np.zeros((100, 100, 4), np.uint8),
        np.zeros((100, 100, 3), np.float32),
        np.zeros((0, 0, 3), np.uint8),
        b"\xff\xd8\xff garbage",
        [[1, 2, 3]],
    ],
    ids=["grey", "rgba", "float", "empty", "bytes", "list"],
)
def test_bad_pixels_raise_appliance_error(bad: object, inference: Any) -> None:
    with pytest.raises(ImageError):
        inference.detector.detect(bad)
    with pytest.raises(ImageError):
        inference.segmenter.segment(bad)


def _jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 40)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"", "empty"),
        (b"hello, this is text with a .jpg name", "not an image"),
        (_jpeg()[:400], "truncated or corrupt"),
    ],
    ids=["empty", "text", "truncated"],
)
def test_bad_bytes_are_refused_with_a_reason(data: bytes, expected: str) -> None:
    with pytest.raises(ImageError, match=expected) as info:
        decode(data, max_pixels=MAX_PIXELS)
    assert isinstance(info.value, ApplianceError)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("1", (30000, 30000)).save(buffer, "PNG")  # 900 MP of zeros, a few hundred KB
    with pytest.raises(ImageTooLargeError, match="900 MP, over the limit of 64 MP"):
        decode(buffer.getvalue(), max_pixels=MAX_PIXELS)


def test_reduced_decode_uses_dct_scaling_and_exif_orientation() -> None:
    image = Image.new("RGB", (4000, 3000), (10, 200, 30))
    image.paste((250, 0, 0), (0, 0, 400, 300))  # a red block top left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    decoded = decode(buffer.getvalue(), max_pixels=MAX_PIXELS, max_side=1000)
    assert decoded.full_size == (3000, 4000)
    assert decoded.pixels.shape == (1000, 750, 3)
    # After rotating clockwise, the top-left block sits at the top right.
    top_right = decoded.pixels[5:40, -40:-5].mean(axis=(0, 1))
    assert top_right[0] > 200 and top_right[1] < 60


def test_over_the_configured_limit_names_the_size() -> None:
    buffer = io.BytesIO()
    Image.new("1", (10000, 7000)).save(buffer, "PNG")  # 70 MP: under Pillow's own limit
    with pytest.raises(ImageTooLargeError, match=r"10000x7000 \(70 MP\), over the limit of 64 MP"):
        decode(buffer.getvalue(), max_pixels=MAX_PIXELS)
