"""Activation ranges from the calibrator's per-sample extremes (`quantize_ranges`), and the
int8 input of a real model being exact for every uint8 pixel level."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.inference import quantize_ranges

NEEDS_QUANTIZER = pytest.mark.skipif(
    importlib.util.find_spec("ai_edge_quantizer") is None,
    reason="ai-edge-quantizer is not installed: pip install 'appliance[build]'",
)


def collected(lows: list[float], highs: list[float]) -> dict[str, Any]:
    qsv: dict[str, Any] = {"min": np.array([lows[0]]), "max": np.array([highs[0]])}
    for low, high in zip(lows[1:], highs[1:], strict=True):
        qsv = quantize_ranges.collect_update(qsv, {"min": np.array([low]), "max": np.array([high])})
    return qsv


def test_each_way_of_settling_the_ranges() -> None:
    highs = [float(v) for v in range(1, 101)]  # one sample reaching 100, most far less
    lows = [-v / 10 for v in highs]
    qsvs = {"t": collected(lows, highs), "weights": {"other": 1}}
    mean = quantize_ranges.settle(qsvs, "mean", 0.95, "", (0, 0))["t"]
    assert mean["min"][0] == pytest.approx(-5.05) and mean["max"][0] == pytest.approx(50.5)
    every = quantize_ranges.settle(qsvs, "min_max", 0.95, "", (0, 0))["t"]
    assert every["min"][0] == pytest.approx(-10) and every["max"][0] == pytest.approx(100)
    settled = quantize_ranges.settle(qsvs, "quantile", 0.95, "", (0, 0))
    assert settled["t"]["max"][0] == pytest.approx(np.quantile(highs, 0.95))
    assert settled["t"]["min"][0] == pytest.approx(np.quantile(lows, 0.05))
    assert "mins" not in settled["t"] and settled["weights"] == {"other": 1}
    assert settled["t"]["max"].dtype == np.float32
    with pytest.raises(ApplianceError, match="choose one of"):
        quantize_ranges.settle(qsvs, "median", 0.95, "", (0, 0))


def test_the_order_of_the_samples_does_not_matter() -> None:
    rng = np.random.default_rng(3)
    highs = list(rng.uniform(1, 9, 40))
    lows = list(-rng.uniform(1, 9, 40))
    one = quantize_ranges.settle({"t": collected(lows, highs)}, "quantile", 0.9, "", (0, 0))
    two = quantize_ranges.settle(
        {"t": collected(lows[::-1], highs[::-1])}, "quantile", 0.9, "", (0, 0)
    )
    assert one["t"]["min"] == two["t"]["min"] and one["t"]["max"] == two["t"]["max"]


def test_the_input_gets_the_range_the_wrapper_feeds() -> None:
    qsvs = {"in": collected([0.01, 0.0], [0.9, 0.93]), "t": collected([-1.0, -2.0], [1.0, 2.0])}
    settled = quantize_ranges.settle(qsvs, "quantile", 0.95, "in", (0.0, 1.0))
    assert settled["in"]["min"][0] == 0.0 and settled["in"]["max"][0] == 1.0
    assert settled["t"]["max"][0] < 2.0


@NEEDS_QUANTIZER
def test_the_int8_input_of_a_real_model_is_exact_for_every_pixel_level(models_dir: Path) -> None:
    """The segmenter's calibration samples never reach pure white on their own average: its
    int8 input must still cover [0, 1] in steps of 1/255, or white backgrounds clip."""
    from appliance.inference import tflite_graph
    from appliance.inference.quantize import XNNPACK_FLOAT_ONLY, prepare_float_model, quantize_model
    from appliance.inference.registry import get_model, verified_model_path

    name = "selfie_segmentation"
    spec = get_model(name)
    prepared, _ = prepare_float_model(verified_model_path(name, models_dir).read_bytes())
    grey = [np.full((256, 256, 3), v, np.float32) for v in (0.2, 0.5, 0.8)]
    data = quantize_model(
        prepared, grey, 1, (), XNNPACK_FLOAT_ONLY, input_range=(spec.input_min, spec.input_max)
    )
    model = tflite_graph.read_model(data)
    graph = model.subgraphs[0]
    quant = graph.tensors[graph.inputs[0]].quantization
    scale, zero = float(quant.scale[0]), int(quant.zeroPoint[0])
    levels = np.arange(256) / 255.0 * (spec.input_max - spec.input_min) + spec.input_min
    codes = np.round(levels / scale) + zero
    assert codes.min() >= -128 and codes.max() <= 127  # nothing clipped
    assert len(np.unique(codes)) == 256  # every pixel level keeps its own code
    measured = quantize_model(prepared, grey, 1, (), XNNPACK_FLOAT_ONLY)
    graph = tflite_graph.read_model(measured).subgraphs[0]
    clipped = graph.tensors[graph.inputs[0]].quantization
    assert (127 - int(clipped.zeroPoint[0])) * float(clipped.scale[0]) < 0.9  # measured: clips
