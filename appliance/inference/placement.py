"""Where a loaded model actually runs: the accelerator, the CPU, or both, and why.

Which delegate loaded says little on its own: the Edge TPU delegate runs only the ops that
`edgetpu_compiler` mapped (each run of them becomes one `edgetpu-custom-op`), so an uncompiled
model under that delegate runs wholly on the CPU, and a compiled one leaves unmapped ops there.
For the Edge TPU this reads the model file: the custom ops are the TPU's, everything else is
the CPU's. For the GPU or an external delegate it asks the interpreter which nodes a delegate
took (LiteRT replaces each delegated run of ops by one DELEGATE node).
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
    nodes = Counter(str(op["op_name"]) for op in model.op_details())
    delegated = nodes.pop("DELEGATE", 0)
    left = sum(nodes.values())
    if accelerator == "cpu":
        where = f"CPU: XNNPACK ({delegated} partition{'s' if delegated != 1 else ''})"
        return where + (f", {left} ops on the reference kernels" if left else "")
    if delegated == 0:
        return f"CPU: the {accelerator} delegate took none of its {left} ops"
    text = f"{accelerator} delegate (with XNNPACK): {delegated} delegated partitions"
    return text + (f"; on the CPU's reference kernels: {_listing(nodes)}" if left else "")
