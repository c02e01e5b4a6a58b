"""GPU through the TFLite GPU delegate library (OpenCL/OpenGL ES; Jetson, Mali)."""

from __future__ import annotations

from typing import Any

from appliance.errors import AcceleratorError
from appliance.inference.delegates import LoadDelegate, check_library, delegate_failure

NAME = "gpu"
LIBRARY = "libtensorflowlite_gpu_delegate.so"


def load(load_delegate: LoadDelegate, argument: str = "") -> Any:
    del argument
    try:
        check_library(LIBRARY)
        return load_delegate(LIBRARY)
    except (ValueError, OSError) as exc:
        raise AcceleratorError(
            f"No GPU delegate ({delegate_failure(exc)}): install the delegate library "
            'built for this board on the library path, or set accelerator = "cpu" (or "auto")'
        ) from None
