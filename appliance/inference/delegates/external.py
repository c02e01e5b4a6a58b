"""Any other delegate given as a path to its shared library: accelerator = "external:<path>"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.errors import AcceleratorError
from appliance.inference.delegates import LoadDelegate, check_library, delegate_failure

NAME = "external"


def load(load_delegate: LoadDelegate, argument: str = "") -> Any:
    path = Path(argument)
    if not argument or not path.is_file():
        raise AcceleratorError(
            f"external delegate {argument or '(empty path)'} does not exist: set "
            'accelerator = "external:/absolute/path/to/delegate.so" to a file that exists, '
            'or use "auto"'
        )
    try:
        check_library(str(path))
        return load_delegate(str(path))
    except (ValueError, OSError) as exc:
        raise AcceleratorError(
            f"external delegate {path} could not be loaded ({delegate_failure(exc)}): check it "
            'was built for this LiteRT version and CPU, or use accelerator = "auto"'
        ) from None
