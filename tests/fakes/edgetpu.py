"""A stand-in for libedgetpu behind LiteRT's real delegate API, for machines without a TPU.

`load_delegate(library, options=None)` has LiteRT's signature and raises ValueError as LiteRT
does when a delegate cannot start. The `Interpreter` is LiteRT's own, subclassed: delegates it
is handed that are `FakeEdgeTpuDelegate`s are taken off the list (LiteRT would hand the real
one to the C API) and applied here the way libedgetpu behaves: a model that `edgetpu_compiler`
compiled (it has `edgetpu-custom-op` nodes) is accepted and computed by running the int8-io
model it was compiled from (`compiled_from`), which is what the TPU computes; a model with no
such node is left to the CPU untouched; a model listed in `rejects` fails to prepare with the
error libedgetpu gives for a runtime older than the compiler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai_edge_litert.interpreter import Interpreter as LiteRtInterpreter

from appliance.inference.placement import EDGETPU_OP, op_counts


@dataclass
class FakeEdgeTpu:
    """One fake TPU: what it was asked to run, and how it was set up to behave."""

    compiled_from: dict[str, Path] = field(default_factory=dict)  # compiled name -> int8-io
    rejects: set[str] = field(default_factory=set)
    loads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delegated: list[str] = field(default_factory=list)
    available: bool = True

    def load_delegate(self, library: str, options: dict[str, Any] | None = None) -> Any:
        if not self.available:
            raise ValueError(f"Failed to load delegate from {library}")
        self.loads.append((library, dict(options or {})))
        return FakeEdgeTpuDelegate(self, library, dict(options or {}))

    def interpreter_class(self) -> type[LiteRtInterpreter]:
        tpu = self

        class Interpreter(LiteRtInterpreter):
            def __init__(self, model_path: str | None = None, **kwargs: Any) -> None:
                delegates = list(kwargs.pop("experimental_delegates", None) or [])
                fakes = [d for d in delegates if isinstance(d, FakeEdgeTpuDelegate)]
                real = [d for d in delegates if not isinstance(d, FakeEdgeTpuDelegate)] or None
                if fakes and model_path is not None:
                    model_path = tpu.prepare(Path(model_path))
                super().__init__(model_path=model_path, experimental_delegates=real, **kwargs)

        return Interpreter

    def prepare(self, path: Path) -> str:
        """What the delegate does with a graph: claim the compiled nodes, or nothing."""
        if path.name in self.rejects:
            raise ValueError(
                "Failed to prepare for TPU. Failed precondition: Package requires runtime "
                "version (14), which is newer than this runtime version (13)."
            )
        if op_counts(path.read_bytes()).get(EDGETPU_OP, 0) == 0:
            return str(path)  # nothing for the TPU: the CPU runs the graph as it is
        self.delegated.append(path.name)
        return str(self.compiled_from[path.name])


@dataclass(frozen=True)
class FakeEdgeTpuDelegate:
    """What `load_delegate` returns: LiteRT's Delegate holds the library and its options."""

    tpu: FakeEdgeTpu
    library: str
    options: dict[str, Any]
