"""int8 model build: graph surgery, quantization, the accuracy gate, determinism, and the
runtime's choice of variant. Small models are built here from flatbuffer objects; the real
models are used where the point is that the real thing works."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from conftest import ROOT, shared_portraits

from appliance.config import Config, InferenceConfig
from appliance.inference import tflite_graph
from appliance.inference.registry import MODELS, verified_model_path
from appliance.inference.runtime import TFLiteModel
from appliance.inference.segmenter import PortraitSegmenter
from appliance.inference.variants import (
    MANIFEST_NAME,
    GateCheck,
    ModelBuild,
    int8_file_name,
    select_model,
)

NEEDS_QUANTIZER = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_quantizer") is None,
    reason="ai-edge-quantizer is not installed: pip install 'appliance[build]'",
)


def _schema() -> Any:
    return tflite_graph._schema()


def tiny_mediapipe_like_model() -> bytes:
    """8x8x3 -> conv 3x3 (float16 weights behind DEQUANTIZE) -> RELU -> PRELU -> conv 1x1 whose
    weights are sparse float16 behind DENSIFY + DEQUANTIZE; old-style op codes, no signature:
    the shapes of MediaPipe's files, small enough to quantize in a second."""
    s, rng = _schema(), np.random.default_rng(7)
    model, graph = s.ModelT(), s.SubGraphT()
    model.version, model.buffers, model.operatorCodes = 3, [s.BufferT()], []
    graph.tensors, graph.operators = [], []

    def tensor(name: str, shape: tuple[int, ...], kind: int, data: np.ndarray | None = None) -> int:
        t, b = s.TensorT(), s.BufferT()
        t.name, t.shape, t.type = name.encode(), np.asarray(shape, dtype=np.int32), kind
        if data is not None:
            b.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
        model.buffers.append(b)
        t.buffer = len(model.buffers) - 1
        graph.tensors.append(t)
        return len(graph.tensors) - 1

    def op(code: int, inputs: list[int], outputs: list[int], options: Any = None) -> None:
        codes = [c.deprecatedBuiltinCode for c in model.operatorCodes]
        if code not in codes:
            entry = s.OperatorCodeT()
            entry.deprecatedBuiltinCode, entry.builtinCode, entry.version = code, 0, 1
            model.operatorCodes.append(entry)
            codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = codes.index(code), inputs, outputs
        if options is not None:
            o.builtinOptionsType, o.builtinOptions = s.BuiltinOptions.Conv2DOptions, options
        graph.operators.append(o)

    def conv() -> Any:
        options = s.Conv2DOptionsT()
        options.padding, options.strideW, options.strideH = s.Padding.SAME, 1, 1
        return options

    f32, f16, ops = s.TensorType.FLOAT32, s.TensorType.FLOAT16, s.BuiltinOperator
    x = tensor("input_1", (1, 8, 8, 3), f32)
    w1h = tensor("w1", (4, 3, 3, 3), f16, rng.normal(0, 0.5, (4, 3, 3, 3)).astype("<f2"))
    b1h = tensor("b1", (4,), f16, rng.normal(0, 0.1, 4).astype("<f2"))
    w1, b1 = tensor("w1_dequantize", (4, 3, 3, 3), f32), tensor("b1_dequantize", (4,), f32)
    conv1, relu = tensor("conv1", (1, 8, 8, 4), f32), tensor("relu1", (1, 8, 8, 4), f32)
    alpha = tensor("alpha", (1, 1, 4), f32, np.array([0.25, -0.5, 1.2, 0.0], dtype="<f4"))
    prelu = tensor("prelu1", (1, 8, 8, 4), f32)
    w2h = tensor("w2_sparse", (2, 1, 1, 4), f16, np.array([0.5, -0.75, 1.0], dtype="<f2"))
    sparsity = s.SparsityParametersT()
    sparsity.traversalOrder = np.arange(4, dtype=np.int32)
    dims = [s.DimensionMetadataT() for _ in range(4)]
    for dim, size in zip(dims[:3], (2, 1, 1), strict=True):
        dim.format, dim.denseSize = s.DimensionType.DENSE, size
    dims[3].format = s.DimensionType.SPARSE_CSR
    segments, indices = s.Uint8VectorT(), s.Uint8VectorT()
    segments.values, indices.values = np.array([0, 2, 3], np.uint8), np.array([0, 3, 1], np.uint8)
    dims[3].arraySegmentsType = dims[3].arrayIndicesType = s.SparseIndexVector.Uint8Vector
    dims[3].arraySegments, dims[3].arrayIndices = segments, indices
    sparsity.dimMetadata = dims
    graph.tensors[w2h].sparsity = sparsity
    w2d, w2 = tensor("w2_dense", (2, 1, 1, 4), f16), tensor("w2_dequantize", (2, 1, 1, 4), f32)
    b2 = tensor("b2", (2,), f32, np.array([0.1, -0.2], dtype="<f4"))
    head = tensor("head", (1, 8, 8, 2), f32)
    op(ops.DEQUANTIZE, [w1h], [w1])
    op(ops.DEQUANTIZE, [b1h], [b1])
    op(ops.CONV_2D, [x, w1, b1], [conv1], conv())
    op(ops.RELU, [conv1], [relu])
    op(ops.PRELU, [relu, alpha], [prelu])
    op(ops.DENSIFY, [w2h], [w2d])
    op(ops.DEQUANTIZE, [w2d], [w2])
    op(ops.CONV_2D, [prelu, w2, b2], [head], conv())
    graph.inputs, graph.outputs = [x], [head]
    model.subgraphs = [graph]
    return tflite_graph.write_model(model)


