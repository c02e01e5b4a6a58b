"""`appliance models build`: int8 models from the pinned float ones, gated on accuracy.

Per model: fold MediaPipe's float16 weights into float32 constants (dropping DEQUANTIZE and
DENSIFY), rewrite PRELU as MUL/ADD, fuse standalone RELUs, add a serving signature
(`tflite_graph`); rescale the channels of each depthwise convolution that feeds a convolution
(cross-layer equalisation: the float model computes the same, int8 resolves it better); then
post-training static int8 quantization with ai-edge-quantizer's `static_wi8_ai8` recipe,
calibrated on real portraits fed exactly as the wrappers feed them (letterboxed for the
detectors, face crops for the mesh, stretched for the segmenter) plus flips, crops and exposure
changes of each, and once more after each bias has absorbed the mean error its int8 weights
make on those samples (bias correction). Two files come out:

* `<model>.int8.tflite`, for this runtime: int8 input; the output heads (pixel offsets, logits,
  mesh coordinates, where 256 steps show directly) and the int8 ops XNNPACK does not take stay
  float, so the graph is one XNNPACK partition. It faces the accuracy gate (`variants`).
* `<model>.int8-io.tflite`, for `edgetpu_compiler`: every op the recipe covers in int8, int8
  input and outputs. Gated for information only; the Edge TPU runs it after compiling.

Ops the recipe cannot quantize (the segmenter's Convolution2DTransposeBias, DEPTH_TO_SPACE)
stay float in both; the manifest lists them. A model that fails the gate is still written, so it
can be inspected, but the manifest says it failed and by how much, and the runtime does not use
it. Build-only (needs the `build` extra); the appliance never imports this module. The same
inputs, thread count and package versions give the same model bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import io
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import ApplianceError
from appliance.inference import quantize_ranges, tflite_graph
from appliance.inference.equalise import (
    EQUALISE_ALPHA,
    EQUALISE_FLOOR,
    correct_biases,
    equalise_depthwise,
)
from appliance.inference.quantize_eval import (
    AUGMENTATIONS,
    ID_METRIC,
    Portrait,
    Runner,
    calibration_samples,
    id_gate,
    id_subjects,
    model_gate,
)
from appliance.inference.registry import MODELS, get_model, verified_model_path
from appliance.inference.runtime import TFLiteModel
from appliance.inference.variants import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ModelBuild,
    int8_file_name,
    median_invoke_ms,
)

RECIPE_NAME = "static_wi8_ai8"
# int8 ops the XNNPACK delegate of ai-edge-litert 2.3.0 leaves to the reference kernels
# (measured: each one splits the graph into another delegate partition).
XNNPACK_FLOAT_ONLY = ("AVERAGE_POOL_2D", "HARD_SWISH", "RELU")
RANGES = "quantile"  # see quantize_ranges
RANGE_QUANTILE = 0.95
# The models equalised and bias-corrected before quantizing (quantize_corrected), and each
# model's activation-range quantile (quantize_ranges). Both chosen by validation inside the
# calibration split (calibrated on its 40 calibration portraits, scored on its other 79 as is
# and mirrored; never on the held-out portraits), worst case over those 158 samples:
# short range: mean ranges 2.82 % of box, quantile 0.99 3.46, 0.95 1.99, 0.9 2.75, 0.75 2.64;
# mesh (equalised and corrected; plain with mean ranges 3.29 % of inter-ocular): mean 2.56,
# 0.95 1.49, 0.9 1.29, 0.75 1.83; full range: int8 loses a face either way, and the 10 % tail
# of box IoU is 0.93 with mean ranges against 0 (more lost faces) at 0.95, so it keeps "mean";
# segmenter (mask IoU, worst): mean 0.78, min_max 0.76, 0.99 0.77, 0.95 0.75, 0.9 0.77, 0.75
# 0.83 (the landscape segmenter, the same network at another size, follows it untested).
CORRECTED_MODELS = ("face_detection_short_range", "face_detection_full_range", "face_landmark")
MODEL_RANGES = {
    "face_landmark": ("quantile", 0.9),
    "face_detection_full_range": ("mean", 0.0),
    "selfie_segmentation": ("quantile", 0.75),
    "selfie_segmentation_landscape": ("quantile", 0.75),
}
# The models the ID-photo pipeline runs (the landscape segmenter is not one of them).
PIPELINE_MODELS = (
    "face_detection_short_range",
    "face_detection_full_range",
    "face_landmark",
    "selfie_segmentation",
)


@dataclass(frozen=True)
class BuildReport:
    out_dir: Path
    manifest: Path
    models: tuple[ModelBuild, ...]

    def lines(self) -> list[str]:
        """A human summary: verdict and gate per model, what stays float, build-host timings."""
        out = []
        for build in self.models:
            out.append(
                f"{'int8 ' if build.passed else 'FLOAT'} {build.name}: {build.gate_summary()}"
            )
            if build.float_ops:
                kept = ", ".join(f"{op} x{n}" for op, n in build.float_ops.items())
                out.append(f"      stays float: {kept}")
            if build.build_latency_ms:
                ms = build.build_latency_ms
                out.append(f"      build host: float {ms['float']} ms, int8 {ms['int8']} ms")
        return [*out, f"manifest: {self.manifest}"]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic")


def build_from_folder(
    folder: Path, models_dir: Path, *, pattern: str = "*", num_threads: int = 2, **options: Any
) -> BuildReport:
    """`appliance models build --portraits FOLDER [--glob PATTERN]`: the photos in the folder
    (one person each), split into a calibration half and a held-out half."""
    photos = [p for p in folder.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES]
    if len(photos) < 2:
        raise ApplianceError(
            f"{folder} holds {len(photos)} photos: the build needs at least two portraits "
            "(half calibrate the int8 models, the other half check them)"
        )
    calibration, holdout = split_portraits(photos)
    return build_models(models_dir, None, calibration, holdout, num_threads=num_threads, **options)


def split_portraits(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Calibration and held-out sets from one collection: sorted by name, taken alternately,
    so each set gets some of every kind of photo and adding one photo moves few others."""
    ordered = sorted(paths, key=lambda p: p.name)
    return ordered[0::2], ordered[1::2]


