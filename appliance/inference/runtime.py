"""The TFLite interpreter behind every model: LiteRT, its delegates, and quantized I/O.

`ai_edge_litert` (LiteRT) is the runtime; `tflite_runtime` is accepted where only that is
installed, with its limits stated in the errors. The same `TFLiteModel` runs float,
fp16-weight and full-int8 models: input quantization is read from the model itself.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from appliance.errors import AcceleratorError, ImageError, ModelError, RuntimeUnavailableError

_BACKENDS = (
    ("ai-edge-litert", "ai_edge_litert.interpreter", "ai_edge_litert"),
    ("tflite-runtime", "tflite_runtime.interpreter", "tflite_runtime"),
)

# `auto` tries these in order; the CPU (XNNPACK) always works and ends the list.
AUTO_ORDER = ("edgetpu", "gpu", "cpu")


@dataclass(frozen=True)
class InterpreterBackend:
    """Which Python TFLite runtime is in use."""

    name: str
    version: str
    module: ModuleType

    @property
    def load_delegate(self) -> Callable[..., Any]:
        loader: Callable[..., Any] = self.module.load_delegate
        return loader


def load_backend() -> InterpreterBackend:
    """Import LiteRT, or tflite-runtime where only that is installed."""
    reasons = []
    for name, module_name, package in _BACKENDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            reasons.append(f"{name}: {exc}")
            continue
        version = getattr(importlib.import_module(package), "__version__", "unknown")
        return InterpreterBackend(name, str(version), module)
    raise RuntimeUnavailableError(
        "no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert) ("
        + "; ".join(reasons)
        + ")"
    )


@dataclass(frozen=True)
class AcceleratorChoice:
    """The accelerator in use, why, and why every other one tried was not."""

    name: str
    argument: str
    reason: str
    rejected: tuple[tuple[str, str], ...] = ()
    loader: Callable[[], Any] = field(default=lambda: None, repr=False, compare=False)

    def new_delegates(self) -> list[Any]:
        """A fresh delegate list for one interpreter (empty for the CPU path)."""
        delegate = self.loader()
        return [] if delegate is None else [delegate]


def _delegate_module(name: str) -> ModuleType:
    return importlib.import_module(f"appliance.inference.delegates.{name}")


def select_accelerator(setting: str, backend: InterpreterBackend) -> AcceleratorChoice:
    """Resolve the config's accelerator setting to a loaded delegate (or the CPU)."""
    name, _, argument = setting.partition(":")
    if name != "auto":
        module = _delegate_module(name)
        first = module.load(backend.load_delegate, argument)  # raises AcceleratorError
        loader = _loader(module, backend, argument, first)
        return AcceleratorChoice(
            name, argument, f"configured: accelerator = {setting!r}", (), loader
        )
    rejected: list[tuple[str, str]] = []
    for candidate in AUTO_ORDER:
        module = _delegate_module(candidate)
        try:
            first = module.load(backend.load_delegate, "")
        except AcceleratorError as exc:
            rejected.append((candidate, str(exc)))
            continue
        reason = "auto: " + (
            "first accelerator that loaded"
            if candidate != "cpu"
            else "no accelerator loaded, using XNNPACK on the CPU"
        )
        return AcceleratorChoice(
            candidate, "", reason, tuple(rejected), _loader(module, backend, "", first)
        )
    raise AcceleratorError("no accelerator could be loaded, not even the CPU")  # unreachable


def _loader(module: ModuleType, backend: InterpreterBackend, argument: str, first: Any) -> Any:
    # The delegate loaded while choosing serves the first interpreter; later ones get their own.
    pending = [first]

    def load() -> Any:
        return pending.pop() if pending else module.load(backend.load_delegate, argument)

    return load


@dataclass(frozen=True)
class TensorSpec:
    name: str
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def _tensor_spec(detail: dict[str, Any]) -> TensorSpec:
    params = detail.get("quantization_parameters") or {}
    scales = params.get("scales")
    zeros = params.get("zero_points")
    scale, zero = detail.get("quantization", (0.0, 0))
    if scales is not None and zeros is not None and len(scales) == 1:
        scale, zero = float(scales[0]), int(zeros[0])
    return TensorSpec(
        name=str(detail["name"]),
        index=int(detail["index"]),
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero),
    )


