"""The plain privacy notice the consent screen and the download page show, from the live config.

Numbers come from the running retention policy and web settings, never from prose, so the
notice cannot say "an hour" while the config says ten minutes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from appliance.web.services import WebServices


@dataclass(frozen=True)
class PrivacyNotice:
    idle_min: int
    lifetime_min: int
    window_min: int
    link_uses: int


def _minutes(seconds: float) -> int:
    return max(1, math.ceil(seconds / 60))


def privacy_notice(services: WebServices) -> PrivacyNotice:
    retention = services.sessions.retention
    return PrivacyNotice(
        idle_min=_minutes(retention.idle_timeout_s),
        lifetime_min=_minutes(retention.max_lifetime_s),
        window_min=_minutes(retention.download_window_s),
        link_uses=services.settings.link_uses,
    )
