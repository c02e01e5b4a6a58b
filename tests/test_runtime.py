"""The interpreter wrapper and accelerator selection, on the real LiteRT runtime."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from appliance.config import InferenceConfig
from appliance.errors import AcceleratorError, ApplianceError, ImageError, ModelError
from appliance.inference.registry import verified_model_path
from appliance.inference.runtime import (
    InterpreterBackend,
    TensorSpec,
    TFLiteModel,
    load_backend,
    select_accelerator,
)
from appliance.inference.service import InferenceService


@pytest.fixture(scope="module")
def backend() -> InterpreterBackend:
    return load_backend()


def test_runtime_is_litert(backend: InterpreterBackend) -> None:
    assert backend.name == "ai-edge-litert"
    assert backend.version != "unknown"


def test_edgetpu_without_one_gives_the_documented_error(backend: InterpreterBackend) -> None:
    with pytest.raises(AcceleratorError) as info:
        select_accelerator("edgetpu", backend)
    message = str(info.value)
    assert message.startswith("No Edge TPU found")
    assert 'accelerator = "cpu"' in message
    assert "libedgetpu.so.1" in message


def test_gpu_without_a_delegate_library(backend: InterpreterBackend) -> None:
    with pytest.raises(AcceleratorError, match="No GPU delegate"):
        select_accelerator("gpu", backend)


def test_auto_falls_back_to_the_cpu_and_says_why(backend: InterpreterBackend) -> None:
    choice = select_accelerator("auto", backend)
    assert choice.name == "cpu"
    assert "XNNPACK" in choice.reason
    rejected = dict(choice.rejected)
    assert set(rejected) == {"edgetpu", "gpu"}
    assert "No Edge TPU found" in rejected["edgetpu"]
    assert choice.new_delegates() == []


def test_external_delegate_that_does_not_exist(backend: InterpreterBackend) -> None:
    with pytest.raises(AcceleratorError) as info:
        select_accelerator("external:/nonexistent.so", backend)
    assert "/nonexistent.so does not exist" in str(info.value)


def test_external_delegate_that_is_not_a_delegate(
    backend: InterpreterBackend, tmp_path: Path
) -> None:
    bogus = tmp_path / "libbogus.so"
    bogus.write_bytes(b"\x7fELF not really")
    with pytest.raises(AcceleratorError, match="could not be loaded"):
        select_accelerator(f"external:{bogus}", backend)


def test_a_library_that_is_not_a_delegate(backend: InterpreterBackend) -> None:
    libm = next(p for p in Path("/usr/lib").glob("*/libm.so.6"))
    with pytest.raises(AcceleratorError, match="is not a TFLite delegate"):
        select_accelerator(f"external:{libm}", backend)


def test_load_delegate_value_error_is_reported(
    backend: InterpreterBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that loads but whose delegate refuses to start raises ValueError in LiteRT."""

    def refusing(library: str, options: object = None) -> object:
        raise ValueError(f"Failed to load delegate from {library}")

    fake = InterpreterBackend("ai-edge-litert", "test", SimpleNamespace(load_delegate=refusing))  # type: ignore[arg-type]
    from appliance.inference.delegates import edgetpu

    # Pretend libedgetpu is installed, so the delegate itself is what refuses.
    monkeypatch.setattr(edgetpu, "check_library", lambda library: None)
    with pytest.raises(AcceleratorError, match="Failed to load delegate"):
        edgetpu.load(fake.load_delegate, "")


def test_service_reports_the_configured_accelerator_error(models_dir: Path) -> None:
    with pytest.raises(AcceleratorError, match="No Edge TPU found"):
        InferenceService.from_config(InferenceConfig(models_dir=models_dir, accelerator="edgetpu"))


def test_num_threads_is_configurable(models_dir: Path, backend: InterpreterBackend) -> None:
    path = verified_model_path("face_detection_short_range", models_dir)
    choice = select_accelerator("cpu", backend)
    for threads in (1, 4):
        model = TFLiteModel(path, backend, choice, num_threads=threads, input_range=(-1.0, 1.0))
        out = model.run(np.zeros((128, 128, 3), np.uint8))
        assert [o.shape for o in out] in ([(1, 896, 16), (1, 896, 1)], [(1, 896, 1), (1, 896, 16)])