class TFLiteModel:
    """One loaded model: float, fp16-weight or int8; thread-safe `run`."""

    def __init__(
        self,
        path: Path,
        backend: InterpreterBackend,
        accelerator: AcceleratorChoice,
        *,
        num_threads: int,
        input_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        self.path = path
        self.backend = backend
        self.accelerator = accelerator
        self.input_range = input_range
        self._lock = threading.Lock()
        try:
            self._interpreter = backend.module.Interpreter(
                model_path=str(path),
                num_threads=num_threads,
                experimental_delegates=accelerator.new_delegates() or None,
            )
            self._interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as exc:
            raise ModelError(self._load_failure(exc)) from None
        self.inputs = [_tensor_spec(d) for d in self._interpreter.get_input_details()]
        self.outputs = [_tensor_spec(d) for d in self._interpreter.get_output_details()]
        if len(self.inputs) != 1 or len(self.inputs[0].shape) != 4:
            raise ModelError(f"{path.name}: expected one NHWC image input, got {self.inputs}")

    def _load_failure(self, exc: BaseException) -> str:
        text = " ".join(str(exc).split())
        if "custom op" in text.lower() or "Convolution2DTransposeBias" in text:
            hint = (
                "tflite-runtime cannot run this model's custom op Convolution2DTransposeBias "
                "(and tflite-runtime 2.14 needs numpy < 2): install ai-edge-litert instead"
                if self.backend.name == "tflite-runtime"
                else "this runtime lacks an op the model needs; update ai-edge-litert"
            )
            return f"{self.path.name} cannot be loaded: {hint} ({text[:200]})"
        return f"{self.path.name} cannot be loaded by {self.backend.name}: {text[:300]}"

    def op_details(self) -> list[dict[str, Any]]:
        """The interpreter's nodes after delegation (a DELEGATE node per delegated run)."""
        details = getattr(self._interpreter, "_get_ops_details", None)
        return list(details()) if callable(details) else []

    @property
    def input_size(self) -> tuple[int, int]:
        """(width, height) the model takes."""
        _, height, width, _ = self.inputs[0].shape
        return width, height

    def _quantize_input(self, image: np.ndarray) -> np.ndarray:
        spec = self.inputs[0]
        low, high = self.input_range
        if not spec.quantized:
            scaled = image.astype(np.float32) * np.float32((high - low) / 255.0)
            return (scaled + np.float32(low)).astype(spec.dtype)[np.newaxis]
        info = np.iinfo(spec.dtype)
        real = image.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
        quantized = np.round(real / np.float32(spec.scale)) + spec.zero_point
        return np.clip(quantized, info.min, info.max).astype(spec.dtype)[np.newaxis]

    def _dequantize(self, spec: TensorSpec, data: np.ndarray) -> np.ndarray:
        if spec.quantized and spec.scale:
            return (data.astype(np.float32) - np.float32(spec.zero_point)) * np.float32(spec.scale)
        return data.astype(np.float32, copy=False)

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        """Run on one uint8 RGB image already at the model's input size; float32 outputs."""
        width, height = self.input_size
        if image.dtype != np.uint8 or image.shape != (height, width, 3):
            raise ImageError(
                f"{self.path.name} takes a {width}x{height} RGB uint8 image, got "
                f"{image.dtype} {image.shape}"
            )
        tensor = self._quantize_input(image)
        with self._lock:
            self._interpreter.set_tensor(self.inputs[0].index, tensor)
            self._interpreter.invoke()
            raw = [self._interpreter.get_tensor(o.index) for o in self.outputs]
        return [self._dequantize(spec, data) for spec, data in zip(self.outputs, raw, strict=True)]

    def forget(self) -> None:
        """Overwrite what the interpreter keeps of the last photo (its input tensor, every
        activation in its arena, its outputs) by running once on a black image: called at a
        wipe, since the arena is never freed and so never scrubbed."""
        width, height = self.input_size
        self.run(np.zeros((height, width, 3), np.uint8))

    def output_by_shape(self, outputs: list[np.ndarray], last_dim: int) -> np.ndarray:
        """Pick the output whose last dimension is `last_dim` (output order is not stable)."""
        for array in outputs:
            if array.shape[-1] == last_dim:
                return array
        raise ModelError(f"{self.path.name}: no output with last dimension {last_dim}")
