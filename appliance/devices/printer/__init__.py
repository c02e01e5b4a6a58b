"""Printers: the contract, its records, and the backend factory.

``open_printer(config, store=...)`` builds the configured backend; ``store`` is the session
layer's "encrypt these bytes into the current workspace" callable, needed by the demo
``file`` backend only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from appliance.devices.config import PrinterConfig
from appliance.devices.loader import BackendError, resolve_backend
from appliance.devices.printer.base import (
    FINAL_STATES,
    JobState,
    JobStatus,
    Printer,
    PrinterError,
    PrinterUnavailableError,
    PrintJob,
    PrintJobNotFoundError,
    PrintRequestError,
    QueueState,
)

__all__ = [
    "BACKENDS",
    "FINAL_STATES",
    "JobState",
    "JobStatus",
    "PrintJob",
    "PrintJobNotFoundError",
    "PrintRequestError",
    "Printer",
    "PrinterConfigError",
    "PrinterError",
    "PrinterUnavailableError",
    "QueueState",
    "open_printer",
]

BACKENDS: dict[str, str] = {
    "cups": "appliance.devices.printer.cups:CupsPrinter",
    "file": "appliance.devices.printer.file:FilePrinter",
    "fake": "appliance.devices.printer.fake:FakePrinter",
}


class PrinterConfigError(BackendError):
    """The [printer] config cannot work (unknown backend, file backend without a store)."""


def open_printer(config: PrinterConfig, *, store: Callable[[bytes], str] | None = None) -> Printer:
    try:
        cls = resolve_backend("printer.backend", config.backend, BACKENDS)
    except BackendError as error:
        raise PrinterConfigError(str(error)) from error
    if "store" in inspect.signature(cls).parameters:
        if store is None:
            raise PrinterConfigError(
                f'printer.backend = "{config.backend}" needs the session workspace store'
            )
        printer = cls(config, store=store)
    else:
        printer = cls(config)
    if not isinstance(printer, Printer):
        raise PrinterConfigError(f'printer.backend = "{config.backend}" is not a printer')
    return printer
