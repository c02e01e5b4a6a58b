"""One module per accelerator delegate; `select_accelerator` tries them for `auto`.

Each module exposes `NAME` and `load(load_delegate, argument) -> object | None`. `load` returns
the delegate to hand to the interpreter (None means the interpreter's own XNNPACK CPU path) or
raises AcceleratorError with a message that says what to do.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

LoadDelegate = Callable[..., Any]


def delegate_failure(exc: BaseException) -> str:
    """A short, single-line reason from load_delegate's ValueError or OSError."""
    text = " ".join(str(exc).split())
    return text[:300] if text else type(exc).__name__


def check_library(library: str) -> None:
    """Open the shared library first, so a missing one raises a plain OSError here.

    LiteRT's Delegate object, when its library fails to load, is left half-built and prints an
    AttributeError traceback from its __del__; loading it ourselves first avoids that noise.
    """
    handle = ctypes.CDLL(library)
    for symbol in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
        if not hasattr(handle, symbol):
            raise OSError(f"{library} is not a TFLite delegate (it has no {symbol})")