def run_model(data: bytes, image: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    spec = interpreter.get_input_details()[0]
    scale, zero = spec["quantization"]
    if spec["dtype"] == np.int8:
        image = np.clip(np.round(image / scale) + zero, -128, 127).astype(np.int8)
    interpreter.set_tensor(spec["index"], image)
    interpreter.invoke()
    out = interpreter.get_output_details()[0]
    data_out = interpreter.get_tensor(out["index"]).astype(np.float32)
    scale, zero = out["quantization"]
    return (data_out - zero) * scale if out["dtype"] == np.int8 else data_out


def tiny_samples(count: int = 8) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.uniform(0, 1, (8, 8, 3)).astype(np.float32) for _ in range(count)]


# --- graph surgery ----------------------------------------------------------------------------


def test_densify_matches_the_dense_array() -> None:
    model = tflite_graph.read_model(tiny_mediapipe_like_model())
    sparse = next(t for t in model.subgraphs[0].tensors if t.sparsity is not None)
    values = np.asarray(model.buffers[sparse.buffer].data).view("<f2")
    dense = tflite_graph.densify(values, (2, 1, 1, 4), sparse.sparsity)
    want = np.zeros((2, 1, 1, 4), np.float16)
    want[0, 0, 0, 0], want[0, 0, 0, 3], want[1, 0, 0, 1] = 0.5, -0.75, 1.0
    assert np.array_equal(dense, want)


def test_prepare_folds_weights_rewrites_prelu_and_keeps_the_outputs() -> None:
    from appliance.inference.quantize import prepare_float_model

    original = tiny_mediapipe_like_model()
    prepared, notes = prepare_float_model(original)
    ops = tflite_graph.op_counts(tflite_graph.read_model(prepared))
    assert "DEQUANTIZE" not in ops and "DENSIFY" not in ops and "PRELU" not in ops
    assert "RELU" not in ops  # fused into the first convolution
    assert ops["CONV_2D"] == 2
    assert any("folded 3" in n for n in notes) and any("densified 1" in n for n in notes)
    for sample in tiny_samples(3):
        want, got = run_model(original, sample[None]), run_model(prepared, sample[None])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_content=prepared).get_signature_list()
    assert signatures == {"serving_default": {"inputs": ["input"], "outputs": ["head"]}}


