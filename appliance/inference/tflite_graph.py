"""Surgery on TFLite flatbuffers: the steps between MediaPipe's files and a quantizable model.

MediaPipe ships its models with float16 weights behind DEQUANTIZE ops (the sparse full-range
detector's also behind DENSIFY ops), with op codes in the old `deprecated_builtin_code` field
and without a serving signature. The quantizer needs float32 constants feeding each op, the new
op-code field and a signature to calibrate through, so:

* `fold_constant_weights` turns every DEQUANTIZE / DENSIFY of a constant into a float32
  constant (bit-exact) and drops those ops;
* `decompose_prelu` rewrites PRELU, which neither the int8 recipe nor XNNPACK's int8 kernels
  cover, as MUL and ADD ops; `fuse_activations` folds standalone RELUs into the op before;
* `add_signature` names the subgraph's input and outputs as a serving signature;
* `output_heads` finds the ops that produce the outputs, for the build to keep in float.

Only the schema that ships inside `ai_edge_litert` (a runtime dependency) is used, so reading
and inspecting models works on the appliance; only the build needs the quantizer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

SIGNATURE_KEY = "serving_default"
SIGNATURE_INPUT = "input"


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_model(data: bytes) -> Any:
    """The mutable object tree (`ModelT`) of a .tflite file's bytes."""
    return _schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def write_model(model: Any) -> bytes:
    """Serialise a `ModelT`; the same tree always gives the same bytes."""
    from ai_edge_litert.tools.flatbuffer_utils import convert_object_to_bytearray

    return bytes(convert_object_to_bytearray(model))


def _builtin_names() -> dict[int, str]:
    ops = _schema().BuiltinOperator
    return {value: key for key, value in vars(ops).items() if not key.startswith("_")}


def opcode_name(model: Any, opcode_index: int) -> str:
    code = model.operatorCodes[opcode_index]
    if code.customCode is not None:
        custom = code.customCode
        return custom.decode() if isinstance(custom, bytes) else str(custom)
    return _builtin_names()[max(code.builtinCode, code.deprecatedBuiltinCode)]


def op_counts(model: Any) -> dict[str, int]:
    """How many times each op appears in the model's subgraphs, by name."""
    counts: Counter[str] = Counter()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            counts[opcode_name(model, op.opcodeIndex)] += 1
    return dict(sorted(counts.items()))


def tensor_name(tensor: Any) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _constant(model: Any, tensor: Any) -> np.ndarray | None:
    buffer = model.buffers[tensor.buffer]
    if buffer.data is None or len(buffer.data) == 0:
        return None
    return np.asarray(buffer.data, dtype=np.uint8)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any) -> np.ndarray:
    """The dense array of a TFLite sparse tensor (DENSE and CSR dimensions, no block map)."""
    order = list(sparsity.traversalOrder)
    if (sparsity.blockMap is not None and len(sparsity.blockMap)) or order != sorted(order):
        raise ValueError("block-sparse or reordered sparse tensors are not supported")
    positions = np.zeros(1, dtype=np.int64)
    for size, dim in zip(shape, sparsity.dimMetadata, strict=True):
        if dim.format == _schema().DimensionType.DENSE:
            positions = (positions[:, None] * size + np.arange(size)).ravel()
        else:
            segments = np.asarray(dim.arraySegments.values, dtype=np.int64)
            indices = np.asarray(dim.arrayIndices.values, dtype=np.int64)
            positions = np.repeat(positions, np.diff(segments)) * size + indices
    if positions.size != values.size:
        raise ValueError(f"sparse tensor holds {values.size} values for {positions.size} slots")
    dense = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    dense[positions] = values
    return dense.reshape(shape)


@dataclass(frozen=True)
class FoldReport:
    dequantize_folded: int
    densify_folded: int


