"""Staff users, the first-boot setup code and API tokens, in one file in the state directory.

No default password (privacy invariant 7): until an admin exists, the only way in is a one-time
setup code, generated on the device, stored hashed and shown once (log, or `appliance
setup-code`). Passwords and PINs are hashed with scrypt (n=2**14, r=8, p=1, 16-byte random salt)
and checked in constant time; unknown usernames cost the same as known ones. API tokens carry
256 random bits, so a SHA-256 of the token is enough to store them.

The store is a JSON file guarded by flock on a side file and replaced atomically, so the CLI
(`appliance token create`) and the running daemon can both use it at any time.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidKey
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.errors import ApplianceError
from appliance.statefiles import locked, write_private

Role = Literal["admin", "operator"]
ROLES: tuple[Role, ...] = ("admin", "operator")
USERNAME = re.compile(r"[a-z][a-z0-9_.-]{0,31}")  # fits the audit log's actor pattern
MIN_PASSWORD = {"admin": 10, "operator": 6}  # operators may use a 6-digit PIN
MAX_SECRET = 128
SCRYPT_N, SCRYPT_R, SCRYPT_P, SALT_BYTES, KEY_BYTES = 2**14, 8, 1, 16, 32
TOKEN_PREFIX = "stk_"  # noqa: S105 - a marker, not a secret
_SETUP_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
_DUMMY_SALT = b"\x00" * SALT_BYTES


class CredentialError(ApplianceError, ValueError):
    """A username, role, password or PIN that cannot be used (too short, taken, unknown)."""


class SetupError(ApplianceError, PermissionError):
    """First-boot setup refused: wrong or missing setup code, or the appliance is set up."""


@dataclass(frozen=True)
class StaffUser:
    username: str
    role: Role
    created: int  # unix seconds


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    name: str
    role: Role
    created: int

    def to_dict(self) -> dict[str, str | int]:
        return {"id": self.token_id, "name": self.name, "role": self.role, "created": self.created}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(salt: bytes) -> Scrypt:
    return Scrypt(salt=salt, length=KEY_BYTES, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)


def hash_secret(secret: str) -> str:
    """``scrypt$n$r$p$salt$key`` (base64 fields) for a password, PIN or setup code."""
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(salt).derive(secret.encode("utf-8"))
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check; ``stored=None`` burns the same work and returns False."""
    try:
        if stored is None:
            raise ValueError("no stored hash")
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            raise ValueError("unknown scheme")
        kdf = Scrypt(salt=base64.b64decode(salt), length=KEY_BYTES, n=int(n), r=int(r), p=int(p))
        expected = base64.b64decode(key)
    except ValueError:
        _scrypt(_DUMMY_SALT).derive(secret.encode("utf-8"))
        return False
    try:
        kdf.verify(secret.encode("utf-8"), expected)  # compares in constant time
    except InvalidKey:
        return False
    return True


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _check_secret(role: Role, secret: str) -> None:
    if len(secret) < MIN_PASSWORD[role]:
        what = "password" if role == "admin" else "PIN or password"
        raise CredentialError(f"the {what} needs at least {MIN_PASSWORD[role]} characters")
    if len(secret) > MAX_SECRET:
        raise CredentialError(f"the password is longer than {MAX_SECRET} characters")


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise CredentialError("unknown role: use admin or operator")
    return role