def test_folding_the_real_sparse_detector_is_bit_exact(models_dir: Path) -> None:
    source = verified_model_path("face_detection_full_range", models_dir).read_bytes()
    model = tflite_graph.read_model(source)
    report = tflite_graph.fold_constant_weights(model)
    assert (report.dequantize_folded, report.densify_folded) == (182, 46)
    folded = tflite_graph.write_model(model)
    image = np.random.default_rng(3).uniform(-1, 1, (1, 192, 192, 3)).astype(np.float32)
    assert np.array_equal(run_model(source, image), run_model(folded, image))


def test_output_heads_walk_back_to_the_first_op_with_weights(models_dir: Path) -> None:
    source = verified_model_path("face_detection_short_range", models_dir).read_bytes()
    model = tflite_graph.read_model(source)
    tflite_graph.fold_constant_weights(model)
    heads = tflite_graph.output_heads(model)
    assert {"regressors", "classificators", "regressor_8", "classificator_16"} <= set(heads)
    assert len(heads) == 10  # 2 concatenations, 4 reshapes, 4 convolutions


# --- quantization ------------------------------------------------------------------------------


@NEEDS_QUANTIZER
def test_the_quantizer_misreads_old_op_codes_unless_normalised() -> None:
    from appliance.inference.quantize import quantize_model

    model = tflite_graph.read_model(tiny_mediapipe_like_model())
    tflite_graph.fold_constant_weights(model)
    tflite_graph.add_signature(model)
    for code in model.operatorCodes:  # undo the normalisation: as MediaPipe ships them
        code.builtinCode = 0
    naive = quantize_model(tflite_graph.write_model(model), tiny_samples())
    with pytest.raises(RuntimeError, match="zero_point"):
        run_model(naive, tiny_samples(1)[0][None])


@NEEDS_QUANTIZER
def test_quantized_tiny_model_is_int8_close_to_float_and_deterministic() -> None:
    from appliance.inference.quantize import float_ops, prepare_float_model, quantize_model

    prepared, _ = prepare_float_model(tiny_mediapipe_like_model())
    first = quantize_model(prepared, tiny_samples())
    assert first == quantize_model(prepared, tiny_samples())
    assert float_ops(first) == {}
    covering = quantize_model(prepared, tiny_samples(), ranges="min_max")
    with_head = quantize_model(prepared, tiny_samples(), keep_float=["head"], ranges="min_max")
    assert float_ops(with_head) == {"CONV_2D": 1}
    for data, worst in ((first, 0.25), (covering, 0.05), (with_head, 0.05)):
        for sample in tiny_samples(3):
            want, got = run_model(prepared, sample[None]), run_model(data, sample[None])
            span = float(want.max() - want.min())
            assert np.abs(got - want).mean() < 0.01 * span  # a few int8 steps on average
            # "mean" ranges clip each sample's rarest values; "min_max" ranges cover them all
            assert np.abs(got - want).max() < worst * span


@NEEDS_QUANTIZER
def test_runtime_variant_keeps_xnnpack_in_one_partition(models_dir: Path, tmp_path: Path) -> None:
    from appliance.inference.quantize import (
        XNNPACK_FLOAT_ONLY,
        prepare_float_model,
        quantize_model,
        xnnpack_partitions,
    )
    from appliance.inference.quantize_eval import Runner

    source = verified_model_path("selfie_segmentation", models_dir)
    prepared, _ = prepare_float_model(source.read_bytes())
    samples = [np.random.default_rng(0).uniform(0, 1, (256, 256, 3)).astype(np.float32)]
    runner = Runner(models_dir, 1)
    counts = {}
    for label, keep in (("all int8", ()), ("runtime", XNNPACK_FLOAT_ONLY)):
        path = tmp_path / f"{label}.tflite"
        path.write_bytes(quantize_model(prepared, samples, 1, (), keep))
        counts[label] = xnnpack_partitions(runner.model(path, "selfie_segmentation"))
    assert counts["runtime"] == 1
    assert counts["all int8"] > 1  # HARD_SWISH / AVERAGE_POOL_2D in int8 split the graph