# --- one model: prepare, quantize, inspect --------------------------------------------------


def prepare_float_model(data: bytes) -> tuple[bytes, list[str]]:
    """Fold weights, rewrite PRELU, fuse RELUs, add the signature; new bytes and what was done."""
    model = tflite_graph.read_model(data)
    folded = tflite_graph.fold_constant_weights(model)
    prelu = tflite_graph.decompose_prelu(model)
    fused = tflite_graph.fuse_activations(model)
    tflite_graph.add_signature(model)
    notes = [f"folded {folded.dequantize_folded} float16 DEQUANTIZE ops into float32 weights"]
    if folded.densify_folded:
        notes.append(f"densified {folded.densify_folded} sparse weights")
    if prelu:
        notes.append(f"rewrote {prelu} PRELU as MUL and ADD ops")
    if fused:
        notes.append(f"fused {fused} standalone RELU into the op before")
    return tflite_graph.write_model(model), notes


def quantize_model(
    prepared: bytes,
    samples: Sequence[np.ndarray],
    num_threads: int = 2,
    keep_float: Sequence[str] = (),
    keep_float_ops: Sequence[str] = (),
    ranges: str = RANGES,
    quantile: float = RANGE_QUANTILE,
    input_range: tuple[float, float] | None = None,
) -> bytes:
    """Static int8 quantization of a prepared model, calibrated on float32 samples; ops whose
    output tensors are named in `keep_float`, or of a type in `keep_float_ops`, stay float.
    `ranges`: how each activation's range comes from the samples' (`quantize_ranges`: "mean",
    "quantile" at `quantile`, "min_max"; or "moving_average", the quantizer's own default, an
    exponential average that the first samples dominate). `input_range`: the range the wrapper
    feeds (the input tensor gets exactly that; None: measured like the rest)."""
    from ai_edge_quantizer import algorithm_manager, calibrator, qtyping, quantizer, recipe
    from ai_edge_quantizer.recipe_manager import RecipeManager
    from ai_edge_quantizer.utils import qsv_utils

    if not samples:
        raise ApplianceError("calibration needs at least one sample")
    signature = tflite_graph.SIGNATURE_INPUT
    calibration = {tflite_graph.SIGNATURE_KEY: [{signature: s[np.newaxis]} for s in samples]}
    skip = algorithm_manager.AlgorithmName.NO_QUANTIZE
    moving = ranges == "moving_average"
    update = qsv_utils.moving_average_update if moving else quantize_ranges.collect_update
    with contextlib.redirect_stderr(io.StringIO()):  # the quantizer's progress bars
        tool = quantizer.Quantizer(bytearray(prepared), getattr(recipe, RECIPE_NAME)())
        for op_type in keep_float_ops:
            op_name = qtyping.TFLOperationName[op_type]
            tool.update_quantization_recipe(".*", op_name, algorithm_key=skip)
        for name in keep_float:  # a scope is the op's output names, each followed by ";"
            everything = qtyping.TFLOperationName.ALL_SUPPORTED
            tool.update_quantization_recipe(f"^{re.escape(name)};", everything, algorithm_key=skip)
        # Quantizer.calibrate offers no choice of range update: run its calibrator directly.
        manager = RecipeManager()
        manager.load_quantization_recipe(tool.get_quantization_recipe())
        calibration_run = calibrator.Calibrator(
            bytearray(prepared), num_threads=num_threads, qsv_update_func=update
        )
        calibration_run.calibrate(calibration, manager)
        result = calibration_run.get_model_qsvs()
        if not moving:
            graph = tflite_graph.read_model(prepared).subgraphs[0]
            name = tflite_graph.tensor_name(graph.tensors[graph.inputs[0]]) if input_range else ""
            result = quantize_ranges.settle(result, ranges, quantile, name, input_range or (0, 0))
        quantized = tool.quantize(result, enable_progress_report=False).quantized_model
    if quantized is None:
        raise ApplianceError("the quantizer produced no model")
    return bytes(quantized)