def test_wrong_input_raises_image_error_not_an_interpreter_crash(
    models_dir: Path, backend: InterpreterBackend
) -> None:
    path = verified_model_path("face_landmark", models_dir)
    model = TFLiteModel(path, backend, select_accelerator("cpu", backend), num_threads=1)
    for bad in (np.zeros((10, 10, 3), np.uint8), np.zeros((192, 192, 3), np.float32)):
        with pytest.raises(ImageError):
            model.run(bad)


def test_a_file_that_is_not_a_model(tmp_path: Path, backend: InterpreterBackend) -> None:
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match=r"bogus.tflite cannot be loaded"):
        TFLiteModel(bogus, backend, select_accelerator("cpu", backend), num_threads=1)


def test_tflite_runtime_custom_op_failure_is_explained(
    tmp_path: Path, backend: InterpreterBackend
) -> None:
    class NoCustomOps:
        def __init__(self, **_: object) -> None:
            raise RuntimeError(
                "Encountered unresolved custom op: Convolution2DTransposeBias.Node number 3"
            )

    old_runtime = InterpreterBackend(
        "tflite-runtime",
        "2.14.0",
        SimpleNamespace(Interpreter=NoCustomOps, load_delegate=None),  # type: ignore[arg-type]
    )
    with pytest.raises(ModelError) as info:
        TFLiteModel(
            tmp_path / "seg.tflite", old_runtime, select_accelerator("cpu", backend), num_threads=1
        )
    message = str(info.value)
    assert "Convolution2DTransposeBias" in message
    assert "numpy < 2" in message
    assert "install ai-edge-litert" in message
    assert isinstance(info.value, ApplianceError)


def _spec(dtype: type, scale: float, zero: int) -> TensorSpec:
    return TensorSpec("t", 0, (1, 2, 2, 3), np.dtype(dtype), scale, zero)


def test_int8_input_quantization_follows_the_model_parameters(
    models_dir: Path, backend: InterpreterBackend
) -> None:
    path = verified_model_path("face_detection_short_range", models_dir)
    model = TFLiteModel(
        path, backend, select_accelerator("cpu", backend), num_threads=1, input_range=(-1.0, 1.0)
    )
    pixels = np.array([[[0, 128, 255]] * 2] * 2, dtype=np.uint8)
    # The usual full-int8 input for a [0, 1] model: scale 1/255, zero point -128.
    model.input_range = (0.0, 1.0)
    model.inputs = [_spec(np.int8, 1.0 / 255.0, -128)]
    q = model._quantize_input(pixels)
    assert q.dtype == np.int8
    assert q[0, 0, 0].tolist() == [-128, 0, 127]
    # A [-1, 1] model (BlazeFace) with scale 2/255: pixel 0 is -1.0, the bottom of int8.
    model.input_range = (-1.0, 1.0)
    model.inputs = [_spec(np.int8, 2.0 / 255.0, 0)]
    q = model._quantize_input(pixels)
    assert q[0, 0, 0, 0] in (-128, -127) and q[0, 0, 0, 2] == 127
    # uint8 input, [0, 1] range, scale 1/255 zero 0: the pixels pass through unchanged.
    model.input_range = (0.0, 1.0)
    model.inputs = [_spec(np.uint8, 1.0 / 255.0, 0)]
    assert model._quantize_input(pixels)[0].tolist() == pixels.tolist()
    out = model._dequantize(_spec(np.int8, 0.5, -3), np.array([-3, 1, 127], dtype=np.int8))
    assert out.tolist() == [0.0, 2.0, 65.0]


def test_forget_overwrites_what_a_model_keeps_of_the_last_photo(
    models_dir: Path, backend: InterpreterBackend
) -> None:
    path = verified_model_path("selfie_segmentation", models_dir)
    model = TFLiteModel(path, backend, select_accelerator("cpu", backend), num_threads=1)
    width, height = model.input_size
    photo = np.random.default_rng(15).integers(0, 255, (height, width, 3), dtype=np.uint8)
    black = np.zeros((height, width, 3), np.uint8)
    blank = [o.copy() for o in model.run(black)]
    model.run(photo)
    kept = model._interpreter.get_tensor(model.inputs[0].index)
    assert not np.array_equal(kept, model._quantize_input(black))  # the photo is in there
    model.forget()
    assert np.array_equal(
        model._interpreter.get_tensor(model.inputs[0].index), model._quantize_input(black)
    )
    outputs = [model._interpreter.get_tensor(o.index) for o in model.outputs]
    assert all(np.array_equal(model._dequantize(s, o), e)
               for s, o, e in zip(model.outputs, outputs, blank, strict=True))  # fmt: skip
    # (the activations between them are overwritten by the same run on the black image)
