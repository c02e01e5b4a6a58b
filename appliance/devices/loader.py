"""Backends named in config, gpiozero style: a short name or ``"package.module:Class"``.

The class is imported only when it is asked for, so a backend's hardware library (picamera2,
cv2, lgpio) is loaded only on the machine that uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from appliance.errors import ApplianceError


class BackendError(ApplianceError, ValueError):
    """A configured backend name is unknown or its class cannot be imported."""


def resolve_backend(key: str, name: str, known: Mapping[str, str]) -> type:
    """The class for ``name`` (config key ``key``): a key of ``known`` or ``module:Class``."""
    spec = known.get(name, name)
    module_name, separator, class_name = spec.partition(":")
    if not separator or not module_name or not class_name:
        choices = ", ".join(f'"{key}"' for key in known)
        raise BackendError(f'{key} = "{name}" is unknown: use one of {choices} or "module:Class"')
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BackendError(f'{key} = "{name}": cannot import {module_name} ({error})') from error
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise BackendError(f'{key} = "{name}": {module_name} has no class {class_name}')
    return cls
