"""ID photos end to end: real models on real portraits, measured again on the output file."""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_PORTRAITS, portrait_params, resolve_portrait
from PIL import Image

from appliance.cli import main
from appliance.config import Config
from appliance.errors import FaceTooSmallError, MultipleFacesError, NoFaceError, SubjectCutError
from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
from appliance.idphoto.specs import get_spec
from appliance.imaging.matte import parse_hex_colour

SPECS = ("icao-35x45", "us-2x2")


@pytest.fixture(scope="module")
def pipeline(inference: Any, config: Config) -> IdPhotoPipeline:
    return IdPhotoPipeline(inference, config)


def measure(inference: Any, data: bytes) -> dict[str, float]:
    """Re-read the finished file and measure it with the models, as an embassy's check would."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    faces = inference.detector.detect(pixels)
    assert len(faces) == 1
    marks = inference.landmarker.landmarks(pixels, faces[0], passes=2)
    alpha = inference.segmenter.refine(inference.segmenter.segment(pixels), pixels)
    eye_x, eye_y = marks.eye_mid
    centre = (eye_x + marks.chin[0]) / 2.0
    band = max(2, round(marks.eye_distance * 0.5))
    person = (alpha[:, round(centre) - band : round(centre) + band + 1] >= 0.5).mean(axis=1)
    row = round(eye_y)
    while row > 0 and person[row - 1] >= 0.3:
        row -= 1
    return {
        "crown": row,
        "chin": marks.chin[1],
        "eye_y": eye_y,
        "centre": centre,
        "roll": marks.roll,
    }


def rgba_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("spec_id", SPECS)
@pytest.mark.parametrize("portrait", portrait_params())
def test_portrait_meets_the_spec(
    portrait: str, spec_id: str, sample_dir: Path, pipeline: IdPhotoPipeline, inference: Any
) -> None:
    path = resolve_portrait(portrait, sample_dir)
    spec = get_spec(spec_id)
    product = pipeline.process(path.read_bytes(), ProductRequest(spec_id=spec_id))
    image = Image.open(io.BytesIO(product.digital))
    assert image.format == "JPEG"
    assert image.size == spec.digital_size_px
    assert image.info["dpi"] == pytest.approx((300, 300), abs=0.5)
    # Nothing of the input's metadata survives (hivision-test0.jpg carries a camera's EXIF).
    assert len(image.getexif()) == 0
    assert "icc_profile" not in image.info and "exif" not in image.info
    assert b"Canon" not in product.digital
    # Geometry measured again on the output file.
    m = measure(inference, product.digital)
    px_per_mm = spec.px_per_mm
    head_mm = (m["chin"] - m["crown"]) / px_per_mm
    eye_mm = (image.size[1] - m["eye_y"]) / px_per_mm
    offset_mm = (m["centre"] - image.size[0] / 2) / px_per_mm
    lo, hi = spec.head_height_mm
    assert lo - 0.3 <= head_mm <= hi + 0.3, head_mm
    eye_lo, eye_hi = spec.eye_line_mm
    assert eye_lo - 0.3 <= eye_mm <= eye_hi + 0.3, eye_mm
    assert abs(offset_mm) <= 1.5
    assert abs(m["roll"]) < 1.5
    # Background: the border is the spec's colour.
    target = np.array(parse_hex_colour(spec.default_background), dtype=np.int16)
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    top_row = pixels[0, :, :]
    side_strip = pixels[: image.size[1] // 3, :4, :].reshape(-1, 3)
    for border in (top_row, side_strip):
        assert np.percentile(np.abs(border - target).max(axis=1), 90) <= 12
    # The report says what it measured, and its geometry checks agree.
    report = product.report
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["head height"] == "pass" and statuses["eye line"] == "pass"
    assert statuses["centring"] == "pass" and statuses["single face"] == "pass"
    assert set(report["timings_ms"]) >= {"decode", "detect", "landmarks", "segment", "render"}
    json.dumps(report)
    sheet = Image.open(io.BytesIO(product.sheet or b""))
    assert sorted(sheet.size) == [1200, 1800] and sheet.info["dpi"] == pytest.approx((300, 300))


def _rotated(path: Path, degrees: float) -> bytes:
    image = Image.open(path).convert("RGB")
    corner = tuple(int(v) for v in np.asarray(image)[2, 2])
    rotated = image.rotate(
        degrees, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=corner
    )
    buffer = io.BytesIO()
    rotated.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("degrees", [8.0, -8.0])
def test_tilted_portraits_come_out_level(
    degrees: float, sample_dir: Path, pipeline: IdPhotoPipeline, inference: Any
) -> None:
    sources = [sample_dir / "astronaut.png"]
    if SHARED_PORTRAITS.is_dir():
        sources += [
            SHARED_PORTRAITS / "hivision-test3.jpg",
            SHARED_PORTRAITS / "hivision-demo2.jpg",
        ]
    for source in sources:
        product = pipeline.process(_rotated(source, degrees), ProductRequest(spec_id="icao-35x45"))
        assert abs(product.report["transforms"]["roll_corrected_deg"]) > 4
        assert abs(measure(inference, product.digital)["roll"]) < 1.0


def test_exif_rotated_file_comes_out_upright(
    sample_dir: Path, pipeline: IdPhotoPipeline, inference: Any
) -> None:
    upright = Image.open(sample_dir / "astronaut.png").convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=95, exif=exif)
    product = pipeline.process(buffer.getvalue(), ProductRequest(spec_id="icao-35x45"))
    m = measure(inference, product.digital)
    assert abs(m["roll"]) < 1.0
    assert m["eye_y"] < m["chin"]  # upright: eyes above the chin
    assert len(Image.open(io.BytesIO(product.digital)).getexif()) == 0


def _in_12mp_frame(path: Path, scale: float) -> bytes:
    portrait = Image.open(path).convert("RGB")
    portrait = portrait.resize((round(portrait.width * scale), round(portrait.height * scale)))
    frame = Image.new("RGB", (4000, 3000), tuple(int(v) for v in np.asarray(portrait)[3, 3]))
    frame.paste(portrait, (2300, 3000 - portrait.height))
    buffer = io.BytesIO()
    frame.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_small_portrait_in_a_12mp_frame(sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    source = sample_dir / "astronaut.png"
    # Enough pixels: the head is larger in the frame than in the output.
    product = pipeline.process(_in_12mp_frame(source, 3.0), ProductRequest(spec_id="icao-35x45"))
    checks = {c["name"]: c for c in product.report["checks"]}
    assert checks["resolution"]["status"] == "pass", checks["resolution"]
    assert product.report["input"]["size"] == [4000, 3000]
    # Too few: the photo is still made, and the resolution check fails with the figures.
    small = _in_12mp_frame(source, 1.0)
    product = pipeline.process(small, ProductRequest(spec_id="icao-35x45"))
    checks = {c["name"]: c for c in product.report["checks"]}
    assert checks["resolution"]["status"] == "fail", checks["resolution"]
    # Far too few for a 600 dpi document: refused, with needed versus available pixels.
    with pytest.raises(FaceTooSmallError, match=r"head is \d+ px tall .* needs \d+ px"):
        pipeline.process(small, ProductRequest(spec_id="uk-35x45"))


def test_two_faces_are_refused(sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    one = np.asarray(Image.open(sample_dir / "astronaut.png").convert("RGB"))
    two = np.concatenate([one, one[:, ::-1]], axis=1)
    with pytest.raises(MultipleFacesError, match="2 faces"):
        pipeline.process(rgba_png(two), ProductRequest(spec_id="icao-35x45"))


def test_head_cut_off_is_refused_with_what_to_do(
    sample_dir: Path, pipeline: IdPhotoPipeline
) -> None:
    pixels = np.asarray(Image.open(sample_dir / "astronaut.png").convert("RGB"))
    cut = np.ascontiguousarray(pixels[60:, :])  # the top of the hair is gone
    with pytest.raises(SubjectCutError, match="top of the head is cut off"):
        pipeline.process(rgba_png(cut), ProductRequest(spec_id="icao-35x45"))


def test_size_cap_is_met_without_padding(sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    spec = get_spec("us-dv-600")
    assert spec.max_file_bytes is not None
    product = pipeline.process(
        (sample_dir / "astronaut.png").read_bytes(), ProductRequest(spec_id=spec.id)
    )
    assert len(product.digital) <= spec.max_file_bytes
    assert Image.open(io.BytesIO(product.digital)).size == (600, 600)


@pytest.mark.parametrize("ratio", ["4:5", "2:3", "1:1"])
def test_portrait_mode(ratio: str, sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    data = (sample_dir / "astronaut.png").read_bytes()
    product = pipeline.process(data, ProductRequest(portrait=ratio, background="blur"))
    image = Image.open(io.BytesIO(product.digital))
    w, h = (int(v) for v in ratio.split(":"))
    assert image.width / image.height == pytest.approx(w / h, abs=0.01)
    assert product.report["product"] == "portrait"
    assert product.sheet is not None


def write_bad_inputs(folder: Path, sample_dir: Path) -> list[Path]:
    folder.mkdir()
    bomb = io.BytesIO()
    Image.new("1", (30000, 30000)).save(bomb, "PNG")
    jpeg = io.BytesIO()
    Image.open(sample_dir / "astronaut.png").convert("RGB").save(jpeg, "JPEG")
    one = np.asarray(Image.open(sample_dir / "astronaut.png").convert("RGB"))
    files = {
        "cat.png": (sample_dir / "chelsea.png").read_bytes(),
        "coffee.png": (sample_dir / "coffee.png").read_bytes(),
        "two.png": rgba_png(np.concatenate([one, one[:, ::-1]], axis=1)),
        "bomb.png": bomb.getvalue(),
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 3],
        "text.jpg": b"this is a letter, not a photo\n" * 20,
    }
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def test_cli_refuses_each_bad_input_clearly_and_writes_nothing(
    tmp_path: Path, sample_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = write_bad_inputs(tmp_path / "in", sample_dir)
    out = tmp_path / "out"
    code = main(["process", *map(str, inputs), "--spec", "icao-35x45", "--out", str(out)])
    assert code != 0
    err = capsys.readouterr().err
    expected = {
        "cat.png": "no face found",
        "coffee.png": "no face found",
        "two.png": "2 faces found",
        "bomb.png": "900 MP, over the limit",
        "truncated.jpg": "truncated or corrupt",
        "text.jpg": "not an image",
    }
    lines = [line for line in err.splitlines() if ": refused: " in line]
    assert len(lines) == len(expected)
    for name, message in expected.items():
        assert any(
            line.startswith(str(tmp_path / "in" / name)) and message in line for line in lines
        ), (name, err)
    assert "Traceback" not in err
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_writes_outputs_only_in_out(tmp_path: Path, sample_dir: Path) -> None:
    """No plaintext copy anywhere but --out: every file opened for writing is checked."""
    out = tmp_path / "out"
    written: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not watching[0]:
            return
        if event == "open" and len(args) >= 2 and isinstance(args[0], (str, Path)):
            mode = args[1] if isinstance(args[1], str) else ""
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            if any(c in mode for c in "wax+") or flags & 0o3:
                written.append(str(args[0]))
        elif event in ("os.rename", "os.replace", "shutil.copyfile", "os.link"):
            written.append(str(args[1]))

    sys.addaudithook(hook)
    try:
        code = main(
            [
                "process",
                str(sample_dir / "astronaut.png"),
                "--spec",
                "us-2x2",
                "--out",
                str(out),
                "--json",
            ]
        )
    finally:
        watching[0] = False
    assert code == 0
    assert written, "the hook saw nothing: it is not watching"
    outside = [p for p in written if not Path(p).resolve().is_relative_to(out.resolve())]
    assert outside == []
    assert sorted(p.name for p in out.iterdir()) == [
        "astronaut.us-2x2.jpg",
        "astronaut.us-2x2.json",
        "astronaut.us-2x2.sheet-4x6.jpg",
    ]


def test_specs_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["specs", "--json"]) == 0
    specs = json.loads(capsys.readouterr().out)
    ids = {s["id"] for s in specs}
    assert len(specs) >= 20
    assert {
        "icao-35x45",
        "us-2x2",
        "ca-50x70",
        "cn-33x48",
        "jp-35x45",
        "in-2x2",
        "uk-35x45",
        "au-35x45",
        "de-35x45",
        "fr-35x45",
    } <= ids


def test_no_face_error_type(sample_dir: Path, pipeline: IdPhotoPipeline) -> None:
    with pytest.raises(NoFaceError) as info:
        pipeline.process(
            (sample_dir / "coffee.png").read_bytes(), ProductRequest(spec_id="icao-35x45")
        )
    assert isinstance(info.value, LookupError)
    assert math.isfinite(1.0)


@pytest.mark.parametrize("kind", ["cmyk", "progressive", "rgba-png", "webp", "grey"])
def test_every_common_encoding_is_read(
    kind: str, sample_dir: Path, pipeline: IdPhotoPipeline, inference: Any
) -> None:
    image = Image.open(sample_dir / "astronaut.png").convert("RGB")
    buffer = io.BytesIO()
    if kind == "cmyk":
        image.convert("CMYK").save(buffer, "JPEG", quality=92)
    elif kind == "progressive":
        image.save(buffer, "JPEG", quality=92, progressive=True)
    elif kind == "rgba-png":
        rgba = image.convert("RGBA")
        rgba.putalpha(255)
        rgba.save(buffer, "PNG")
    elif kind == "webp":
        image.save(buffer, "WEBP", quality=90)
    else:
        image.convert("L").save(buffer, "JPEG", quality=92)
    product = pipeline.process(buffer.getvalue(), ProductRequest(spec_id="icao-35x45"))
    assert Image.open(io.BytesIO(product.digital)).size == (413, 531)
    m = measure(inference, product.digital)
    assert abs(m["roll"]) < 1.5


def test_concurrent_products_match_one_at_a_time(
    sample_dir: Path, pipeline: IdPhotoPipeline
) -> None:
    """Sessions share the pipeline and its side threads: four products at once (two photos,
    two specs, one refused) come out exactly as they do one by one, with their own reports."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [
        ((sample_dir / "astronaut.png").read_bytes(), "icao-35x45"),
        ((sample_dir / "astronaut.png").read_bytes(), "us-2x2"),
        ((sample_dir / "coffee.png").read_bytes(), "icao-35x45"),
    ]
    if SHARED_PORTRAITS.is_dir():
        jobs.append(((SHARED_PORTRAITS / "hivision-test0.jpg").read_bytes(), "us-2x2"))

    def one(job: tuple[bytes, str]) -> tuple[bytes, bytes | None, str] | str:
        try:
            product = pipeline.process(job[0], ProductRequest(spec_id=job[1]))
        except NoFaceError as exc:
            return str(exc)
        return product.digital, product.sheet, product.report["spec"]

    alone = [one(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        together = list(pool.map(one, jobs))
    assert together == alone
    assert isinstance(alone[2], str) and "no face" in alone[2]
    assert [r[2] for r in alone if not isinstance(r, str)] == [
        job[1] for i, job in enumerate(jobs) if i != 2
    ]
