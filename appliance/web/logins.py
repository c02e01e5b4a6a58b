"""Logged-in staff (server-side, in memory) and the login rate limiter.

A browser holds only an opaque random id in a ``Secure; HttpOnly; SameSite=Strict`` cookie; who
it belongs to, its CSRF token, its last activity and its sudo window live here. A restart logs
everyone out, which is what an appliance that keeps nothing should do.

The limiter counts failures per username and per client address (memory only: addresses never
reach the audit log, invariant 4). After ``max_failures`` the key is locked for a backoff that
doubles with every further failure, up to ``max_lockout_s``; a correct password does not get in
while its username or client is locked.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginLimiter:
    """Failure counts and lockouts per key (``user:<name>``, ``client:<address>``)."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        base_lockout_s: float = 30.0,
        max_lockout_s: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.base_lockout_s = base_lockout_s
        self.max_lockout_s = max_lockout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds until every key may try again (0 when none is locked)."""
        now = self._clock()
        with self._lock:
            waits = [self._keys[key].locked_until - now for key in keys if key in self._keys]
        return max([0.0, *waits])

    def failure(self, keys: Iterable[str]) -> float:
        """Count a failed attempt; returns the lockout it caused (0 when none yet)."""
        now = self._clock()
        longest = 0.0
        with self._lock:
            for key in keys:
                entry = self._keys.pop(key, None) or _Failures()
                entry.count += 1
                if entry.count >= self.max_failures:
                    doublings = min(entry.count - self.max_failures, 16)
                    lockout = min(self.base_lockout_s * 2**doublings, self.max_lockout_s)
                    entry.locked_until = now + lockout
                    longest = max(longest, lockout)
                self._keys[key] = entry
            while len(self._keys) > MAX_LIMITER_KEYS:
                self._keys.popitem(last=False)
        return longest

    def success(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._keys.pop(key, None)
