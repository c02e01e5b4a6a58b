"""Short-lived, in-memory steps between two requests of the two-step login and enrolment.

After a correct password, an enrolled user's browser holds only a random id (a ``__Host-``
cookie) for :class:`SecondFactorDue`; an enrolment holds its not-yet-confirmed TOTP secret
keyed by the login it belongs to. Nothing here reaches the disk; a restart forgets it all.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Value = TypeVar("Value")

SECOND_FACTOR_S = 300.0  # from the password to the code
ENROLMENT_S = 600.0  # from the QR code to the first code
MAX_PENDING = 256


@dataclass(frozen=True)
class SecondFactorDue:
    """A password that was right; the login waits for the code."""

    username: str
    role: str
    target: str  # where the login goes afterwards


class Expiring(Generic[Value]):
    """A bounded map whose entries vanish ``lifetime_s`` after they were put."""

    def __init__(self, lifetime_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, Value]] = OrderedDict()

    def put(self, value: Value, key: str | None = None) -> str:
        """Store ``value`` under ``key`` (a fresh random id when None) and return the key."""
        chosen = key or secrets.token_urlsafe(32)
        with self._lock:
            self._items.pop(chosen, None)
            self._items[chosen] = (self._clock() + self.lifetime_s, value)
            while len(self._items) > MAX_PENDING:
                self._items.popitem(last=False)
        return chosen

    def get(self, key: str | None) -> Value | None:
        if not key:
            return None
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if self._clock() >= found[0]:
                del self._items[key]
                return None
            return found[1]

    def pop(self, key: str | None) -> Value | None:
        value = self.get(key)
        if key:
            with self._lock:
                self._items.pop(key, None)
        return value
