"""The server's limits, its connection gate, its refusal counts and its own short answers."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

logger = logging.getLogger("appliance.web.httpd")

MiB = 1024 * 1024
REPORT_EVERY_S = 60.0


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    body_grace_s: float = 10.0
    body_min_rate: int = 256 * 1024  # bytes/s a body must average after the grace
    keepalive_s: float = 15.0
    write_timeout_s: float = 30.0
    max_connections: int = 256
    max_per_client: int = 32  # a browser opens ~6 per host; tabs and a kiosk add a few
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 40 * MiB + 64 * 1024
    body_budget_bytes: int = 128 * MiB  # all bodies being received at once
    workers: int = 12


class ConnectionGate:
    """Open connections per client address and in total (used on the event loop only)."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self._per_client: Counter[str] = Counter()

    def admit(self, client: str) -> str | None:
        """None when admitted, else which cap refused it."""
        if self.total >= self.max_total:
            return "refused_total_cap"
        if self._per_client[client] >= self.max_per_client:
            return "refused_client_cap"
        self.total += 1
        self._per_client[client] += 1
        return None

    def release(self, client: str) -> None:
        self.total -= 1
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]


class ServerStats:
    """Counts of what the server turned away, reported without addresses, at most each minute."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()
        self._reported_at = -REPORT_EVERY_S

    def note(self, kind: str) -> None:
        self.counts[kind] += 1
        self._unreported[kind] += 1
        now = time.monotonic()
        if now - self._reported_at >= REPORT_EVERY_S:
            summary = ", ".join(f"{k} {n}" for k, n in sorted(self._unreported.items()))
            logger.warning("web %s: turned away connections (%s)", self.name, summary)
            self._unreported.clear()
            self._reported_at = now


def simple_answer(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = (message + "\n").encode("utf-8")
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n"
        f"{extra}\r\n"
    ).encode("ascii") + body


PLAIN_HTTP_ANSWER = simple_answer(
    400, "Bad Request", "This port speaks HTTPS only: open the https:// address instead."
)
TIMEOUT_ANSWER = simple_answer(408, "Request Timeout", "The request took too long to arrive.")
TOO_LARGE_ANSWER = simple_answer(413, "Content Too Large", "Too large: over the upload limit.")
BUSY_ANSWER = simple_answer(
    503, "Service Unavailable", "Busy receiving other uploads: try again.", "Retry-After: 5\r\n"
)
