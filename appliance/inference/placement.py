"""Where a loaded model actually runs: the accelerator, the CPU, or both, and why.

Which delegate loaded says little on its own: the Edge TPU delegate runs only the ops that
`edgetpu_compiler` mapped (each run of them becomes one `edgetpu-custom-op`), so an uncompiled
model under that delegate runs wholly on the CPU, and a compiled one leaves unmapped ops there.
For the Edge TPU this reads the model file: the custom ops are the TPU's, everything else is
the CPU's. For the CPU, the GPU or an external delegate it counts the interpreter's DELEGATE
nodes (LiteRT adds one per delegated partition).
"""

from __future__ import annotations

from collections import Counter

from appliance.inference import tflite_graph
from appliance.inference.runtime import TFLiteModel

EDGETPU_OP = "edgetpu-custom-op"


def op_counts(data: bytes) -> Counter[str]:
    """How many ops of each kind the model's main graph has."""
    model = tflite_graph.read_model(data)
    graph = model.subgraphs[0]
    return Counter(tflite_graph.opcode_name(model, op.opcodeIndex) for op in graph.operators)


def _listing(ops: Counter[str], limit: int = 4) -> str:
    shown = ", ".join(f"{name} x{n}" for name, n in ops.most_common(limit))
    return shown + (", ..." if len(ops) > limit else "")


def edgetpu_placement(data: bytes, file: str) -> str:
    ops = op_counts(data)
    tpu = ops.pop(EDGETPU_OP, 0)
    cpu = sum(ops.values())
    if tpu == 0:
        return (
            f"CPU: {file} is not compiled for the Edge TPU, so the delegate takes none of its "
            f"{cpu} ops"
        )
    if cpu == 0:
        return f"Edge TPU: all of {file} ({tpu} compiled segment{'s' if tpu > 1 else ''})"
    return (
        f"Edge TPU and CPU: {tpu} compiled segment{'s' if tpu > 1 else ''} on the TPU, "
        f"{cpu} ops the compiler could not map on the CPU ({_listing(ops)})"
    )


def placement(model: TFLiteModel) -> str:
    """One line: where `model` runs on its accelerator."""
    accelerator = model.accelerator.name
    if accelerator == "edgetpu":
        return edgetpu_placement(model.path.read_bytes(), model.path.name)
    # LiteRT lists the original nodes and then one DELEGATE node per delegated partition; it
    # does not say which original nodes a partition took, so only the partitions are counted.
    partitions = sum(1 for op in model.op_details() if op["op_name"] == "DELEGATE")
    plural = "s" if partitions != 1 else ""
    if accelerator == "cpu":
        return f"CPU: XNNPACK ({partitions} partition{plural})"
    if partitions == 0:
        return f"CPU: the {accelerator} delegate took none of the model's ops"
    return f"{accelerator} delegate (with XNNPACK for the rest): {partitions} partition{plural}"
