"""CPU: LiteRT's built-in XNNPACK delegate, applied by the interpreter itself."""

from __future__ import annotations

from appliance.inference.delegates import LoadDelegate

NAME = "cpu"


def load(load_delegate: LoadDelegate, argument: str = "") -> None:
    # XNNPACK is the interpreter's default CPU path in LiteRT; nothing to load. Threads are set
    # on the interpreter (num_threads), not on a delegate.
    del load_delegate, argument