def quantize_corrected(
    prepared: bytes,
    samples: Sequence[np.ndarray],
    num_threads: int = 2,
    keep_float: Sequence[str] = (),
    keep_float_ops: Sequence[str] = (),
    input_range: tuple[float, float] | None = None,
    ranges: str = RANGES,
    quantile: float = RANGE_QUANTILE,
) -> tuple[bytes, bytes, list[str]]:
    """Equalise, quantize, correct the biases, quantize again: the int8 model, the float model
    it was quantized from (same outputs as `prepared`), and what was done."""
    equalised, pairs = equalise_depthwise(prepared, samples)
    options: dict[str, Any] = {
        "input_range": input_range,
        "ranges": ranges,
        "quantile": quantile,
    }
    first = quantize_model(equalised, samples, num_threads, keep_float, keep_float_ops, **options)
    corrected, convs = correct_biases(equalised, samples, first)
    final = quantize_model(corrected, samples, num_threads, keep_float, keep_float_ops, **options)
    notes = [f"bias-corrected {convs} convolutions for their int8 weights' rounding"]
    if pairs:
        notes.insert(0, f"equalised {pairs} depthwise/convolution channel pairs")
    return final, corrected, notes


def float_ops(data: bytes) -> dict[str, int]:
    """Ops of a quantized model that still compute in float (QUANTIZE/DEQUANTIZE excluded)."""
    model = tflite_graph.read_model(data)
    float32 = tflite_graph._schema().TensorType.FLOAT32
    kept: dict[str, int] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = tflite_graph.opcode_name(model, op.opcodeIndex)
            outputs = [subgraph.tensors[i] for i in op.outputs]
            if name not in ("QUANTIZE", "DEQUANTIZE") and any(t.type == float32 for t in outputs):
                kept[name] = kept.get(name, 0) + 1
    return dict(sorted(kept.items()))


def xnnpack_partitions(model: TFLiteModel) -> int:
    """How many XNNPACK partitions the loaded model was split into (1: all of it delegated)."""
    details = model._interpreter._get_ops_details()
    return sum(1 for op in details if op["op_name"] == "DELEGATE")


