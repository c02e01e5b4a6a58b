"""Before int8 quantization: cross-layer equalisation and bias correction (Nagel et al. 2019).

Both change only the float model's constants: equalisation moves scale between a depthwise
convolution and the convolution after it (the float model computes the same), bias correction
moves each convolution's bias by the mean error its int8 weights make on the calibration
samples. `quantize.quantize_corrected` runs them around the quantizer. Build-only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from appliance.errors import ApplianceError
from appliance.inference import tflite_graph

# Cross-layer equalisation (equalise_depthwise): channel scale = (activation range / next
# layer's weight range) ** EQUALISE_ALPHA; ranges under EQUALISE_FLOOR of the widest count as
# that much, so a nearly dead channel's weights are not blown up past what int8 kernels take.
EQUALISE_ALPHA = 0.75
EQUALISE_FLOOR = 0.05


def _float_tensors(model: bytes, samples: Sequence[np.ndarray], tensors: Sequence[int]) -> Any:
    """Per sample, {tensor index: value} of a float model's intermediate tensors, run the way
    the quantizer's calibrator runs it (XNNPACK, all tensors kept), on one thread."""
    from ai_edge_quantizer.utils import tfl_interpreter_utils

    with warnings.catch_warnings():  # "preserve_all_tensors is for debugging": it is used so
        warnings.simplefilter("ignore", UserWarning)
        interpreter = tfl_interpreter_utils.create_tfl_interpreter(model, num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    for sample in samples:
        interpreter.set_tensor(index, sample[np.newaxis].astype(np.float32))
        interpreter.invoke()
        yield {t: interpreter.get_tensor(t) for t in tensors}


def _weights(model: Any, tensor: Any) -> np.ndarray:
    data = tflite_graph._constant(model, tensor)
    if data is None or tensor.type != tflite_graph._schema().TensorType.FLOAT32:
        raise ApplianceError(f"{tflite_graph.tensor_name(tensor)} is not a float32 constant")
    return data.view("<f4").astype(np.float64).reshape(tuple(int(d) for d in tensor.shape))


def _store(model: Any, tensor: Any, values: np.ndarray) -> None:
    model.buffers[tensor.buffer].data = np.frombuffer(values.astype("<f4").tobytes(), np.uint8)


def _depthwise_pairs(model: Any) -> list[tuple[Any, Any]]:
    """(depthwise, conv) pairs where a linear depthwise convolution (multiplier 1) feeds only
    the input of one convolution, with weights and biases no other tensor shares."""
    graph = model.subgraphs[0]
    consumers: dict[int, list[Any]] = {}
    buffer_users: dict[int, int] = {}
    for tensor in graph.tensors:
        buffer_users[tensor.buffer] = buffer_users.get(tensor.buffer, 0) + 1
    for op in graph.operators:
        for i in op.inputs:
            consumers.setdefault(int(i), []).append(op)
    outputs = {int(t) for t in graph.outputs}
    pairs = []
    for op in graph.operators:
        if tflite_graph.opcode_name(model, op.opcodeIndex) != "DEPTHWISE_CONV_2D":
            continue
        options, out = op.builtinOptions, int(op.outputs[0])
        users = consumers.get(out, [])
        if (
            options.fusedActivationFunction != 0
            or options.depthMultiplier not in (0, 1)
            or out in outputs
            or len(users) != 1
            or tflite_graph.opcode_name(model, users[0].opcodeIndex) != "CONV_2D"
            or int(users[0].inputs[0]) != out
            or len(op.inputs) < 3
        ):
            continue
        constants = [graph.tensors[i] for i in (op.inputs[1], op.inputs[2], users[0].inputs[1])]
        if all(
            buffer_users[t.buffer] == 1 and tflite_graph._constant(model, t) is not None
            for t in constants
        ):
            pairs.append((op, users[0]))
    return pairs


def equalise_depthwise(
    prepared: bytes,
    samples: Sequence[np.ndarray],
    alpha: float = EQUALISE_ALPHA,
    floor: float = EQUALISE_FLOOR,
) -> tuple[bytes, int]:
    """Cross-layer equalisation (Nagel et al. 2019, with calibration ranges): divide channel c
    of each depthwise convolution in `_depthwise_pairs` (weights and bias) by s_c and multiply
    the next convolution's input channel c by s_c. Nothing nonlinear lies between, so the float
    model computes the same; int8 activations are per tensor, and MediaPipe's depthwise outputs
    span up to 30x their spread because of a few wide channels (BlazeFace: one reaches -224
    where the spread is 7), so the other channels get a handful of int8 steps. s_c balances the
    channel's range over the samples against the next layer's weight range for that channel,
    (range / weight range) ** alpha. The new bytes and the number of pairs."""
    model = tflite_graph.read_model(prepared)
    graph = model.subgraphs[0]
    pairs = _depthwise_pairs(model)
    if not pairs:
        return prepared, 0
    ranges: dict[int, np.ndarray] = {}
    for values in _float_tensors(prepared, samples, [int(d.outputs[0]) for d, _ in pairs]):
        for t, v in values.items():
            peak = np.abs(v.reshape(-1, v.shape[-1])).max(axis=0).astype(np.float64)
            ranges[t] = np.maximum(ranges[t], peak) if t in ranges else peak
    for depthwise, conv in pairs:
        peak = ranges[int(depthwise.outputs[0])]
        peak = np.maximum(peak, max(float(peak.max()), 1e-12) * floor)
        kernel, bias = (graph.tensors[i] for i in depthwise.inputs[1:3])
        following = graph.tensors[conv.inputs[1]]  # [out, h, w, in]
        w1, b1, w2 = _weights(model, kernel), _weights(model, bias), _weights(model, following)
        column = np.maximum(np.abs(w2).max(axis=(0, 1, 2)), 1e-12)
        scale = (peak / column) ** alpha
        scale /= np.exp(np.log(scale).mean())  # overall size unchanged
        _store(model, kernel, w1 / scale)  # [1, h, w, channels]
        _store(model, bias, b1 / scale)
        _store(model, following, w2 * scale)
    return tflite_graph.write_model(model), len(pairs)


def _dequantized_weights(quantized: bytes) -> dict[str, np.ndarray]:
    """Tensor name -> the value of each int8 constant (weights) in a quantized model."""
    model = tflite_graph.read_model(quantized)
    int8 = tflite_graph._schema().TensorType.INT8
    out = {}
    for tensor in model.subgraphs[0].tensors:
        data = tflite_graph._constant(model, tensor)
        if tensor.type != int8 or data is None or tensor.quantization is None:
            continue
        values = data.view(np.int8).astype(np.float64).reshape([int(d) for d in tensor.shape])
        shape = [1] * values.ndim
        shape[int(tensor.quantization.quantizedDimension)] = -1
        scale = np.asarray(tensor.quantization.scale, np.float64).reshape(shape)
        zero = np.asarray(tensor.quantization.zeroPoint, np.float64).reshape(shape)
        out[tflite_graph.tensor_name(tensor)] = (values - zero) * scale
    return out


def correct_biases(
    prepared: bytes, samples: Sequence[np.ndarray], quantized: bytes
) -> tuple[bytes, int]:
    """Bias correction (Nagel et al. 2019, empirical input means): a convolution whose int8
    weights W' differ from its float weights W adds (W - W') x to its output on average
    E[(W - W') x] = (W - W') E[x] per output channel, a shift its bias absorbs. E[x] is each
    input channel's mean over the samples (image borders taken as inside). Rounding errors
    are small, but where the inputs' mean is large they add up the same way in every pixel.
    `quantized` is `prepared` quantized (its int8 weights are read back); convolutions it
    left float are not touched. The new bytes and the number of convolutions corrected."""
    model = tflite_graph.read_model(prepared)
    graph = model.subgraphs[0]
    rounded = _dequantized_weights(quantized)
    convs = [
        op
        for op in graph.operators
        if tflite_graph.opcode_name(model, op.opcodeIndex) in ("CONV_2D", "DEPTHWISE_CONV_2D")
        and len(op.inputs) >= 3
        and int(op.inputs[2]) >= 0
        and tflite_graph.tensor_name(graph.tensors[op.inputs[1]]) in rounded
    ]
    inputs = sorted({int(op.inputs[0]) for op in convs})
    sums: dict[int, np.ndarray] = {}
    for values in _float_tensors(prepared, samples, inputs):
        for t, v in values.items():
            mean = v.reshape(-1, v.shape[-1]).astype(np.float64).mean(axis=0)
            sums[t] = sums[t] + mean if t in sums else mean
    for op in convs:
        kernel, bias = graph.tensors[op.inputs[1]], graph.tensors[op.inputs[2]]
        error = _weights(model, kernel) - rounded[tflite_graph.tensor_name(kernel)]
        mean = sums[int(op.inputs[0])] / len(samples)
        if tflite_graph.opcode_name(model, op.opcodeIndex) == "CONV_2D":  # [out, h, w, in]
            shift = np.einsum("ohwi,i->o", error, mean)
        else:  # [1, h, w, channels]
            shift = error[0].sum(axis=(0, 1)) * mean
        _store(model, bias, _weights(model, bias) + shift)
    return tflite_graph.write_model(model), len(convs)
