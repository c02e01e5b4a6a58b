"""The second factor for staff: TOTP codes (RFC 6238) and single-use recovery codes.

Each enrolled user's record in the staff store (``staff.json``: mode 0600, flock, atomic
replace) carries ``"mfa": {"secret", "last_step", "recovery", "enrolled"}``.

- The TOTP secret must stay readable to check codes, so it cannot be hashed. It is encrypted
  with AES-256-GCM under a key derived from a per-device key (``web/mfa.key``, 0600, made on
  first use: invariant 7) and bound to the username, so a copy of ``staff.json`` alone (a
  backup, a support bundle) holds no usable secret. It is never logged or audited.
- Recovery codes carry 60 random bits each and are stored as HMAC-SHA256 under a second key
  derived from the device key. A slow hash (the scrypt the passwords use) protects *guessable*
  secrets from offline search; 2**60 random codes are out of reach at HMAC speed too, and
  whoever holds both the store and the device key can decrypt the TOTP secret anyway. Ten
  scrypt checks per attempt would instead hand anyone at the login form a CPU lever on a Pi.
- A code is accepted for the previous, current and next 30-second step (clock drift); the step
  it matched is stored, and no code of that step or an earlier one is accepted again (replay).

The clock is injectable (``StaffMfa(clock=...)``) so tests control time instead of sleeping.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.errors import ApplianceError
from appliance.statefiles import locked, write_private
from appliance.web.users import UserStore

log = logging.getLogger(__name__)

STEP_S = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODES = 10
RECOVERY_GROUPS, RECOVERY_GROUP_LEN = 3, 4  # ABCD-EFGH-JKLM: 12 x 5 = 60 bits
_RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
DEVICE_KEY_BYTES = 32

CodeResult = Literal["totp", "recovery", "replayed", "wrong"]


class MfaError(ApplianceError, ValueError):
    """A second-factor change that cannot be made (not enrolled, unreadable secret)."""


@dataclass(frozen=True)
class MfaStatus:
    enrolled: bool
    since: int | None  # unix seconds
    recovery_left: int


def new_secret() -> str:
    """A fresh TOTP secret: 160 random bits in base32 (RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=username, issuer_name=issuer
    )


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def _normalise(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()[:64]


def _matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step within the drift window whose code is ``code``, or None."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    current = totp.timecode(max(0.0, now))
    matched = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        # Compare every step (no early exit), so timing does not tell which one matched.
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            matched = step
    return matched


class StaffMfa:
    """Enrolment, checks and resets of the staff's second factor, kept in the staff store."""

    def __init__(self, users: UserStore, *, clock: Callable[[], float] = time.time) -> None:
        self.users = users
        self.clock = clock

    # --- the device key and what is derived from it ------------------------------------------

    @property
    def key_path(self) -> Path:
        return self.users.directory / "mfa.key"

    @cached_property
    def _device_key(self) -> bytes:
        path = self.key_path
        with locked(path.with_name("mfa.key.lock")):
            try:
                key = path.read_bytes()
            except FileNotFoundError:
                key = secrets.token_bytes(DEVICE_KEY_BYTES)
                write_private(path, key)
        if len(key) != DEVICE_KEY_BYTES:
            raise MfaError(f"{path} is damaged: it must hold {DEVICE_KEY_BYTES} bytes")
        return key

    def _subkey(self, purpose: bytes) -> bytes:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
        return hkdf.derive(self._device_key)

    def _seal(self, username: str, secret: str) -> str:
        nonce = os.urandom(12)
        sealed = AESGCM(self._subkey(b"appliance mfa totp-secret v1")).encrypt(
            nonce, secret.encode("ascii"), f"totp:{username}".encode()
        )
        return "aesgcm$" + base64.b64encode(nonce + sealed).decode("ascii")

    def _open(self, username: str, stored: str) -> str | None:
        try:
            scheme, data = stored.split("$", 1)
            raw = base64.b64decode(data, validate=True)
            if scheme != "aesgcm" or len(raw) < 13:
                raise ValueError("unknown scheme")
            key = self._subkey(b"appliance mfa totp-secret v1")
            plain = AESGCM(key).decrypt(raw[:12], raw[12:], f"totp:{username}".encode())
        except (ValueError, InvalidTag):
            # Never the secret itself in the log; an admin reset (or the CLI) is the way out.
            log.error("the second factor of %s cannot be read: was web/mfa.key replaced?", username)
            return None
        return plain.decode("ascii")

    def _recovery_digest(self, username: str, code: str) -> str:
        key = self._subkey(b"appliance mfa recovery-code v1")
        return hmac.new(key, f"{username}:{code}".encode(), hashlib.sha256).hexdigest()

    def _new_recovery(self, username: str) -> tuple[list[str], list[str]]:
        codes = [
            "-".join(
                "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(RECOVERY_GROUP_LEN))
                for _ in range(RECOVERY_GROUPS)
            )
            for _ in range(RECOVERY_CODES)
        ]
        return codes, [self._recovery_digest(username, _normalise(code)) for code in codes]

    # --- reading ---------------------------------------------------------------------------

    def _stored(self, username: str) -> dict[str, Any] | None:
        record = self.users.user_record(username)
        found = record.get("mfa") if record else None
        return found if isinstance(found, dict) else None

    def status(self, username: str) -> MfaStatus:
        found = self._stored(username)
        if found is None:
            return MfaStatus(False, None, 0)
        return MfaStatus(True, int(found["enrolled"]), len(found["recovery"]))

    def enrolled(self, username: str) -> bool:
        return self._stored(username) is not None

    def without_mfa(self, role: str) -> list[str]:
        """Usernames of that role with no second factor (the admin page warns about admins)."""
        return sorted(
            name
            for name, record in self.users.user_records().items()
            if record["role"] == role and not isinstance(record.get("mfa"), dict)
        )

    # --- enrolment -------------------------------------------------------------------------

    def enrol(self, username: str, secret: str, code: str) -> list[str] | None:
        """Store ``secret`` once ``code`` proves the app has it; returns the recovery codes
        (shown once), or None when the code is wrong. Replaces any earlier enrolment."""
        step = _matching_step(secret, _normalise(code), self.clock())
        if step is None:
            return None
        codes, digests = self._new_recovery(username)
        sealed = self._seal(username, secret)
        with self.users.changing_user(username) as record:
            record["mfa"] = {
                "secret": sealed,
                "last_step": step,  # the confirming code is spent too
                "recovery": digests,
                "enrolled": int(self.clock()),
            }
        return codes

    def renew_recovery(self, username: str) -> list[str]:
        """Ten new recovery codes; the old ones stop working."""
        codes, digests = self._new_recovery(username)
        with self.users.changing_user(username) as record:
            if not isinstance(record.get("mfa"), dict):
                raise MfaError(f"{username} has no second factor")
            record["mfa"]["recovery"] = digests
        return codes

    def remove(self, username: str) -> bool:
        """Forget the second factor (disable, admin reset); False if there was none."""
        if not self.enrolled(username):
            return False
        with self.users.changing_user(username) as record:
            return record.pop("mfa", None) is not None

    # --- checking --------------------------------------------------------------------------

    def check(self, username: str, code: str) -> CodeResult:
        """Is ``code`` a fresh TOTP code or an unused recovery code of ``username``? A code
        that is accepted is spent: its step (or the recovery code) never works again."""
        normalised = _normalise(code)
        found = self._stored(username)
        if found is None or not normalised:
            return "wrong"
        if normalised.isdigit():
            return self._check_totp(username, found, normalised)
        return self._check_recovery(username, found, normalised)

    def _check_totp(self, username: str, found: dict[str, Any], code: str) -> CodeResult:
        secret = self._open(username, str(found["secret"]))
        if secret is None or len(code) != DIGITS:
            return "wrong"
        step = _matching_step(secret, code, self.clock())
        if step is None:
            return "wrong"
        if step <= int(found["last_step"]):
            return "replayed"
        with self.users.changing_user(username) as record:  # again under the lock: races
            stored = record.get("mfa")
            if not isinstance(stored, dict) or stored["secret"] != found["secret"]:
                return "wrong"  # reset or re-enrolled meanwhile
            if step <= int(stored["last_step"]):
                return "replayed"
            stored["last_step"] = step
        return "totp"

    def _check_recovery(self, username: str, found: dict[str, Any], code: str) -> CodeResult:
        digest = self._recovery_digest(username, code)
        if not any(hmac.compare_digest(d, digest) for d in found["recovery"]):
            return "wrong"  # decided without writing: guesses must not wear the SD card
        with self.users.changing_user(username) as record:
            stored = record.get("mfa")
            if not isinstance(stored, dict):
                return "wrong"
            left = [d for d in stored["recovery"] if not hmac.compare_digest(d, digest)]
            if len(left) == len(stored["recovery"]):
                return "wrong"
            stored["recovery"] = left
        return "recovery"
