"""Hostile slow clients for the server tests: real sockets on loopback, bounded, self-stopping.

A :class:`SlowClients` opens ``count`` connections (over TLS when given a context), sends the
start of a request, then one more header line or body byte to every connection each
``interval_s`` (so a per-read socket timeout never fires) until it is closed or ``max_s`` has
passed. Connections are spread over several loopback source addresses (all of 127.0.0.0/8 is
the loopback interface on Linux), the way many clients on a LAN would come in.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time

SLOW_HEADER_HEAD = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
SLOW_BODY_HEAD = (
    b"POST /login HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n"
)


def loopback_sources(count: int, first: int = 10) -> list[str]:
    return [f"127.0.0.{first + n}" for n in range(count)]


def connect(
    port: int,
    context: ssl.SSLContext | None,
    source: str = "127.0.0.1",
    timeout: float = 5.0,
) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    if context is None:
        return raw
    try:
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def answered_or_closed(sock: socket.socket) -> bool:
    """True when the server has sent something or closed this connection (never blocks)."""
    sock.setblocking(False)
    try:
        sock.recv(4096)  # TLS 1.3 session tickets alone raise SSLWantReadError here
        return True  # a response, or b"" for a closed connection
    except (ssl.SSLWantReadError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)


class SlowClients:
    def __init__(
        self,
        port: int,
        context: ssl.SSLContext | None,
        *,
        head: bytes,
        trickle: bytes,
        count: int,
        sources: list[str],
        interval_s: float = 0.5,
        max_s: float = 60.0,
    ) -> None:
        self.port = port
        self.context = context
        self.head = head
        self.trickle = trickle
        self.count = count
        self.sources = sources
        self.interval_s = interval_s
        self.max_s = max_s
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drip, name="slow-clients", daemon=True)

    def open(self) -> SlowClients:
        for n in range(self.count):
            sock = connect(self.port, self.context, self.sources[n % len(self.sources)])
            sock.sendall(self.head)
            self.sockets.append(sock)
        self._thread.start()
        return self

    def _drip(self) -> None:
        ends = time.monotonic() + self.max_s
        while not self._stop.wait(self.interval_s) and time.monotonic() < ends:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.send(self.trickle)

    def still_open(self) -> int:
        self._stop.set()
        self._thread.join(timeout=10)
        return sum(not answered_or_closed(sock) for sock in self.sockets)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self.sockets.clear()

    def __enter__(self) -> SlowClients:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
