"""The pixel-level building blocks: JPEG encoding, background replacement, matte refinement,
model-input resampling, and the face and check helpers the ID pipeline builds on."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import get_sampling

from appliance.idphoto.checks import _channel_max
from appliance.idphoto.render import EdgeContinuation
from appliance.imaging.encode import EncodeError, encode_jpeg, encode_jpeg_capped
from appliance.imaging.geometry import Box, resize_for_model
from appliance.imaging.matte import blurred_background, replace_background, solid
from appliance.inference.detector import Face
from appliance.inference.segmenter import guided_filter
from appliance.memory import keep_freed_buffers


def noise_photo(height: int = 120, width: int = 90, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 2)
    return np.ascontiguousarray(smooth)


@pytest.mark.parametrize("dpi", [72, 300, 600, 1200])
@pytest.mark.parametrize(("subsampling", "factors"), [(0, 0), (2, 2)])
def test_jpeg_carries_dpi_and_subsampling_and_nothing_else(
    dpi: int, subsampling: int, factors: int
) -> None:
    pixels = noise_photo()
    data = encode_jpeg(pixels, dpi=dpi, quality=95, subsampling=subsampling)
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    assert image.size == (90, 120)
    assert image.info["dpi"] == (dpi, dpi)
    assert image.info["jfif_unit"] == 1  # dots per inch
    assert get_sampling(image) == factors
    assert not image.getexif()
    assert "icc_profile" not in image.info and "exif" not in image.info
    assert "xmp" not in image.info
    # Colours come back as RGB (not BGR) and close to what was encoded.
    back = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(back - pixels.astype(int)).mean() < 3.0


def test_jpeg_optimize_is_smaller_and_bad_dpi_is_refused() -> None:
    pixels = noise_photo(240, 180)
    plain = encode_jpeg(pixels, dpi=300, quality=90)
    optimized = encode_jpeg(pixels, dpi=300, quality=90, optimize=True)
    assert len(optimized) < len(plain)
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(plain))), np.asarray(Image.open(io.BytesIO(optimized)))
    )
    with pytest.raises(EncodeError, match="70000 dpi"):
        encode_jpeg(pixels, dpi=70000)


def soft_disc(size: int = 400) -> np.ndarray:
    """A matte: 1 inside a disc, 0 outside, a 12 px soft ramp between."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    radius = np.hypot(xx - size / 2, yy - size / 2)
    return np.clip((size * 0.3 + 6 - radius) / 12.0, 0.0, 1.0).astype(np.float32)


def test_background_replacement_leaves_no_halo_of_the_old_colour() -> None:
    alpha = soft_disc()
    subject, old, new = (200, 40, 40), (20, 200, 20), (255, 255, 255)
    observed = (
        alpha[..., None] * np.array(subject, np.float32)
        + (1 - alpha[..., None]) * np.array(old, np.float32)
    ).astype(np.uint8)
    out = replace_background(observed, alpha, new).astype(np.float32)
    edge = (alpha > 0.1) & (alpha < 0.9)
    ideal = alpha[..., None] * np.array(subject, np.float32) + (1 - alpha[..., None]) * np.array(
        new, np.float32
    )
    naive = alpha[..., None] * observed.astype(np.float32) + (1 - alpha[..., None]) * np.array(
        new, np.float32
    )
    # The old green leaks into a plain blend's edge; un-mixing takes it out.
    green_excess = out[..., 1] - (out[..., 0] + out[..., 2]) / 2
    naive_excess = naive[..., 1] - (naive[..., 0] + naive[..., 2]) / 2
    ideal_excess = ideal[..., 1] - (ideal[..., 0] + ideal[..., 2]) / 2
    assert (naive_excess - ideal_excess)[edge].mean() > 20
    assert abs((green_excess - ideal_excess)[edge].mean()) < 5
    assert np.abs(out - ideal)[edge].mean() < 6
    # Where the matte is certain: the photo's own pixels, or exactly the new colour.
    assert np.array_equal(out[alpha >= 0.98], observed[alpha >= 0.98])
    assert np.array_equal(out[alpha <= 0.02], np.broadcast_to(new, out[alpha <= 0.02].shape))


def test_background_can_be_an_image_and_blur_keeps_the_subject_out() -> None:
    alpha = soft_disc()
    pixels = np.zeros((400, 400, 3), np.uint8)
    pixels[alpha > 0.5] = (250, 0, 0)
    pixels[alpha <= 0.5] = (0, 0, 250)
    blurred = blurred_background(pixels, alpha)
    # The red subject does not bleed into the blurred background around it.
    ring = (alpha < 0.05) & (alpha >= 0.0)
    assert blurred[ring][:, 0].max() < 40
    out = replace_background(pixels, alpha, blurred)
    assert out.shape == pixels.shape
    assert np.array_equal(out[alpha >= 0.99], pixels[alpha >= 0.99])


def test_solid_and_channel_max_match_numpy() -> None:
    block = solid(7, 5, (1, 2, 3))
    assert block.shape == (7, 5, 3) and block.dtype == np.uint8
    assert np.array_equal(block, np.broadcast_to(np.array([1, 2, 3], np.uint8), (7, 5, 3)))
    pixels = noise_photo(33, 17)
    assert np.array_equal(_channel_max(pixels), pixels.max(axis=2).ravel())
    assert np.array_equal(_channel_max(pixels[3:20, 2:9]), pixels[3:20, 2:9].max(axis=2).ravel())


