"""Which variant (float or int8) each model runs, and why; and the accuracy gate that decides.

`appliance models build` (`quantize`) writes int8 models beside the float ones with a manifest
(`quantized-models.json`) recording, per model, the recipe, the calibration set, the gate's
numbers and the int8 file's sha256. At startup each model runs int8 only when:

1. the config allows it (`inference.variant`: "auto", the default, or "int8"; "float" never);
2. the manifest has an entry built from the same pinned float model, and its gate passed;
3. the int8 file's sha256 matches the manifest;
4. with "auto": on this device's accelerator the int8 model is not slower than the float one
   (median of a few invokes timed at startup, within `SLOWER_TOLERANCE` for timing noise).

Otherwise it runs float, and the reason says which condition failed. Nothing here needs the
quantizer: reading the manifest, comparing two models' outputs and timing them.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from appliance.assets import sha256_file
from appliance.errors import ApplianceError
from appliance.inference.registry import get_model
from appliance.inference.runtime import TFLiteModel

MANIFEST_NAME = "quantized-models.json"
MANIFEST_VERSION = 1
BUILD_COMMAND = "appliance models build"

# The accuracy gate: int8 against float on portraits the calibration did not see.
BOX_IOU_MIN = 0.90
KEYPOINT_ERROR_MAX_PCT = 2.0  # worst keypoint, % of the float box's longest side
LANDMARK_ERROR_MAX_PCT = 1.5  # mean over the 468 points, % of the float inter-ocular distance
MASK_IOU_MIN = 0.97  # at the model's own resolution, masks cut at 0.5
ID_GEOMETRY_MAX_PX = 2.0  # crown, chin and eye line of the finished ID photo

# int8 counts as "not slower" up to this much over the float median: invoke timings on a busy
# device jitter by a few percent, and a coin-flip choice would change between restarts.
SLOWER_TOLERANCE = 0.05
TIMED_INVOKES = 5

Variant = Literal["float", "int8"]


def int8_file_name(name: str, integer_io: bool = False) -> str:
    stem = get_model(name).file.name.removesuffix(".tflite")
    return f"{stem}.int8-io.tflite" if integer_io else f"{stem}.int8.tflite"


@dataclass(frozen=True)
class GateCheck:
    """One measure of the gate: the worst value seen over the held-out samples."""

    metric: str
    value: float
    limit: float
    higher_is_better: bool
    worst_image: str
    samples: int
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.samples == 0:
            return False
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def describe(self) -> str:
        if self.samples == 0:
            return f"{self.metric}: no held-out portrait could be measured"
        bound = "floor" if self.higher_is_better else "limit"
        text = (
            f"{self.metric} {self.value:.4g}{self.unit} (worst: {self.worst_image}; "
            f"{bound} {self.limit:.4g}{self.unit}; {self.samples} samples)"
        )
        if self.passed:
            return text
        return f"{text} FAILED by {abs(self.value - self.limit):.3g}{self.unit}"


@dataclass(frozen=True)
class ModelBuild:
    """One model's manifest entry: the runtime int8 file and its gate, and the
    integer-input/output file made for `edgetpu_compiler` (gated for information only)."""

    name: str
    source_file: str
    source_sha256: str
    file: str
    sha256: str
    recipe: str
    gate: tuple[GateCheck, ...]
    float_ops: dict[str, int] = field(default_factory=dict)  # ops left float, how many
    xnnpack_partitions: int = 0
    build_latency_ms: dict[str, float] = field(default_factory=dict)
    integer_io_file: str = ""
    integer_io_sha256: str = ""
    integer_io_gate: tuple[GateCheck, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return bool(self.gate) and all(check.passed for check in self.gate)

    def gate_summary(self) -> str:
        if not self.gate:
            return "no gate was run"
        verdict = "passed" if self.passed else "FAILED"
        return f"{verdict}: " + "; ".join(check.describe() for check in self.gate)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("gate", "integer_io_gate"):
            data[key] = [{**asdict(c), "passed": c.passed} for c in getattr(self, key)]
        data["passed"] = self.passed
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelBuild:
        def checks(items: list[dict[str, Any]]) -> tuple[GateCheck, ...]:
            return tuple(GateCheck(**{k: v for k, v in c.items() if k != "passed"}) for c in items)

        fields = {k: v for k, v in data.items() if k != "passed"}
        fields["gate"] = checks(fields.get("gate", []))
        fields["integer_io_gate"] = checks(fields.get("integer_io_gate", []))
        fields["notes"] = tuple(fields.get("notes", ()))
        return cls(**fields)


def read_manifest(models_dir: Path) -> dict[str, ModelBuild]:
    """The manifest's entries by model name; empty when no build was made."""
    path = models_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != MANIFEST_VERSION:
            return {}
        return {entry["name"]: ModelBuild.from_dict(entry) for entry in data["models"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ApplianceError(
            f"{path} is not a valid build manifest ({exc}); run `{BUILD_COMMAND}` again"
        ) from None


def verify_int8(models_dir: Path) -> list[tuple[str, str]]:
    """(file, problem) for every file the build manifest lists, the runtime int8 file and the
    integer-I/O one; the problem is "" where the file checks out: a plain file name, built
    from the pinned float model, present, and with the sha256 the manifest records. Empty
    when no build was made; ApplianceError for a manifest that cannot be read."""
    results = []
    for name, build in sorted(read_manifest(models_dir).items()):
        pinned = get_model(name).file
        for file, digest in (
            (build.file, build.sha256),
            (build.integer_io_file, build.integer_io_sha256),
        ):
            if not file:
                continue
            path = models_dir / file
            if Path(file).name != file:
                problem = "not a plain file name"
            elif build.source_sha256 != pinned.sha256:
                problem = f"built from another float model than the pinned {pinned.name}"
            elif not path.is_file():
                problem = "missing"
            elif sha256_file(path) != digest:
                problem = "sha256 differs from the manifest"
            else:
                problem = ""
            results.append((file, problem))
    return results


@dataclass(frozen=True)
class VariantChoice:
    """The variant a model runs, the file, and why."""

    name: str
    variant: Variant
    path: Path
    reason: str
    float_ms: float | None = None
    int8_ms: float | None = None
    runs_on: str = ""  # where the loaded model runs (`placement`), set once it is loaded

    def timings(self) -> str:
        """Both startup timings, or why they were not taken."""
        if self.float_ms is None or self.int8_ms is None:
            return "not timed (only an int8 build that passed its gate is timed, with auto)"
        return f"float {self.float_ms:.2f} ms, int8 {self.int8_ms:.2f} ms median invoke"

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "file": self.path.name,
            "reason": self.reason,
            "float_ms": None if self.float_ms is None else round(self.float_ms, 3),
            "int8_ms": None if self.int8_ms is None else round(self.int8_ms, 3),
            "runs_on": self.runs_on,
        }


def int8_candidate(name: str, models_dir: Path, float_sha256: str) -> tuple[Path | None, str]:
    """The verified int8 file for `name` if its gate passed, else None and why not."""
    try:
        build = read_manifest(models_dir).get(name)
    except ApplianceError as exc:
        return None, str(exc)
    if build is None:
        return None, f"no int8 build (run `{BUILD_COMMAND}`)"
    if build.source_sha256 != float_sha256:
        return None, f"the int8 build is of another float model; run `{BUILD_COMMAND}` again"
    if not build.passed:
        failed = "; ".join(c.describe() for c in build.gate if not c.passed) or "no gate was run"
        return None, f"int8 failed the accuracy gate: {failed}"
    path = models_dir / build.file
    if not path.is_file():
        return None, f"{path} is missing; run `{BUILD_COMMAND}`"
    if sha256_file(path) != build.sha256:
        return None, f"{path} does not match its manifest hash; run `{BUILD_COMMAND}` again"
    return path, "int8 passed the accuracy gate"


def median_invoke_ms(model: TFLiteModel, invokes: int = TIMED_INVOKES) -> float:
    """Median wall time of `invokes` runs on a fixed noise image, after one warm-up run."""
    width, height = model.input_size
    probe = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    model.run(probe)
    timings = []
    for _ in range(invokes):
        start = time.perf_counter()
        model.run(probe)
        timings.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(timings)


def _edgetpu_int8(
    name: str, models_dir: Path, load: Callable[[Path], TFLiteModel]
) -> tuple[TFLiteModel | None, Path | None, str]:
    """The Edge TPU build of `name`, loaded, or None and why not (said in the reason)."""
    from appliance.inference.edgetpu_build import edgetpu_candidate

    path, why = edgetpu_candidate(name, models_dir)
    if path is None:
        return None, None, why
    try:
        return load(path), path, why
    except ApplianceError as exc:  # the delegate rejected the compiled graph
        return None, None, f"{path.name} does not load on the Edge TPU: {exc}"


def select_model(
    name: str,
    float_path: Path,
    setting: str,
    load: Callable[[Path], TFLiteModel],
    *,
    timer: Callable[[TFLiteModel], float] = median_invoke_ms,
    edgetpu: bool = False,
) -> tuple[TFLiteModel, VariantChoice]:
    """Load the variant `name` should run under `setting` ("auto", "float" or "int8").
    With `edgetpu` (the Edge TPU delegate loaded) the compiled int8 build is the int8
    candidate when it checks out; otherwise the CPU int8 build is, and the reason says why."""
    if setting == "float":
        choice = VariantChoice(name, "float", float_path, 'configured: variant = "float"')
        return load(float_path), choice
    tpu_note = ""
    if edgetpu:
        compiled, compiled_path, tpu_why = _edgetpu_int8(name, float_path.parent, load)
        if compiled is not None and compiled_path is not None:
            candidate, why, int8_model = compiled_path, tpu_why, compiled
        else:
            tpu_note = f"; Edge TPU file not used: {tpu_why}"
    if not edgetpu or tpu_note:
        found, why = int8_candidate(name, float_path.parent, get_model(name).file.sha256)
        if found is None:
            return load(float_path), VariantChoice(name, "float", float_path, why + tpu_note)
        try:
            int8_model = load(found)
        except ApplianceError as exc:  # e.g. a delegate that cannot take this int8 graph
            reason = f"{why}, but it does not load here: {exc}{tpu_note}"
            return load(float_path), VariantChoice(name, "float", float_path, reason)
        candidate, why = found, why + tpu_note
    if setting == "int8":
        reason = f'configured: variant = "int8"; {why}'
        return int8_model, VariantChoice(name, "int8", candidate, reason)
    float_model = load(float_path)
    float_ms, int8_ms = timer(float_model), timer(int8_model)
    timing = f"int8 {int8_ms:.1f} ms vs float {float_ms:.1f} ms on {float_model.accelerator.name}"
    if int8_ms <= float_ms * (1.0 + SLOWER_TOLERANCE):
        reason = f"{why}; not slower here: {timing}"
        return int8_model, VariantChoice(name, "int8", candidate, reason, float_ms, int8_ms)
    reason = f"{why}, but slower here: {timing}"
    return float_model, VariantChoice(name, "float", float_path, reason, float_ms, int8_ms)