class UserStore:
    """Staff users, setup code and API tokens under ``state_dir/web/staff.json``."""

    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = state_dir.absolute() / "web"
        self.path = self.directory / "staff.json"
        self._lock_path = self.directory / "staff.json.lock"
        self._clock = clock
        self._cache: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    # --- file handling ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        with locked(self._lock_path, operation):
            yield

    def _read(self) -> dict[str, Any]:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return {"users": {}, "tokens": {}, "setup": None}
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._cache is not None and self._cache[0] == key:
            return json.loads(json.dumps(self._cache[1]))  # a copy callers may change
        descriptor = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as stream:
            data = json.loads(stream.read())
        self._cache = (key, data)
        return json.loads(json.dumps(data))

    def _write(self, data: dict[str, Any]) -> None:
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
        self._cache = None

    def _snapshot(self) -> dict[str, Any]:
        with self._locked(fcntl.LOCK_SH):
            return self._read()

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        with self._locked(fcntl.LOCK_EX):
            data = self._read()
            yield data
            self._write(data)

    # --- setup -----------------------------------------------------------------------------

    def needs_setup(self) -> bool:
        users = self._snapshot()["users"]
        return not any(user["role"] == "admin" for user in users.values())

    def new_setup_code(self) -> str:
        """Make a fresh one-time setup code (the previous one stops working) and return it."""
        code = "-".join(
            "".join(secrets.choice(_SETUP_ALPHABET) for _ in range(4)) for _ in range(3)
        )
        with self._changing() as data:
            if any(user["role"] == "admin" for user in data["users"].values()):
                raise SetupError("the appliance is already set up: log in as an admin instead")
            data["setup"] = {"hash": hash_secret(code), "created": int(self._clock())}
        return code

    def complete_setup(self, code: str, username: str, password: str) -> StaffUser:
        """Check the setup code, create the first admin, and retire the code."""
        normalised = code.strip().upper().replace(" ", "")
        with self._changing() as data:
            setup = data.get("setup")
            if any(user["role"] == "admin" for user in data["users"].values()):
                raise SetupError("the appliance is already set up: log in as an admin instead")
            if not verify_secret(normalised, setup["hash"] if setup else None):
                raise SetupError(
                    "wrong setup code: read it from the log or run `appliance setup-code`"
                )
            user = self._new_user(data, username, "admin", password)
            data["setup"] = None
        return user

    # --- users -----------------------------------------------------------------------------

    def _new_user(self, data: dict[str, Any], username: str, role: str, secret: str) -> StaffUser:
        checked_role = _check_role(role)
        if not USERNAME.fullmatch(username):
            raise CredentialError(
                "a username is 1-32 characters: lower-case letters, digits, '.', '_' or '-', "
                "starting with a letter"
            )
        if username in data["users"]:
            raise CredentialError("there is already a user with that name")
        _check_secret(checked_role, secret)
        created = int(self._clock())
        data["users"][username] = {
            "role": checked_role,
            "hash": hash_secret(secret),
            "created": created,
        }
        return StaffUser(username, checked_role, created)

    def add_user(self, username: str, role: str, secret: str) -> StaffUser:
        with self._changing() as data:
            return self._new_user(data, username, role, secret)

    def users(self) -> list[StaffUser]:
        users = self._snapshot()["users"]
        return [StaffUser(name, u["role"], u["created"]) for name, u in sorted(users.items())]

    def user(self, username: str) -> StaffUser | None:
        found = self._snapshot()["users"].get(username)
        return None if found is None else StaffUser(username, found["role"], found["created"])

    def verify_login(self, username: str, secret: str) -> StaffUser | None:
        """The user if ``secret`` is theirs; unknown users take as long as known ones."""
        found = self._snapshot()["users"].get(username)
        ok = verify_secret(secret, found["hash"] if found else None)
        if not ok or found is None:
            return None
        return StaffUser(username, found["role"], found["created"])

    def set_secret(self, username: str, secret: str) -> None:
        with self._changing() as data:
            found = data["users"].get(username)
            if found is None:
                raise CredentialError("there is no user with that name")
            _check_secret(found["role"], secret)
            found["hash"] = hash_secret(secret)

    # --- per-user extensions (the second factor keeps its record here: appliance.web.mfa) ----

    def user_record(self, username: str) -> dict[str, Any] | None:
        """A copy of one user's stored record (hashes included), or None."""
        found = self._snapshot()["users"].get(username)
        return None if found is None else dict(found)

    def user_records(self) -> dict[str, dict[str, Any]]:
        return dict(self._snapshot()["users"])

    @contextlib.contextmanager
    def changing_user(self, username: str) -> Iterator[dict[str, Any]]:
        """One user's stored record to change in place, written back atomically under the lock."""
        with self._changing() as data:
            found = data["users"].get(username)
            if found is None:
                raise CredentialError(f"there is no user {username}")
            yield found

    def remove_user(self, username: str) -> None:
        with self._changing() as data:
            found = data["users"].get(username)
            if found is None:
                raise CredentialError("there is no user with that name")
            admins = [n for n, u in data["users"].items() if u["role"] == "admin"]
            if found["role"] == "admin" and admins == [username]:
                raise CredentialError("the last admin cannot be removed")
            del data["users"][username]

    # --- API tokens ------------------------------------------------------------------------

    def create_token(self, role: str, name: str) -> tuple[ApiToken, str]:
        """Store a new token's hash and return it with the token itself (shown once)."""
        checked_role = _check_role(role)
        label = " ".join(name.split())
        if not 1 <= len(label) <= 64:
            raise CredentialError("a token needs a name of 1-64 characters")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = ApiToken(secrets.token_hex(4), label, checked_role, int(self._clock()))
        with self._changing() as data:
            data["tokens"][record.token_id] = {
                "name": record.name,
                "role": record.role,
                "created": record.created,
                "sha256": _token_digest(token),
            }
        return record, token

    def tokens(self) -> list[ApiToken]:
        tokens = self._snapshot()["tokens"]
        return [
            ApiToken(token_id, t["name"], t["role"], t["created"])
            for token_id, t in sorted(tokens.items(), key=lambda item: item[1]["created"])
        ]

    def revoke_token(self, token_id: str) -> bool:
        with self._changing() as data:
            return data["tokens"].pop(token_id, None) is not None

    def token_for(self, token: str) -> ApiToken | None:
        """The token record a bearer token belongs to, or None."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
            return None
        digest = _token_digest(token)
        for token_id, t in self._snapshot()["tokens"].items():
            if hmac.compare_digest(t["sha256"], digest):
                return ApiToken(token_id, t["name"], t["role"], t["created"])
        return None


# --- functions for the CLI (`appliance setup-code`, `appliance token ...`) --------------------


def setup_code(state_dir: Path) -> str:
    """A fresh one-time setup code for the first admin (replaces any earlier code)."""
    return UserStore(state_dir).new_setup_code()


def create_token(state_dir: Path, role: str, name: str) -> str:
    """Create an API token and return it; only its hash is kept, so show it now or never."""
    return UserStore(state_dir).create_token(role, name)[1]


def list_tokens(state_dir: Path) -> list[ApiToken]:
    return UserStore(state_dir).tokens()


def revoke_token(state_dir: Path, token_id: str) -> bool:
    """Revoke by token id (from :func:`list_tokens`); False if there was no such token."""
    return UserStore(state_dir).revoke_token(token_id)
