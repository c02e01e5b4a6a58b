"""The web layer: Flask app factory, blueprints (ui, api, auth, admin, public), TLS and server.

Public names (imported lazily, so `appliance token create` does not load Flask or the models):
``create_app``, ``WebServices``, ``WebSettings``, ``WebServer``, ``UserStore`` and the CLI-facing
``setup_code``, ``create_token``, ``list_tokens``, ``revoke_token``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create_app": "appliance.web.app",
    "WebServer": "appliance.web.server",
    "WebServices": "appliance.web.services",
    "WebSettings": "appliance.web.settings",
    "UserStore": "appliance.web.users",
    "setup_code": "appliance.web.users",
    "create_token": "appliance.web.users",
    "list_tokens": "appliance.web.users",
    "revoke_token": "appliance.web.users",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'appliance.web' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