def _with_combined_check(
    builds: list[ModelBuild],
    paths: dict[str, Path],
    float_id: dict[str, dict[str, float]],
    runner: Runner,
    holdout: Sequence[Portrait],
    spec_id: str,
) -> list[ModelBuild]:
    """The ID photo with every passing int8 model at once. While that fails, the model whose
    own ID shift was largest fails too (with the combined figure) and the rest are re-checked."""
    metric = f"{ID_METRIC}, all passing int8 models together"
    while True:
        passing = [b for b in builds if b.passed and b.name in PIPELINE_MODELS]
        if len(passing) < 2:
            return builds
        service = runner.service({b.name: paths[b.name] for b in passing})
        check = id_gate(float_id, service, holdout, spec_id, metric)
        if check.passed:
            names = {b.name for b in passing}
            return [
                dataclasses.replace(b, gate=(*b.gate, check)) if b.name in names else b
                for b in builds
            ]
        worst = max(passing, key=lambda b: max(c.value for c in b.gate if c.metric == ID_METRIC))
        builds = [
            dataclasses.replace(b, gate=(*b.gate, check)) if b is worst else b for b in builds
        ]


# --- the build -------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> str:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return hashlib.sha256(data).hexdigest()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def build_one(
    name: str,
    runner: Runner,
    out_dir: Path,
    calibration: Sequence[Portrait],
    holdouts: tuple[Sequence[Portrait], Sequence[Portrait]],
    float_id: dict[str, dict[str, float]],
    spec_id: str,
    measure_latency: bool,
) -> ModelBuild:
    """Build, gate and describe `name`'s two int8 files (the combined check comes later).
    `holdouts`: the held-out portraits as the model checks see them, and as the ID check
    does (`id_subjects`)."""
    holdout, id_holdout = holdouts
    source = verified_model_path(name, runner.models_dir)
    prepared, notes = prepare_float_model(source.read_bytes())
    samples = calibration_samples(name, calibration, runner.service())
    heads = tflite_graph.output_heads(tflite_graph.read_model(prepared))
    spec = get_model(name)
    fed = (spec.input_min, spec.input_max)
    ranges, quantile = MODEL_RANGES.get(name, (RANGES, RANGE_QUANTILE))
    if name in CORRECTED_MODELS:
        runtime_bytes, corrected, steps = quantize_corrected(
            prepared, samples, runner.num_threads, heads, XNNPACK_FLOAT_ONLY, fed, ranges, quantile
        )
        notes += steps
    else:
        corrected = prepared
        runtime_bytes = quantize_model(
            prepared,
            samples,
            runner.num_threads,
            heads,
            XNNPACK_FLOAT_ONLY,
            input_range=fed,
            ranges=ranges,
            quantile=quantile,
        )
    target = out_dir / int8_file_name(name)
    digest = _write(target, runtime_bytes)
    io_bytes = quantize_model(
        corrected, samples, runner.num_threads, input_range=fed, ranges=ranges, quantile=quantile
    )
    how = f"quantile {quantile} of the per-sample extremes" if ranges == "quantile" else ranges
    notes.append(f"activation ranges: {how}; input: the range the wrapper feeds")
    io_target = out_dir / int8_file_name(name, integer_io=True)
    io_digest = _write(io_target, io_bytes)
    float_model, int8_model = runner.model(source, name), runner.model(target, name)
    gate = model_gate(name, float_model, int8_model, runner, holdout)
    if name in PIPELINE_MODELS:
        gate.append(id_gate(float_id, runner.service({name: target}), id_holdout, spec_id))
    else:
        notes.append("not used by the ID pipeline, so no ID photo check")
    if name == "face_detection_full_range":
        notes.append("the ID pipeline runs it only when the short-range model finds no face")
    io_gate = model_gate(name, float_model, runner.model(io_target, name), runner, holdout)
    notes.append(f"output heads kept float: {', '.join(heads)}")
    notes.append(f"{len(samples)} calibration samples")
    latency = {}
    if measure_latency:
        latency = {
            "float": round(median_invoke_ms(float_model, 30), 3),
            "int8": round(median_invoke_ms(int8_model, 30), 3),
        }
    return ModelBuild(
        name=name,
        source_file=source.name,
        source_sha256=get_model(name).file.sha256,
        file=target.name,
        sha256=digest,
        recipe=(
            f"{RECIPE_NAME}{', equalised, bias-corrected' if name in CORRECTED_MODELS else ''}; "
            f"float: output heads, {', '.join(XNNPACK_FLOAT_ONLY)}"
        ),
        gate=tuple(gate),
        float_ops=float_ops(runtime_bytes),
        xnnpack_partitions=xnnpack_partitions(int8_model),
        build_latency_ms=latency,
        integer_io_file=io_target.name,
        integer_io_sha256=io_digest,
        integer_io_gate=tuple(io_gate),
        notes=tuple(notes),
    )