def _detector_samples(count: int) -> list[np.ndarray]:
    """Smooth random images in the detector's input range (faces are not needed for these)."""
    import cv2

    rng = np.random.default_rng(5)
    small = [rng.uniform(-1, 1, (16, 16, 3)).astype(np.float32) for _ in range(count)]
    return [cv2.resize(s, (128, 128), interpolation=cv2.INTER_CUBIC).clip(-1, 1) for s in small]


@NEEDS_QUANTIZER
def test_equalisation_keeps_the_float_outputs_and_evens_the_channels(models_dir: Path) -> None:
    from appliance.inference.equalise import _depthwise_pairs, _float_tensors, equalise_depthwise
    from appliance.inference.quantize import prepare_float_model

    source = verified_model_path("face_detection_short_range", models_dir)
    prepared, _ = prepare_float_model(source.read_bytes())
    samples = _detector_samples(4)
    equalised, pairs = equalise_depthwise(prepared, samples)
    assert pairs == 16  # every depthwise -> 1x1 convolution of BlazeFace's blocks
    assert equalised == equalise_depthwise(prepared, samples)[0]  # deterministic
    for sample in samples[:2]:
        want, got = run_model(prepared, sample[None]), run_model(equalised, sample[None])
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)

    def spread(model: bytes) -> float:  # widest channel range over the median, worst pair
        graph = tflite_graph.read_model(model)
        outputs = [int(d.outputs[0]) for d, _ in _depthwise_pairs(graph)]
        worst = 0.0
        for values in _float_tensors(model, samples, outputs):
            for v in values.values():
                peak = np.abs(v.reshape(-1, v.shape[-1])).max(axis=0)
                worst = max(worst, float(peak.max() / max(np.median(peak), 1e-9)))
        return worst

    assert spread(equalised) < 0.5 * spread(prepared)


@NEEDS_QUANTIZER
def test_bias_correction_moves_only_biases_and_cuts_the_mean_error(models_dir: Path) -> None:
    from appliance.inference.quantize import (
        correct_biases,
        prepare_float_model,
        quantize_corrected,
        quantize_model,
    )

    source = verified_model_path("face_detection_short_range", models_dir)
    prepared, _ = prepare_float_model(source.read_bytes())
    samples = _detector_samples(6)
    heads = tflite_graph.output_heads(tflite_graph.read_model(prepared))
    plain = quantize_model(prepared, samples, 1, heads)
    corrected, convs = correct_biases(prepared, samples, plain)
    assert convs == 33  # 37 convolutions, the 4 output heads stay float
    before, after = tflite_graph.read_model(prepared), tflite_graph.read_model(corrected)
    changed = {
        tflite_graph.tensor_name(t)
        for t, u in zip(before.subgraphs[0].tensors, after.subgraphs[0].tensors, strict=True)
        if t.buffer
        and not np.array_equal(
            np.asarray(before.buffers[t.buffer].data), np.asarray(after.buffers[u.buffer].data)
        )
    }
    assert changed and all(name.endswith("/Bias_dequantize") for name in changed)

    def mean_error(model: bytes) -> float:  # the regressors' mean error over the samples
        gaps = [run_model(model, s[None]) - run_model(prepared, s[None]) for s in samples]
        return float(np.abs(np.mean(gaps, axis=0)).mean())

    fixed = quantize_model(corrected, samples, 1, heads)
    assert mean_error(fixed) < mean_error(plain)
    final, _, notes = quantize_corrected(prepared, samples, 1, heads)
    assert final == quantize_corrected(prepared, samples, 1, heads)[0]
    assert notes[0].startswith("equalised 16") and "bias-corrected 33" in notes[1]


