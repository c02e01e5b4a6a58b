"""Coral Edge TPU (USB or PCIe) through libedgetpu."""

from __future__ import annotations

from typing import Any

from appliance.errors import AcceleratorError
from appliance.inference.delegates import LoadDelegate, check_library, delegate_failure

NAME = "edgetpu"
LIBRARY = "libedgetpu.so.1"


def load(load_delegate: LoadDelegate, argument: str = "") -> Any:
    options = {"device": argument} if argument else {}
    try:
        check_library(LIBRARY)
        return load_delegate(LIBRARY, options)
    except (ValueError, OSError) as exc:
        raise AcceleratorError(
            f"No Edge TPU found ({delegate_failure(exc)}): plug one in and install "
            'libedgetpu1-std, or set accelerator = "cpu" (or "auto") in the [inference] section'
        ) from None