def build_models(
    models_dir: Path,
    out_dir: Path | None,
    calibration_images: Sequence[Path],
    holdout_images: Sequence[Path],
    *,
    names: Sequence[str] | None = None,
    num_threads: int = 2,
    spec_id: str = "icao-35x45",
    measure_latency: bool = True,
    progress: Callable[[str], None] = lambda _line: None,
    inputs: dict[str, Any] | None = None,
) -> BuildReport:
    """Build, gate and record the int8 variants of `names` (default: every model) into
    `out_dir` (default: the models directory, where the runtime looks for them). The manifest
    written there describes this build only; `inputs` (the set-up's cache key, `int8_build`)
    is recorded in it as given."""
    try:
        import ai_edge_quantizer  # noqa: F401 - only to say what is missing, before any work
    except ImportError:
        raise ApplianceError(
            "building int8 models needs ai-edge-quantizer: pip install 'appliance[build]'"
        ) from None
    out_dir = out_dir or models_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    calibration = [Portrait.load(p) for p in sorted(calibration_images, key=lambda p: p.name)]
    holdout = [Portrait.load(p) for p in sorted(holdout_images, key=lambda p: p.name)]
    if not calibration or not holdout:
        raise ApplianceError("the build needs at least one calibration and one held-out portrait")
    if {p.sha256 for p in calibration} & {p.sha256 for p in holdout}:
        raise ApplianceError("a held-out portrait is also in the calibration set")
    runner = Runner(models_dir, num_threads)
    # The ID check's own copies: close-ups cropped at the crown are checked framed.
    float_id, id_holdout, framed_count = id_subjects(runner.service(), holdout, spec_id)
    if framed_count:
        progress(f"ID check: {framed_count} of {len(holdout)} held-out portraits framed")
    builds, paths = [], {}
    for name in names or list(MODELS):
        progress(f"building {name}")
        builds.append(
            build_one(
                name,
                runner,
                out_dir,
                calibration,
                (holdout, id_holdout),
                float_id,
                spec_id,
                measure_latency,
            )
        )
        paths[name] = out_dir / builds[-1].file
        progress(f"  {builds[-1].gate_summary()}")
    builds = _with_combined_check(builds, paths, float_id, runner, id_holdout, spec_id)
    from ai_edge_quantizer import recipe

    manifest = {
        "version": MANIFEST_VERSION,
        "recipe": {
            "name": RECIPE_NAME,
            "base": json.loads(json.dumps(getattr(recipe, RECIPE_NAME)(), default=str)),
            "kept_float": "each model's output heads (see its notes) and xnnpack_float_only",
            "activation_ranges": RANGES,
            "range_quantile": RANGE_QUANTILE,
            "model_ranges": {k: list(v) for k, v in MODEL_RANGES.items()},
            "input_range": "the range the wrapper feeds (exact for uint8 pixels)",
            "equalisation": {
                "pairs": "linear depthwise convolution -> convolution",
                "alpha": EQUALISE_ALPHA,
                "floor": EQUALISE_FLOOR,
                "models": list(CORRECTED_MODELS),
            },
            "bias_correction": "int8 weight rounding, calibration input means",
            "quantizer": f"ai-edge-quantizer {_version('ai-edge-quantizer')}",
            "runtime": f"ai-edge-litert {_version('ai-edge-litert')}",
            "calibration_threads": num_threads,
            "xnnpack_float_only": list(XNNPACK_FLOAT_ONLY),
        },
        "calibration": {
            "images": [{"name": p.name, "sha256": p.sha256} for p in calibration],
            "augmentations": list(AUGMENTATIONS),
        },
        "holdout": {
            "images": [{"name": p.name, "sha256": p.sha256} for p in holdout],
            "augmentations": ["as is", "mirrored"],
            "id_spec": spec_id,
            "id_check_framed": framed_count,
        },
        "models": [b.to_dict() for b in builds],
    }
    if inputs is not None:
        manifest["inputs"] = inputs
    path = out_dir / MANIFEST_NAME
    _write(path, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return BuildReport(out_dir, path, tuple(builds))