# --- the gate ---------------------------------------------------------------------------------


def test_gate_check_says_by_how_much_it_failed() -> None:
    low = GateCheck("mask IoU", 0.93, 0.97, True, "portrait.jpg", 10)
    assert not low.passed
    assert "FAILED by 0.04" in low.describe() and "portrait.jpg" in low.describe()
    high = GateCheck("keypoint error", 1.5, 2.0, False, "p.jpg", 4, " % of box")
    assert high.passed and "FAILED" not in high.describe()
    assert not GateCheck("mask IoU", 1.0, 0.97, True, "", 0).passed  # nothing measured


@NEEDS_QUANTIZER
def test_a_badly_calibrated_segmenter_fails_the_gate(
    models_dir: Path, sample_dir: Path, tmp_path: Path
) -> None:
    from appliance.inference.quantize import XNNPACK_FLOAT_ONLY, prepare_float_model, quantize_model
    from appliance.inference.quantize_eval import Portrait, Runner, gate_images, mask_gate

    source = verified_model_path("selfie_segmentation", models_dir)
    prepared, _ = prepare_float_model(source.read_bytes())
    black = [np.zeros((256, 256, 3), np.float32)]  # every activation range collapses
    broken = tmp_path / "broken-segmenter.tflite"
    broken.write_bytes(quantize_model(prepared, black, 1, (), XNNPACK_FLOAT_ONLY))
    runner = Runner(models_dir, 1)
    portraits = [Portrait.load(sample_dir / "astronaut.png")]
    reference = PortraitSegmenter(runner.model(source, "selfie_segmentation"))
    bad = PortraitSegmenter(runner.model(broken, "selfie_segmentation"))
    (failed,) = mask_gate(reference, bad, gate_images(portraits))
    (same,) = mask_gate(reference, reference, gate_images(portraits))
    assert not failed.passed and failed.value < 0.97
    assert f"FAILED by {0.97 - failed.value:.3g}" in failed.describe()
    assert same.passed and same.value == 1.0


# --- the runtime's choice -----------------------------------------------------------------------


def _fake_loader(loaded: list[Path]) -> Any:
    def load(path: Path) -> TFLiteModel:
        loaded.append(path)
        return cast(
            TFLiteModel, SimpleNamespace(path=path, accelerator=SimpleNamespace(name="cpu"))
        )

    return load


def _models_with_manifest(models_dir: Path, tmp_path: Path, passed: bool) -> Path:
    from appliance.assets import sha256_file
    from appliance.inference.registry import get_model

    directory = tmp_path / "models"
    directory.mkdir()
    source = verified_model_path("face_landmark", models_dir)
    shutil.copy(source, directory / source.name)
    int8 = directory / int8_file_name("face_landmark")
    int8.write_bytes(b"stands in for an int8 model")
    check = GateCheck("landmark mean error", 1.0 if passed else 2.5, 1.5, False, "p.jpg", 10)
    build = ModelBuild(
        "face_landmark",
        source.name,
        get_model("face_landmark").file.sha256,
        int8.name,
        sha256_file(int8),
        "static_wi8_ai8",
        (check,),
    )
    manifest = {"version": 1, "models": [build.to_dict()]}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize(
    ("passed", "setting", "int8_ms", "want", "why"),
    [
        (True, "auto", 3.0, "int8", "not slower here"),
        (True, "auto", 9.0, "float", "but slower here: int8 9.0 ms vs float 4.0 ms"),
        (True, "int8", 9.0, "int8", 'configured: variant = "int8"'),
        (True, "float", 1.0, "float", 'configured: variant = "float"'),
        (False, "auto", 1.0, "float", "FAILED by 1"),
        (False, "int8", 1.0, "float", "failed the accuracy gate"),
    ],
)
def test_runtime_runs_int8_only_when_the_gate_passed_and_it_is_not_slower(
    models_dir: Path,
    tmp_path: Path,
    passed: bool,
    setting: str,
    int8_ms: float,
    want: str,
    why: str,
) -> None:
    directory = _models_with_manifest(models_dir, tmp_path, passed)
    float_path = directory / "face_landmark.tflite"
    loaded: list[Path] = []

    def timer(model: TFLiteModel) -> float:
        return int8_ms if ".int8." in model.path.name else 4.0

    model, choice = select_model(
        "face_landmark", float_path, setting, _fake_loader(loaded), timer=timer
    )
    assert choice.variant == want and model.path == choice.path
    assert why in choice.reason
    assert (choice.path.name.endswith(".int8.tflite")) == (want == "int8")


