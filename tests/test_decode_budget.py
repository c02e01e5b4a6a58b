"""Decoding under a memory budget: costed from the header, refused before allocating, and a
64 MP photo decoded for the models without ever holding 64 MP (issue 15, failure 5)."""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from appliance.errors import ImageTooLargeError
from appliance.imaging.budget import decode_cost, header_of, jpeg_draft_scale
from appliance.imaging.decode import check_decodable, decode, probe

ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000
MAX_PIXELS = 64_000_000


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@functools.cache
def solid_png(width: int, height: int, *, rows: int | None = None) -> bytes:
    """A one-colour RGB PNG made row by row (tiny: ~200 KB for 8000 x 8000), without ever
    holding its pixels: the decompression bomb of the issue. ``rows`` < height truncates."""
    packer = zlib.compressobj(6)
    row = b"\x00" + b"\x80" * (3 * width)  # filter 0, mid grey
    idat = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    idat += packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def big_jpegs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """8000 x 8000 JPEGs, baseline and progressive (made once; ~40 s of the suite's time is
    not worth it, so they are flat grey with a gradient: small and quick to encode)."""
    folder = tmp_path_factory.mktemp("big-jpegs")
    gradient = Image.linear_gradient("L").resize((8000, 8000)).convert("RGB")
    paths = {}
    for name, options in (("baseline", {}), ("progressive", {"progressive": True})):
        path = folder / f"{name}.jpg"
        gradient.save(path, "JPEG", quality=80, **options)
        paths[name] = path
    gradient.close()
    return paths


def test_header_costs_match_what_each_format_needs(big_jpegs: dict[str, Path]) -> None:
    png = probe(solid_png(8000, 8000), max_pixels=MAX_PIXELS)
    assert (png.format, png.mode, png.size) == ("PNG", "RGB", (8000, 8000))
    # Decoded in full at 4 bytes a pixel, whatever size is asked for.
    assert decode_cost(png, 1024, at_least=False) >= 256 * MB
    baseline = header_of(Image.open(big_jpegs["baseline"]))
    progressive = header_of(Image.open(big_jpegs["progressive"]))
    assert not baseline.progressive and progressive.progressive
    assert baseline.samples_per_px == pytest.approx(1.5)  # 4:2:0
    assert jpeg_draft_scale((8000, 8000), (512, 512)) == 8
    assert decode_cost(baseline, 1024, at_least=False) < 20 * MB  # DCT-scaled to 1000 px
    # Progressive: libjpeg buffers every coefficient (2 bytes a sample) at full resolution.
    assert decode_cost(progressive, 1024, at_least=False) > 190 * MB


def test_bombs_are_refused_from_the_header_with_a_clear_message(
    big_jpegs: dict[str, Path],
) -> None:
    with pytest.raises(ImageTooLargeError) as caught:
        check_decodable(solid_png(8000, 8000), max_pixels=MAX_PIXELS, max_bytes=96 * MB,
                        max_side=1024)  # fmt: skip
    message = str(caught.value)
    assert "PNG of 8000x8000 (64 MP)" in message and "decode budget of 96 MB" in message
    assert "send it as a JPEG" in message
    with pytest.raises(ImageTooLargeError, match="progressive JPEG"):
        check_decodable(big_jpegs["progressive"].read_bytes(), max_pixels=MAX_PIXELS,
                        max_bytes=96 * MB, max_side=1024)  # fmt: skip
    with pytest.raises(ImageTooLargeError, match="over the limit of 64 MP"):
        check_decodable(solid_png(100_000, 100_000, rows=1), max_pixels=MAX_PIXELS,
                        max_bytes=96 * MB, max_side=1024)  # fmt: skip
    # A baseline 64 MP JPEG fits (DCT scaling), and so does a 12 MP PNG.
    check_decodable(big_jpegs["baseline"].read_bytes(), max_pixels=MAX_PIXELS,
                    max_bytes=96 * MB, max_side=1024)  # fmt: skip
    check_decodable(solid_png(4000, 3000), max_pixels=MAX_PIXELS, max_bytes=96 * MB,
                    max_side=1024)  # fmt: skip


def test_a_jpeg_asked_for_more_than_the_budget_comes_out_smaller(
    big_jpegs: dict[str, Path],
) -> None:
    data = big_jpegs["baseline"].read_bytes()
    kept = decode(data, max_pixels=MAX_PIXELS, max_side=8000, max_bytes=96 * MB)
    assert kept.full_size == (8000, 8000)
    height, width = kept.pixels.shape[:2]
    assert width * height * 11 <= 96 * MB and width == height and kept.scale < 0.5


def test_a_png_is_reduced_before_it_is_converted_or_copied() -> None:
    # 4000 x 3000 RGBA with an alpha edge: reduced, composited on white, exactly 1024 wide.
    image = Image.new("RGBA", (4000, 3000), (200, 10, 10, 255))
    image.paste((0, 0, 0, 0), (0, 0, 2000, 3000))
    stream = io.BytesIO()
    image.save(stream, "PNG")
    decoded = decode(stream.getvalue(), max_pixels=MAX_PIXELS, max_side=1024, max_bytes=96 * MB)
    assert decoded.pixels.shape == (768, 1024, 3) and decoded.full_size == (4000, 3000)
    assert tuple(decoded.pixels[10, 10]) == (255, 255, 255)
    assert tuple(decoded.pixels[10, 1000]) == (200, 10, 10)


_MEASURE = """
import json, resource, sys
from pathlib import Path
from appliance.errors import ImageTooLargeError
from appliance.imaging.decode import check_decodable, decode
data = Path(sys.argv[1]).read_bytes()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcome = "decoded"
try:
    check_decodable(data, max_pixels=64_000_000, max_bytes=96_000_000, max_side=1024)
    image = decode(data, max_pixels=64_000_000, max_side=1024, at_least=False,
                   max_bytes=96_000_000)
except ImageTooLargeError:
    outcome = "refused"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "grew_mb": (after - before) / 1024}))
"""


