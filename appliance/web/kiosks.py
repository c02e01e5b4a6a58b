"""Paired customer screens: short-lived pairing codes and the kiosks' device credentials.

An admin asks for a pairing code (8 characters, 10 minutes, one use, kept only as a hash in
memory) and types it once on the kiosk. The kiosk then holds a device credential of its own
role ``kiosk``: 256 random bits in a Secure, HttpOnly cookie, stored here as a SHA-256 with the
desk it is bound to. It has no idle logout (a booth left over lunch still shows the welcome
screen) and is checked against this file on every request, so a revoked kiosk is refused at
once. ``state_dir/web/kiosks.json`` is guarded by flock and replaced atomically.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError
from appliance.statefiles import locked, write_private
from appliance.studio import DEFAULT_DESK

KIOSK_PREFIX = "kio_"
DESK = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
PAIRING_S = 600.0
# Wrong pairing codes per client address: this many, then a lockout that doubles each time.
PAIR_FAILURES, PAIR_LOCKOUT_S, PAIR_MAX_LOCKOUT_S = 5, 60.0, 900.0
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class PairingError(ApplianceError, PermissionError):
    """A pairing code that is wrong, used or expired."""


class KioskNameError(ApplianceError, ValueError):
    """A kiosk name or desk that cannot be used."""


@dataclass(frozen=True)
class Kiosk:
    kiosk_id: str
    name: str
    desk: str
    created: int

    @property
    def role(self) -> str:
        return "kiosk"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def normalise_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def check_desk(desk: str) -> str:
    desk = desk.strip().lower() or DEFAULT_DESK
    if not DESK.fullmatch(desk):
        raise KioskNameError(
            "a desk is 1-32 characters: lower-case letters, digits and '-', e.g. booth-2"
        )
    return desk


def csrf_for(credential: str) -> str:
    """The kiosk page's CSRF token, derived from its (HttpOnly) credential: stable across
    restarts, unknowable to a page that cannot read the cookie."""
    return hmac.new(credential.encode("utf-8"), b"kiosk-csrf", hashlib.sha256).hexdigest()


class KioskStore:
    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = state_dir.absolute() / "web" / "kiosks.json"
        self._lock_path = self.path.with_suffix(".json.lock")
        self._clock = clock
        self._codes: dict[str, tuple[str, str, float]] = {}  # sha256(code) -> name, desk, until
        self._codes_lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # client -> failures, locked until

    def _read(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_bytes())
            return data
        except FileNotFoundError:
            return {}

    # --- pairing ---------------------------------------------------------------------------

    def new_pairing_code(self, name: str, desk: str) -> str:
        label = " ".join(name.split())
        if not 1 <= len(label) <= 64:
            raise KioskNameError("a kiosk needs a name of 1-64 characters")
        code = "".join(secrets.choice(_ALPHABET) for _ in range(8))
        with self._codes_lock:
            now = self._clock()
            self._codes = {k: v for k, v in self._codes.items() if v[2] > now}
            self._codes[_digest(code)] = (label, check_desk(desk), now + PAIRING_S)
        return f"{code[:4]}-{code[4:]}"

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try a pairing code again (0: now)."""
        with self._codes_lock:
            _, until = self._failures.get(client, (0, 0.0))
        return max(0.0, until - self._clock())

    def _failed(self, client: str) -> None:
        with self._codes_lock:
            count, _ = self._failures.get(client, (0, 0.0))
            count += 1
            until = 0.0
            if count >= PAIR_FAILURES:
                lockout = PAIR_LOCKOUT_S * 2 ** (count - PAIR_FAILURES)
                until = self._clock() + min(lockout, PAIR_MAX_LOCKOUT_S)
            if len(self._failures) > 4096:  # bounded: forget the oldest clients
                self._failures.pop(next(iter(self._failures)))
            self._failures[client] = (count, until)

    def pair(self, code: str, client: str = "") -> tuple[Kiosk, str]:
        """Spend a pairing code; returns the new kiosk and its credential (never stored).
        Wrong codes count against ``client`` (its address): see :meth:`retry_after`."""
        with self._codes_lock:
            found = self._codes.pop(_digest(normalise_code(code)), None)
        if found is None or found[2] <= self._clock():
            self._failed(client)
            raise PairingError("wrong or expired pairing code: ask an admin for a new one")
        with self._codes_lock:
            self._failures.pop(client, None)
        name, desk, _ = found
        credential = KIOSK_PREFIX + secrets.token_urlsafe(32)
        kiosk = Kiosk(secrets.token_hex(4), name, desk, int(self._clock()))
        with locked(self._lock_path):
            data = self._read()
            data[kiosk.kiosk_id] = {
                "name": kiosk.name,
                "desk": kiosk.desk,
                "created": kiosk.created,
                "sha256": _digest(credential),
            }
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
        return kiosk, credential

    # --- credentials -----------------------------------------------------------------------

    def kiosks(self) -> list[Kiosk]:
        with locked(self._lock_path):
            data = self._read()
        return sorted(
            (Kiosk(kid, k["name"], k["desk"], k["created"]) for kid, k in data.items()),
            key=lambda k: k.created,
        )

    def kiosk_for(self, credential: str) -> Kiosk | None:
        if not credential.startswith(KIOSK_PREFIX) or len(credential) > 100:
            return None
        digest = _digest(credential)
        with locked(self._lock_path):
            data = self._read()
        for kiosk_id, k in data.items():
            if hmac.compare_digest(k["sha256"], digest):
                return Kiosk(kiosk_id, k["name"], k["desk"], k["created"])
        return None

    def revoke(self, kiosk_id: str) -> bool:
        with locked(self._lock_path):
            data = self._read()
            if data.pop(kiosk_id, None) is None:
                return False
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
        return True

    def desks(self) -> list[str]:
        return sorted({DEFAULT_DESK, *(k.desk for k in self.kiosks())})