def test_runtime_falls_back_to_float_when_the_int8_file_does_not_load(
    models_dir: Path, tmp_path: Path
) -> None:
    from appliance.errors import ModelError

    directory = _models_with_manifest(models_dir, tmp_path, passed=True)
    loaded: list[Path] = []

    def load(path: Path) -> TFLiteModel:
        if ".int8." in path.name:
            raise ModelError(f"{path.name} cannot be loaded by the GPU delegate")
        return cast(TFLiteModel, _fake_loader(loaded)(path))

    _, choice = select_model("face_landmark", directory / "face_landmark.tflite", "auto", load)
    assert choice.variant == "float" and "does not load here" in choice.reason


def test_runtime_refuses_an_int8_file_that_does_not_match_its_manifest(
    models_dir: Path, tmp_path: Path
) -> None:
    directory = _models_with_manifest(models_dir, tmp_path, passed=True)
    (directory / int8_file_name("face_landmark")).write_bytes(b"altered")
    _, choice = select_model(
        "face_landmark", directory / "face_landmark.tflite", "int8", _fake_loader([])
    )
    assert choice.variant == "float" and "does not match its manifest hash" in choice.reason
    (directory / MANIFEST_NAME).unlink()
    _, choice = select_model(
        "face_landmark", directory / "face_landmark.tflite", "auto", _fake_loader([])
    )
    assert choice.variant == "float" and "no int8 build" in choice.reason


def test_verify_int8_checks_every_file_against_the_manifest(
    models_dir: Path, tmp_path: Path
) -> None:
    from appliance.inference.variants import verify_int8

    directory = _models_with_manifest(models_dir, tmp_path, passed=True)
    name = int8_file_name("face_landmark")
    assert verify_int8(directory) == [(name, "")]
    (directory / name).write_bytes(b"altered")
    assert verify_int8(directory) == [(name, "sha256 differs from the manifest")]
    (directory / name).unlink()
    assert verify_int8(directory) == [(name, "missing")]
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    manifest["models"][0]["source_sha256"] = "0" * 64
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert verify_int8(directory) == [
        (name, "built from another float model than the pinned face_landmark.tflite")
    ]
    manifest["models"][0]["file"] = "../elsewhere.tflite"
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert verify_int8(directory) == [("../elsewhere.tflite", "not a plain file name")]
    (directory / MANIFEST_NAME).unlink()
    assert verify_int8(directory) == []


# --- the build on real models and portraits ----------------------------------------------------


