"""Logged-in staff (server-side, in memory) and the login rate limiter.

A browser holds only an opaque random id in a ``Secure; HttpOnly; SameSite=Strict`` cookie; who
it belongs to, its CSRF token, its last activity and its sudo window live here. A restart logs
everyone out, which is what an appliance that keeps nothing should do.

The limiter (:class:`LoginLimiter`) counts failures per account, per trusted device and per
client address, in memory only (addresses never reach the audit log, invariant 4); see its
docstring for who is locked out of what. Every secret a person types (password, PIN, setup code,
a second factor) goes through the same three calls: ``retry_after``, ``failure``, ``success``.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_LOGINS = 256
MAX_LIMITER_KEYS = 10_000


@dataclass
class Login:
    login_id: str
    username: str
    role: str
    csrf: str
    created: float
    last_seen: float
    sudo_until: float
    # Set when [web] require_mfa sends a user without a second factor to enrol first: such a
    # login reaches only the account page (security.enforce_access).
    must_enrol: bool = False


class LoginSessions:
    """Live staff logins keyed by the cookie's random id; expire after inactivity."""

    def __init__(self, inactivity_s: float, *, clock: Callable[[], float] = time.monotonic):
        self.inactivity_s = inactivity_s
        self._clock = clock
        self._lock = threading.Lock()
        self._logins: OrderedDict[str, Login] = OrderedDict()

    def create(
        self, username: str, role: str, *, sudo_s: float = 0.0, must_enrol: bool = False
    ) -> Login:
        now = self._clock()
        login = Login(
            secrets.token_urlsafe(32),
            username,
            role,
            secrets.token_urlsafe(32),
            now,
            now,
            now + sudo_s,
            must_enrol,
        )
        with self._lock:
            self._logins[login.login_id] = login
            while len(self._logins) > MAX_LOGINS:
                self._logins.popitem(last=False)  # the oldest login goes first
        return login

    def get(self, login_id: str, *, touch: bool = True) -> Login | None:
        """The live login for ``login_id``; ``touch`` counts this request as activity."""
        now = self._clock()
        with self._lock:
            login = self._logins.get(login_id)
            if login is None:
                return None
            if now - login.last_seen >= self.inactivity_s:
                del self._logins[login_id]
                return None
            if touch:
                login.last_seen = now
                self._logins.move_to_end(login_id)
            return login

    def drop(self, login_id: str) -> Login | None:
        with self._lock:
            return self._logins.pop(login_id, None)

    def drop_user(self, username: str) -> int:
        """Log a user out everywhere (removed, or their password changed)."""
        with self._lock:
            gone = [key for key, login in self._logins.items() if login.username == username]
            for key in gone:
                del self._logins[key]
        return len(gone)

    def grant_sudo(self, login: Login, seconds: float) -> None:
        with self._lock:
            login.sudo_until = self._clock() + seconds

    def enrolled(self, login: Login) -> None:
        """The login's user has a second factor now: lift the enrol-first restriction."""
        with self._lock:
            login.must_enrol = False

    def has_sudo(self, login: Login) -> bool:
        return self._clock() < login.sudo_until


DEVICE_COOKIE = "appliance_device"
DEVICE_TRUST_S = 30 * 24 * 3600.0
MAX_TRUSTED_DEVICES = 1024
MAX_ACCOUNTS_PER_CLIENT = 64  # more distinct names than any studio has staff: a sprayer


@dataclass(frozen=True)
class Attempt:
    """One try at a secret: whose account, from which client address, with which device cookie.

    ``account`` is the username (or a fixed name such as ``"setup"``); ``device`` is the value
    of the browser's :data:`DEVICE_COOKIE`, if it sent one. Addresses stay in memory only."""

    account: str
    client: str
    device: str | None = None


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    accounts: set[str] = field(default_factory=set)  # for a client: the accounts it failed on


@dataclass
class _Device:
    account: str
    expires: float


