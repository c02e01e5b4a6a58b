"""Per-app state shared by the blueprints: services, logins, the desk and the defaults.

One :class:`WebContext` per Flask app (``app.extensions["appliance"]``); nothing is global, so
every test builds its own app with its own state.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from flask import current_app
from pydantic import BaseModel, ConfigDict, Field

from appliance.statefiles import write_private
from appliance.studio import Desk
from appliance.web.addresses import PublicAddress, choose_host
from appliance.web.challenges import ENROLMENT_S, SECOND_FACTOR_S, Expiring, SecondFactorDue
from appliance.web.kiosks import KioskStore
from appliance.web.logins import LoginLimiter, LoginSessions
from appliance.web.mfa import StaffMfa
from appliance.web.passkeys import Ceremony, PasskeyStore
from appliance.web.services import WebServices
from appliance.web.settings import WebSettings


class Defaults(BaseModel):
    """What the operator page starts with; admins change them on the defaults page."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    spec: str = "icao-35x45"
    paper: str = Field(default="4x6", pattern=r"^(4x6|5x7|a6|a4)$")
    copies: int = Field(default=1, ge=1, le=20)


class DefaultsStore:
    """``state_dir/web/defaults.json``, replaced atomically; falls back to the config."""

    def __init__(self, state_dir: Path, fallback: Defaults) -> None:
        self.path = state_dir.absolute() / "web" / "defaults.json"
        self.fallback = fallback
        self._lock = threading.Lock()

    def load(self) -> Defaults:
        try:
            return Defaults.model_validate(json.loads(self.path.read_text("utf-8")))
        except (OSError, ValueError):
            return self.fallback

    def save(self, defaults: Defaults) -> None:
        with self._lock:
            write_private(self.path, defaults.model_dump_json(indent=1).encode("utf-8"))


@dataclass
class WebContext:
    services: WebServices
    settings: WebSettings
    logins: LoginSessions
    limiter: LoginLimiter
    defaults: DefaultsStore
    mfa: StaffMfa
    passkeys: PasskeyStore
    # Passwords that were right, waiting for the code (keyed by the __Host-studio-2fa cookie).
    second_factor_due: Expiring[SecondFactorDue] = field(
        default_factory=lambda: Expiring(SECOND_FACTOR_S)
    )
    # TOTP secrets shown as a QR code, not yet confirmed with a code (keyed by login id).
    enrolment_drafts: Expiring[str] = field(default_factory=lambda: Expiring(ENROLMENT_S))
    # Passkey challenges (adding: keyed by login id; logging in: by a random id), two minutes.
    passkey_ceremonies: Expiring[Ceremony] = field(default_factory=lambda: Expiring(120.0))
    # The setup code: limited per client only, so no one client can lock setup for everyone.
    setup_limiter: LoginLimiter = field(
        default_factory=lambda: LoginLimiter(max_client_failures=5, lock_accounts=False)
    )
    # A passkey nobody registered: per client only, like the setup code.
    passkey_limiter: LoginLimiter = field(
        default_factory=lambda: LoginLimiter(max_client_failures=20, lock_accounts=False)
    )
    # Per-process key for anonymous CSRF tokens (login and setup forms); never stored.
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # Without a WebServer (test clients): from the config, chosen once.
    public_address: PublicAddress | None = None

    @functools.cached_property
    def kiosks(self) -> KioskStore:
        """Paired customer screens (one store per app: it holds the live pairing codes)."""
        return KioskStore(self.services.config.state_dir)

    @property
    def address(self) -> PublicAddress:
        if self.services.public_address is not None:  # the WebServer's: its real ports
            return self.services.public_address()
        if self.public_address is None:
            web = self.services.config.web
            host = choose_host(web.public_host, web.bind)
            self.public_address = PublicAddress(host, web.port, web.http_port)
        return self.public_address

    def desk(self, desk_id: str) -> Desk:
        """What a desk's customer screen shows: the session that desk works on now."""
        return self.services.actions.desk_for(desk_id)


def web_context() -> WebContext:
    return cast(WebContext, current_app.extensions["appliance"])