@pytest.fixture(scope="module")
def full_build(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Every model built, gated and recorded into a copy of the models directory (~40 s)."""
    from appliance.inference.quantize import build_models, split_portraits

    if importlib.util.find_spec("ai_edge_quantizer") is None:
        pytest.skip("ai-edge-quantizer is not installed: pip install 'appliance[build]'")
    if len(shared_portraits()) < 4:
        pytest.skip("../shared/data/portraits/ is not present")
    directory = tmp_path_factory.mktemp("built") / "models"
    shutil.copytree(models_dir, directory)
    calibration, holdout = split_portraits(shared_portraits())
    report = build_models(directory, None, calibration, holdout, measure_latency=False)
    return SimpleNamespace(report=report, calibration=calibration, holdout=holdout)


def test_full_build_gates_every_model_and_records_its_inputs(full_build: Any) -> None:
    report = full_build.report
    print("\n".join(report.lines()))
    assert [b.name for b in report.models] == list(MODELS)
    for build in report.models:
        assert build.xnnpack_partitions == 1, build.name
        assert all(c.samples > 0 for c in build.gate), build.name
        assert all(c.passed or "FAILED by" in c.describe() for c in build.gate)
        assert (report.out_dir / build.file).is_file()
        assert (report.out_dir / build.integer_io_file).is_file()
    by_name = {b.name: b for b in report.models}
    assert "Convolution2DTransposeBias" in by_name["selfie_segmentation"].float_ops
    assert "DEPTH_TO_SPACE" in by_name["face_detection_full_range"].float_ops
    manifest = json.loads(report.manifest.read_text())
    recorded = manifest["calibration"]["images"]
    assert [i["name"] for i in recorded] == [p.name for p in full_build.calibration]
    assert all(len(i["sha256"]) == 64 and set(i) == {"name", "sha256"} for i in recorded)
    assert {i["name"] for i in manifest["holdout"]["images"]} == {
        p.name for p in full_build.holdout
    }
    assert [m["sha256"] for m in manifest["models"]] == [b.sha256 for b in report.models]


def test_same_inputs_build_the_same_bytes(
    full_build: Any, models_dir: Path, tmp_path: Path
) -> None:
    from appliance.inference.quantize import build_models

    again = build_models(
        models_dir,
        tmp_path,
        full_build.calibration,
        full_build.holdout,
        names=["face_detection_short_range"],
        measure_latency=False,
    )
    first = next(b for b in full_build.report.models if b.name == "face_detection_short_range")
    assert again.models[0].sha256 == first.sha256
    assert again.models[0].integer_io_sha256 == first.integer_io_sha256
    assert again.models[0].gate[:3] == first.gate[:3]


def test_the_runtime_and_doctor_follow_the_gate(full_build: Any) -> None:
    from appliance.doctor import run_checks
    from appliance.inference.service import InferenceService

    directory = full_build.report.out_dir
    inference = InferenceService.from_config(InferenceConfig(models_dir=directory), variant="int8")
    for build in full_build.report.models:
        if build.name in inference.variants:
            choice = inference.variants[build.name]
            assert choice.variant == ("int8" if build.passed else "float"), choice.reason
            assert ("FAILED by" in choice.reason) == (not build.passed)
    rows = {r.name: r for r in run_checks(Config(inference=InferenceConfig(models_dir=directory)))}
    for build in full_build.report.models:
        if f"variant {build.name}" not in rows:
            continue  # the landscape segmenter is built but not loaded by the service
        detail = rows[f"variant {build.name}"].detail
        if build.passed:  # auto: int8, or float with the timings that say why
            assert detail.startswith("int8: ") or "but slower here" in detail, detail
        else:
            assert detail.startswith("float: int8 failed the accuracy gate"), detail


# --- the benchmark scripts, so they cannot rot -------------------------------------------------


def test_model_benchmark_smoke(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "models.json"
    script = str(ROOT / "benchmarks" / "bench_models.py")
    command = [
        sys.executable,
        script,
        "--smoke",
        "--models-dir",
        str(models_dir),
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode == 3:
        pytest.skip(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())["results"]
    assert {r["model"] for r in rows} >= {"face_landmark", "selfie_segmentation"}
    assert {r["threads"] for r in rows} == {1, 2, 4}


def test_peer_benchmark_smoke(models_dir: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "peer.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_peer.py"),
        "--smoke",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200, check=False)
    if done.returncode == 3:
        pytest.skip(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text())
    assert report["peer"]["mediapipe"] == "0.10.14"
    assert report["images"] and all(r["peer_ms"] > 0 for r in report["images"])
