"""systemd's readiness and watchdog protocol over $NOTIFY_SOCKET, without a dependency.

The protocol is one datagram per message on a Unix socket whose path systemd puts in
$NOTIFY_SOCKET (a leading '@' means the abstract namespace). Outside systemd the variable is
unset and every call is a no-op, so the daemon runs the same way on a laptop.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else 0.0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> bool:
        if not self.address:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with self._lock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            try:
                sock.sendto(message.encode(), target)
            except OSError:
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


class Watchdog:
    """Pings WATCHDOG=1 at half the interval systemd asked for, but only while `healthy()`
    says the work that matters (an inference invoke) is still completing. A hung invoke
    therefore stops the pings and systemd restarts the service."""

    def __init__(self, notifier: Notifier, healthy: Callable[[], bool]) -> None:
        self.notifier = notifier
        self.healthy = healthy
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.notifier.watchdog_s or self._thread is not None:
            return
        interval = self.notifier.watchdog_s / 2.0

        def run() -> None:
            while not self._stop.wait(interval):
                if self.healthy():
                    self.notifier.watchdog()

        self._thread = threading.Thread(target=run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