def test_fast_guided_filter_matches_the_full_resolution_one() -> None:
    alpha = soft_disc(200)
    guide = np.zeros((200, 200), np.float32)
    guide[alpha > 0.5] = 0.8  # the true edge is sharp in the guide
    coarse = cv2.GaussianBlur(alpha, (0, 0), 4)  # a blurry mask to be snapped onto it
    full = guided_filter(guide, coarse, 6, 1e-3)
    fast = guided_filter(guide, coarse, 6, 1e-3, subsample=2)
    assert fast.shape == full.shape and fast.dtype == np.float32
    assert np.abs(fast - full).mean() < 0.02
    # Both pull the blurry edge towards the guide's: steeper than the input.
    truth = (alpha > 0.5).astype(np.float32)
    assert np.abs(fast - truth).mean() < np.abs(coarse - truth).mean()


def test_model_resize_averages_fine_detail_instead_of_aliasing() -> None:
    stripes = np.zeros((768, 576, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: a pure bilinear shrink by 3 aliases them
    reduced = resize_for_model(stripes, (192, 256))
    assert reduced.shape == (256, 192, 3)
    assert abs(float(reduced.mean()) - 127.5) < 3
    assert float(reduced.std()) < 10
    aliased = cv2.resize(stripes, (192, 256), interpolation=cv2.INTER_LINEAR)
    assert float(aliased.std()) > 50
    # A mild shrink is one bilinear step and keeps the size asked for.
    assert resize_for_model(stripes[:300, :300], (256, 256)).shape == (256, 256, 3)


def test_face_mapped_through_a_similarity() -> None:
    face = Face(
        0.9,
        Box(100, 100, 140, 150),
        ((110, 115), (130, 115), (120, 125), (120, 135), (100, 118), (140, 118)),
    )
    angle = math.radians(10)
    scale = 2.0
    affine = np.array(
        [
            [scale * math.cos(angle), -scale * math.sin(angle), 7.0],
            [scale * math.sin(angle), scale * math.cos(angle), -3.0],
        ]
    )
    moved = face.mapped(affine)
    cx, cy = affine @ np.array([120.0, 125.0, 1.0])
    assert moved.box.center == pytest.approx((cx, cy))
    assert moved.box.width == pytest.approx(80.0) and moved.box.height == pytest.approx(100.0)
    rx, ry = affine @ np.array([110.0, 115.0, 1.0])
    assert moved.right_eye == pytest.approx((rx, ry))
    assert moved.eye_distance == pytest.approx(face.eye_distance * scale)
    assert moved.score == face.score


def test_freed_buffers_setting_is_applied_once() -> None:
    first = keep_freed_buffers()
    assert keep_freed_buffers() is first
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert first is True


def test_idle_trimmer_trims_once_per_idle_period() -> None:
    import platform

    from appliance.memory import IdleTrimmer, mark_busy

    glibc = platform.libc_ver()[0] == "glibc"
    mark_busy()
    waiting = IdleTrimmer(idle_s=3600.0)
    assert waiting.check() is False  # used a moment ago: not idle yet
    trimmer = IdleTrimmer(idle_s=0.0)
    assert trimmer.check() is glibc  # idle (threshold 0): memory given back
    assert trimmer.check() is False  # nothing used since the last trim
    mark_busy()
    assert trimmer.check() is glibc


def test_a_plain_photo_under_the_minimum_is_encoded_finer_not_padded() -> None:
    rng = np.random.default_rng(1)
    pixels = np.full((200, 200, 3), 200, np.uint8)
    pixels[50:150, 50:150] = rng.integers(0, 256, (100, 100, 3), dtype=np.uint8)
    at_95 = len(encode_jpeg(pixels, dpi=300, quality=95, optimize=True))
    encoded = encode_jpeg_capped(pixels, dpi=300, max_bytes=240_000, min_bytes=at_95 + 2000)
    assert encoded.quality > 95 and len(encoded.data) >= at_95 + 2000
    with pytest.raises(EncodeError, match="under the"):
        encode_jpeg_capped(pixels, dpi=300, max_bytes=240_000, min_bytes=at_95 * 3)


def test_the_frame_past_the_photo_edge_continues_colour_and_matte_from_inside_it() -> None:
    """A photo 100 rows tall whose last row is a light codec artefact, framed 40 rows past its
    bottom edge: the rows beyond repeat row 95 (inside the artefact lines), matte too."""
    photo = np.zeros((100, 80, 3), np.uint8)
    photo[:, :40] = (20, 30, 60)  # the jacket
    photo[:, 40:] = 250  # the old background
    photo[-1] = 160  # the artefact line
    to_raster = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pixels = cv2.warpAffine(photo, to_raster, (80, 140), borderMode=cv2.BORDER_REPLICATE)
    alpha = np.zeros((140, 80), np.float32)
    alpha[:, :40] = 1.0
    alpha[100:, 40:] = 0.6  # the segmenter's guess on the smeared rows
    continuation = EdgeContinuation(photo.shape, to_raster, (80, 140))
    out, matte = continuation.apply(pixels), continuation.apply(alpha)
    assert np.array_equal(out[:97], pixels[:97]) and np.array_equal(matte[:97], alpha[:97])
    assert (out[97:, :38] == (20, 30, 60)).all() and (out[97:, 42:] == 250).all()
    assert (matte[97:, :38] == 1.0).all() and (matte[97:, 42:] == 0.0).all()
