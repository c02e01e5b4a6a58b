"""Web settings: the [web] keys this package reads beyond bind and ports.

``appliance.config.WebConfig`` owns the config file. Until (or unless) it carries these keys,
:meth:`WebSettings.from_config` falls back to the defaults below, so the web layer never needs a
config change to run. Every limit here is a ceiling the appliance enforces, not a hint.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.config import Config

Language = Literal["en", "de"]
MiB = 1024 * 1024


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Staff are logged out after this many minutes without a click (background polls don't count).
    inactivity_logout_min: int = Field(default=15, ge=1, le=240)
    # Admin actions re-ask the password once this window has passed since it was last typed.
    sudo_minutes: int = Field(default=5, ge=1, le=60)
    # Largest request body (an upload) in MiB; larger bodies get 413 before they are read.
    max_upload_mb: int = Field(default=40, ge=1, le=200)
    # Shown to the customer before the first capture; empty means the catalogue's own text.
    consent_text: str = Field(default="", max_length=2000)
    language: Language = "en"
    # How many times a customer's download link may be used: one-time means once. Each use
    # fetches the photo and the print sheet together; the page says the count plainly.
    link_uses: int = Field(default=1, ge=1, le=10)
    kiosk_countdown_s: int = Field(default=3, ge=0, le=10)
    # Worker threads of the HTTPS server (each open MJPEG preview holds one).
    server_threads: int = Field(default=12, ge=4, le=64)
    # Every staff member needs a second factor (TOTP); without it, those who enrolled need it.
    require_mfa: bool = False

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * MiB

    @classmethod
    def from_config(cls, config: Config) -> WebSettings:
        """Read the keys [web] has; the rest keep their defaults."""
        values = {
            name: getattr(config.web, name)
            for name in cls.model_fields
            if hasattr(config.web, name)
        }
        return cls.model_validate(values)