@pytest.mark.parametrize(
    ("kind", "outcome"),
    [("png-64mp", "refused"), ("baseline", "decoded"), ("progressive", "refused")],
)
def test_64_mp_worst_cases_stay_small_in_a_fresh_process(
    kind: str, outcome: str, big_jpegs: dict[str, Path], tmp_path: Path
) -> None:
    # The case: a 202 KB PNG of 8000 x 8000 made the daemon peak at 765 MB.
    path = big_jpegs.get(kind) or tmp_path / "bomb.png"
    if kind == "png-64mp":
        path.write_bytes(solid_png(8000, 8000))
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
    )  # fmt: skip
    result = json.loads(done.stdout)
    assert result["outcome"] == outcome
    assert result["grew_mb"] < 60, result  # the budget is 96 MB; none comes near it


@pytest.mark.parametrize(
    ("mode", "options"),
    [("RGB", {"quality": 85}), ("RGB", {"lossless": True}), ("RGBA", {"lossless": True})],
)
def test_webp_header_by_hand_and_pixels_as_pillow_decodes_them(
    mode: str, options: dict[str, object], sample_dir: Path
) -> None:
    # VP8 (lossy), VP8L (lossless) and VP8X (with EXIF, and alpha): each header read by hand.
    image = Image.open(sample_dir / "astronaut.png").convert(mode).resize((300, 200))
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize((300, 200)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turn 90 degrees clockwise
    for with_exif in (False, True):
        stream = io.BytesIO()
        image.save(stream, "WEBP", **({"exif": exif.tobytes()} if with_exif else {}), **options)
        data = stream.getvalue()
        header = probe(data, max_pixels=MAX_PIXELS)
        assert (header.format, header.mode, header.size) == ("WEBP", mode, (300, 200))
        decoded = decode(data, max_pixels=MAX_PIXELS, max_bytes=96 * MB)
        reference = Image.open(io.BytesIO(data))
        if mode == "RGBA":  # transparent areas become white
            canvas = Image.new("RGB", reference.size, (255, 255, 255))
            canvas.paste(reference, mask=reference.getchannel("A"))
            reference = canvas
        expected = np.asarray(reference.convert("RGB"))
        if with_exif:
            expected = np.rot90(expected, -1)
        assert decoded.full_size == ((200, 300) if with_exif else (300, 200))
        assert np.abs(decoded.pixels.astype(int) - expected.astype(int)).max() <= 1


def test_webp_bombs_are_refused_from_the_header() -> None:
    # A lossless header claiming 16384 x 16384 (268 MP) with nothing behind it.
    bits = (16383) | (16383 << 14)
    body = b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8
    data = b"RIFF" + struct.pack("<I", 4 + 8 + len(body)) + b"WEBP"
    data += b"VP8L" + struct.pack("<I", len(body)) + body
    with pytest.raises(ImageTooLargeError, match="16384x16384"):
        check_decodable(data, max_pixels=MAX_PIXELS, max_bytes=96 * MB, max_side=1024)
    with pytest.raises(ImageTooLargeError, match="WEBP of 16384x16384"):
        check_decodable(data, max_pixels=400_000_000, max_bytes=96 * MB, max_side=1024)


def test_the_budget_follows_the_memory_the_process_may_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from appliance import memory
    from appliance.config import ImagingConfig

    limit = memory.memory_limit_bytes()
    assert 0 < limit <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert ImagingConfig().decode_budget_bytes == min(96 * MB, limit // 6)
    # Under a 300 MB cgroup limit (MemoryMax=300M), a sixth of it: a 16 MP PNG (64 MB in
    # Pillow) no longer fits.
    monkeypatch.setattr(memory, "memory_limit_bytes", lambda: 300 * MB)
    small = ImagingConfig().decode_budget_bytes
    assert small == 50 * MB
    png = solid_png(4000, 4000)
    check_decodable(png, max_pixels=MAX_PIXELS, max_bytes=96 * MB, max_side=1024)
    with pytest.raises(ImageTooLargeError, match="decode budget of 50 MB"):
        check_decodable(png, max_pixels=MAX_PIXELS, max_bytes=small, max_side=1024)
    assert ImagingConfig(decode_budget_mb=32).decode_budget_bytes == 32 * MB


@pytest.mark.skipif(
    importlib.util.find_spec("pillow_heif") is None, reason="the heic extra is not installed"
)
def test_heic_through_libheifs_own_buffer_upright_as_pillow_reads_it(sample_dir: Path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    image = Image.open(sample_dir / "astronaut.png").convert("RGB").resize((300, 200))
    exif = Image.Exif()
    exif[0x0112] = 6
    for extra in ({}, {"exif": exif.tobytes()}):
        stream = io.BytesIO()
        image.save(stream, "HEIF", quality=90, **extra)
        data = stream.getvalue()
        header = probe(data, max_pixels=MAX_PIXELS)
        decoded = decode(data, max_pixels=MAX_PIXELS, max_side=1024, max_bytes=96 * MB)
        expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        assert header.format == decoded.format == "HEIF"
        assert decoded.full_size == header.size == (expected.shape[1], expected.shape[0])
        assert np.array_equal(decoded.pixels, expected)
    # 12 MP: about 5 bytes a pixel, within the budget (a 64 MP one would not be).
    assert decode_cost(replace(header, size=(4000, 3000)), 1024) < 96 * MB
    assert decode_cost(replace(header, size=(8000, 8000)), 1024) > 96 * MB