def _fold_sources(model: Any, subgraph: Any) -> dict[int, np.ndarray]:
    """Tensor index -> the float32 value its DEQUANTIZE/DENSIFY producer computes."""
    schema = _schema()
    values: dict[int, np.ndarray] = {}
    for op in subgraph.operators:  # ops are in execution order: DENSIFY precedes its DEQUANTIZE
        name = opcode_name(model, op.opcodeIndex)
        if name not in ("DEQUANTIZE", "DENSIFY"):
            continue
        source = subgraph.tensors[op.inputs[0]]
        raw = values.get(int(op.inputs[0]))
        if raw is None:
            data = _constant(model, source)
            if data is None:
                continue  # a DEQUANTIZE of a live activation: not a weight, keep the op
            if source.type == schema.TensorType.FLOAT16:
                raw = data.view(np.float16)
            elif source.type == schema.TensorType.FLOAT32:
                raw = data.view(np.float32)
            else:
                raise ValueError(
                    f"{tensor_name(source)}: only float16 weights are folded, "
                    f"not tensor type {source.type}"
                )
            if source.sparsity is not None:
                raw = densify(raw, tuple(int(d) for d in source.shape), source.sparsity)
        output = subgraph.tensors[op.outputs[0]]
        values[int(op.outputs[0])] = raw.reshape(tuple(int(d) for d in output.shape))
    return values


def normalise_opcodes(model: Any) -> None:
    """Fill `builtin_code` from `deprecated_builtin_code` (old converters set only the latter;
    the runtime reads the larger of the two, the quantizer only the new field and would take
    every op for ADD, code 0)."""
    for code in model.operatorCodes:
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)


def fold_constant_weights(model: Any) -> FoldReport:
    """Replace DEQUANTIZE/DENSIFY of constants by float32 constants; drop those ops."""
    schema = _schema()
    normalise_opcodes(model)
    folded = Counter[str]()
    for subgraph in model.subgraphs:
        values = _fold_sources(model, subgraph)
        kept = []
        for op in subgraph.operators:
            if int(op.outputs[0]) in values and opcode_name(model, op.opcodeIndex) in (
                "DEQUANTIZE",
                "DENSIFY",
            ):
                folded[opcode_name(model, op.opcodeIndex)] += 1
                continue
            kept.append(op)
        subgraph.operators = kept
        for index, value in values.items():
            tensor = subgraph.tensors[index]
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(value.astype("<f4").tobytes(), dtype=np.uint8)
            model.buffers.append(buffer)
            tensor.buffer = len(model.buffers) - 1
            tensor.type = schema.TensorType.FLOAT32
            tensor.sparsity = None
            tensor.quantization = None
    prune(model)
    return FoldReport(folded["DEQUANTIZE"], folded["DENSIFY"])