class LoginLimiter:
    """Failure counts and lockouts for logins (and any other secret a person types).

    - An **account** is locked after ``max_failures`` failed tries from browsers it does not
      trust, for a backoff that doubles with every further failure up to ``max_lockout_s``; a
      correct password does not get in meanwhile, from any such client.
    - A browser where the account logged in before carries a **trusted device** cookie: it is
      limited on its own and ignores the account's lock, so a stranger who types wrong
      passwords for the admin cannot lock the admin out of their own tablet.
    - A **client address** has a budget of ``max_client_failures``. Over it, the address may no
      longer try the accounts it failed on (nor more than a few dozen names at all), but a first
      try at another account still counts: a colleague on the same address logs in.

    ``lock_accounts=False`` keeps only the per-client and per-device limits (the setup code: it
    is one "account", and one client must not be able to lock it for everyone).
    """

    def __init__(
        self,
        *,
        max_failures: int = 5,
        max_client_failures: int = 20,
        base_lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        lock_accounts: bool = True,
        device_trust_s: float = DEVICE_TRUST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.max_client_failures = max_client_failures
        self.base_lockout_s = base_lockout_s
        self.max_lockout_s = max_lockout_s
        self.lock_accounts = lock_accounts
        self.device_trust_s = device_trust_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _Failures] = OrderedDict()
        self._devices: OrderedDict[str, _Device] = OrderedDict()

    # --- the three questions -----------------------------------------------------------------

    def retry_after(self, attempt: Attempt) -> float:
        """Seconds until this attempt may be made (0: go ahead and check the secret)."""
        now = self._clock()
        with self._lock:
            device = self._trusted(attempt, now)
            if device is not None:
                return self._wait(f"device:{device}", now)
            waits = [0.0]
            if self.lock_accounts:
                waits.append(self._wait(f"account:{attempt.account}", now))
            client = self._keys.get(f"client:{attempt.client}")
            if client is not None and client.locked_until > now:
                known = attempt.account in client.accounts
                if known or len(client.accounts) >= MAX_ACCOUNTS_PER_CLIENT:
                    waits.append(client.locked_until - now)
            return max(waits)

    def failure(self, attempt: Attempt) -> float:
        """Count a wrong secret; returns the lockout it caused for this attempt (0: none yet)."""
        now = self._clock()
        with self._lock:
            device = self._trusted(attempt, now)
            if device is not None:
                return self._count(f"device:{device}", now, self.max_failures)
            caused = self._count(f"client:{attempt.client}", now, self.max_client_failures)
            self._keys[f"client:{attempt.client}"].accounts.add(attempt.account)
            if self.lock_accounts:
                caused = max(
                    caused, self._count(f"account:{attempt.account}", now, self.max_failures)
                )
            self._trim()
            return caused

    def success(self, attempt: Attempt) -> str:
        """The secret was right: clear this account's counts; returns the device token to set
        as :data:`DEVICE_COOKIE` (this browser is trusted for this account from now on)."""
        now = self._clock()
        with self._lock:
            old = self._trusted(attempt, now)
            if old is not None:
                self._keys.pop(f"device:{old}", None)
                self._devices.pop(old, None)
            self._keys.pop(f"account:{attempt.account}", None)
            client = self._keys.get(f"client:{attempt.client}")
            if client is not None:
                client.accounts.discard(attempt.account)
            token = secrets.token_urlsafe(24)
            self._devices[token] = _Device(attempt.account, now + self.device_trust_s)
            while len(self._devices) > MAX_TRUSTED_DEVICES:
                self._devices.popitem(last=False)
            return token

    def forget_account(self, account: str) -> None:
        """The account was removed or its password changed: its devices are trusted no more."""
        with self._lock:
            for token in [t for t, d in self._devices.items() if d.account == account]:
                del self._devices[token]
                self._keys.pop(f"device:{token}", None)

    # --- bookkeeping (under the lock) ----------------------------------------------------------

    def _trusted(self, attempt: Attempt, now: float) -> str | None:
        if not attempt.device:
            return None
        device = self._devices.get(attempt.device)
        if device is None or device.account != attempt.account or device.expires <= now:
            return None
        return attempt.device

    def _wait(self, key: str, now: float) -> float:
        entry = self._keys.get(key)
        return max(0.0, entry.locked_until - now) if entry is not None else 0.0

    def _count(self, key: str, now: float, allowed: int) -> float:
        entry = self._keys.pop(key, None) or _Failures()
        entry.count += 1
        self._keys[key] = entry
        if entry.count < allowed:
            return 0.0
        doublings = min(entry.count - allowed, 16)
        lockout = min(self.base_lockout_s * 2**doublings, self.max_lockout_s)
        entry.locked_until = now + lockout
        return lockout

    def _trim(self) -> None:
        while len(self._keys) > MAX_LIMITER_KEYS:
            self._keys.popitem(last=False)