def _add_opcode(model: Any, builtin: int) -> int:
    for index, code in enumerate(model.operatorCodes):
        if code.customCode is None and max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = _schema().OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _new_tensor(model: Any, subgraph: Any, name: str, shape: Any, data: Any = None) -> int:
    schema = _schema()
    tensor = schema.TensorT()
    tensor.name = name.encode()
    tensor.shape = np.asarray(shape, dtype=np.int32)
    tensor.type = schema.TensorType.FLOAT32
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(np.asarray(data, dtype="<f4").tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _binary_op(model: Any, opcode: int, a: int, b: int, out: int, activation: int = 0) -> Any:
    schema = _schema()
    op = schema.OperatorT()
    op.opcodeIndex = opcode
    op.inputs = np.asarray([a, b], dtype=np.int32)
    op.outputs = np.asarray([out], dtype=np.int32)
    if opcode_name(model, opcode) == "MUL":
        op.builtinOptionsType = schema.BuiltinOptions.MulOptions
        op.builtinOptions = schema.MulOptionsT()
    else:
        op.builtinOptionsType = schema.BuiltinOptions.AddOptions
        op.builtinOptions = schema.AddOptionsT()
    op.builtinOptions.fusedActivationFunction = activation
    return op


def decompose_prelu(model: Any) -> int:
    """Rewrite each PRELU with a constant alpha as ``x * alpha + relu(x) * (1 - alpha)``, with
    relu(x) as a MUL by 1 with a fused RELU (or, when every alpha is in [0, 1], as
    ``relu(x * (1 - alpha))``): the int8 recipe and XNNPACK's int8 kernels cover MUL and ADD,
    not PRELU. Returns how many were rewritten."""
    schema = _schema()
    ops = schema.BuiltinOperator
    relu = schema.ActivationFunctionType.RELU
    rewritten = 0
    for subgraph in model.subgraphs:
        new_ops = []
        for op in subgraph.operators:
            if opcode_name(model, op.opcodeIndex) != "PRELU":
                new_ops.append(op)
                continue
            alpha_tensor: Any = subgraph.tensors[op.inputs[1]]
            data = _constant(model, alpha_tensor)
            if data is None:
                new_ops.append(op)  # a live alpha: nothing to rewrite with
                continue
            if alpha_tensor.type != schema.TensorType.FLOAT32:
                raise ValueError("fold the weights to float32 before rewriting PRELU")
            alpha = data.view("<f4").reshape(tuple(int(d) for d in alpha_tensor.shape))
            x, out = int(op.inputs[0]), int(op.outputs[0])
            shape = subgraph.tensors[out].shape
            base = tensor_name(subgraph.tensors[out])
            mul, add = _add_opcode(model, ops.MUL), _add_opcode(model, ops.ADD)
            rest = _new_tensor(model, subgraph, f"{base}/one_minus_alpha", alpha.shape, 1 - alpha)
            negative = _new_tensor(model, subgraph, f"{base}/x_alpha", shape)
            positive = _new_tensor(model, subgraph, f"{base}/relu_x_rest", shape)
            new_ops.append(_binary_op(model, mul, x, int(op.inputs[1]), negative))
            if alpha.min() >= 0.0 and alpha.max() <= 1.0:
                new_ops.append(_binary_op(model, mul, x, rest, positive, activation=relu))
            else:
                one = _new_tensor(model, subgraph, f"{base}/one", (1,), np.ones(1))
                relu_x = _new_tensor(model, subgraph, f"{base}/relu_x", shape)
                new_ops.append(_binary_op(model, mul, x, one, relu_x, activation=relu))
                new_ops.append(_binary_op(model, mul, relu_x, rest, positive))
            new_ops.append(_binary_op(model, add, negative, positive, out))
            rewritten += 1
        subgraph.operators = new_ops
    prune(model)
    return rewritten


_FUSABLE = {"ADD", "SUB", "MUL", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def fuse_activations(model: Any) -> int:
    """Fold a standalone RELU / RELU6 into the op before it (as its fused activation) when
    that op has none and the RELU is the only reader of its output. Exact in float; in int8 it
    removes ops XNNPACK would leave to the slow reference kernels. Returns how many."""
    schema = _schema()
    kinds = {
        "RELU": schema.ActivationFunctionType.RELU,
        "RELU6": schema.ActivationFunctionType.RELU6,
    }
    fused = 0
    for subgraph in model.subgraphs:
        readers: Counter[int] = Counter(int(i) for op in subgraph.operators for i in op.inputs)
        outputs = {int(t) for t in subgraph.outputs}
        producer = {int(out): op for op in subgraph.operators for out in op.outputs}
        kept = []
        for op in subgraph.operators:
            kind = kinds.get(opcode_name(model, op.opcodeIndex))
            source = producer.get(int(op.inputs[0])) if kind is not None else None
            options: Any = getattr(source, "builtinOptions", None)
            if (
                source is None
                or opcode_name(model, source.opcodeIndex) not in _FUSABLE
                or getattr(options, "fusedActivationFunction", None) != 0
                or readers[int(op.inputs[0])] != 1
                or int(op.inputs[0]) in outputs
            ):
                kept.append(op)
                continue
            options.fusedActivationFunction = kind
            source.outputs = np.asarray(op.outputs, dtype=np.int32)
            producer[int(op.outputs[0])] = source
            fused += 1
        subgraph.operators = kept
    prune(model)
    return fused


def add_signature(model: Any, key: str = SIGNATURE_KEY) -> None:
    """Give subgraph 0 a serving signature: its one input as "input", outputs by tensor name."""
    schema = _schema()
    subgraph = model.subgraphs[0]
    if len(subgraph.inputs) != 1:
        raise ValueError(f"expected one input, the model has {len(subgraph.inputs)}")

    def entry(name: str, index: int) -> Any:
        mapping = schema.TensorMapT()
        mapping.name = name
        mapping.tensorIndex = int(index)
        return mapping

    signature = schema.SignatureDefT()
    signature.signatureKey = key
    signature.subgraphIndex = 0
    signature.inputs = [entry(SIGNATURE_INPUT, subgraph.inputs[0])]
    signature.outputs = [entry(tensor_name(subgraph.tensors[i]), i) for i in subgraph.outputs]
    model.signatureDefs = [signature]


def _remap(values: Any, mapping: dict[int, int]) -> np.ndarray:
    return np.asarray([mapping[int(v)] if int(v) >= 0 else -1 for v in values], dtype=np.int32)


def prune(model: Any) -> None:
    """Drop tensors, buffers and op codes nothing refers to (buffer 0 stays empty)."""
    used_codes = sorted({op.opcodeIndex for sg in model.subgraphs for op in sg.operators})
    code_map = {old: new for new, old in enumerate(used_codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in used_codes]
    used_buffers = {0}
    used_buffers.update(int(m.buffer) for m in model.metadata or [])
    used_buffers.update(
        int(b) for b in (model.metadataBuffer if model.metadataBuffer is not None else [])
    )
    for index, subgraph in enumerate(model.subgraphs):
        referenced = {int(t) for t in subgraph.inputs} | {int(t) for t in subgraph.outputs}
        for op in subgraph.operators:
            op.opcodeIndex = code_map[op.opcodeIndex]
            referenced.update(int(t) for t in op.inputs if t >= 0)
            referenced.update(int(t) for t in op.outputs)
            referenced.update(
                int(t) for t in (op.intermediates if op.intermediates is not None else [])
            )
        keep = sorted(referenced)
        tensor_map = {old: new for new, old in enumerate(keep)}
        subgraph.tensors = [subgraph.tensors[i] for i in keep]
        subgraph.inputs = _remap(subgraph.inputs, tensor_map)
        subgraph.outputs = _remap(subgraph.outputs, tensor_map)
        for op in subgraph.operators:
            op.inputs = _remap(op.inputs, tensor_map)
            op.outputs = _remap(op.outputs, tensor_map)
            if op.intermediates is not None:
                op.intermediates = _remap(op.intermediates, tensor_map)
        for signature in model.signatureDefs or []:
            if signature.subgraphIndex == index:
                for entry in (signature.inputs or []) + (signature.outputs or []):
                    entry.tensorIndex = tensor_map[int(entry.tensorIndex)]
        used_buffers.update(int(t.buffer) for t in subgraph.tensors)
    buffer_order = sorted(used_buffers)
    buffer_map = {old: new for new, old in enumerate(buffer_order)}
    model.buffers = [model.buffers[i] for i in buffer_order]
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            tensor.buffer = buffer_map[int(tensor.buffer)]
    for entry in model.metadata or []:
        entry.buffer = buffer_map[int(entry.buffer)]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [buffer_map[int(b)] for b in model.metadataBuffer]


# Ops that only move, join or squash values: walked through when looking for an output's head.
_PASS_THROUGH = {
    "RESHAPE",
    "CONCATENATION",
    "DEPTH_TO_SPACE",
    "LOGISTIC",
    "SOFTMAX",
    "RELU",
    "TANH",
}


def output_heads(model: Any) -> list[str]:
    """Output tensor names of the ops from each model output back to (and including) the
    first op with weights: the regression/classification heads. Their outputs are read as
    numbers (pixel offsets, logits), where int8's 256 steps show directly."""
    subgraph = model.subgraphs[0]
    producer = {int(out): op for op in subgraph.operators for out in op.outputs}
    heads: list[str] = []
    pending = [int(t) for t in subgraph.outputs]
    while pending:
        tensor = pending.pop()
        op = producer.get(tensor)
        if op is None:
            continue
        name = tensor_name(subgraph.tensors[tensor])
        if name in heads:
            continue
        heads.append(name)
        if opcode_name(model, op.opcodeIndex) in _PASS_THROUGH:
            pending += [int(i) for i in op.inputs if i >= 0 and int(i) in producer]
    return sorted(heads)
