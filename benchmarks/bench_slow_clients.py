"""Staff and health latency while hostile slow clients hold connections open (issue 15).

    .venv/bin/python benchmarks/bench_slow_clients.py            # 50 + 50 slow clients
    .venv/bin/python benchmarks/bench_slow_clients.py --smoke    # 10 + 10, a few requests only

Starts a real `appliance run --demo` (its own ports, state dir and tmpfs workspace), then times
GET /healthz and an operator's GET /api/v1/status over fresh TLS connections: first on an idle
server, then with N connections that trickle a request's headers (one header line each 0.5 s)
and N that trickle a body (one byte each 0.5 s) open, spread over 10 loopback source addresses.
Last, it times how long the server takes to cut the trickling connections off (its
whole-request deadline; no per-read timeout ever fires for them). Loopback only, bounded: every
slow connection is closed by the server's deadline or by this script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench_daemon import free_port  # a sibling script

ROOT = Path(__file__).resolve().parent.parent
SLOW_HEADER = (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n", b"X-Slow: 1\r\n")
SLOW_BODY = (
    b"POST /login HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n",
    b"a",
)
STAFF_SOURCE = "127.0.0.200"


class Daemon:
    def __init__(self, work: Path) -> None:
        self.state = work / "state"
        self.workspace = Path("/dev/shm") / f"appliance-bench-slow-{uuid.uuid4().hex[:8]}"
        config = work / "bench.toml"
        config.write_text(f'[session]\nworkspace_dir = "{self.workspace}"\n')
        self.notify_path = work / "notify"
        self.port = free_port()
        self.command = [
            sys.executable, "-m", "appliance.cli", "--config", str(config), "run", "--demo",
            "--state-dir", str(self.state), "--bind", "127.0.0.1", "--port", str(self.port),
            "--http-port", str(free_port()),
        ]  # fmt: skip

    def __enter__(self) -> Daemon:
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(self.notify_path))
        notify.settimeout(180)
        env = {**os.environ, "NOTIFY_SOCKET": str(self.notify_path)}
        self.process = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with notify:
            while b"READY=1" not in notify.recv(4096):
                pass
        created = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "token", "create", "--name", "bench",
             "--state-dir", str(self.state)],
            capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        self.token = created.stdout.strip().splitlines()[-1]
        self.context = ssl.create_default_context(cafile=str(self.state / "tls" / "ca.crt"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        subprocess.run(["rm", "-rf", str(self.workspace)], check=False)

    def connect(self, source: str, tls: bool = True) -> socket.socket:
        raw = socket.create_connection(
            ("127.0.0.1", self.port), timeout=10, source_address=(source, 0)
        )
        return self.context.wrap_socket(raw, server_hostname="localhost") if tls else raw

    def get(self, path: str, staff: bool) -> float:
        """One request on a fresh TLS connection; seconds to the whole answer."""
        auth = f"Authorization: Bearer {self.token}\r\n" if staff else ""
        request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
        started = time.perf_counter()
        with self.connect(STAFF_SOURCE) as sock:
            sock.sendall(request.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        took = time.perf_counter() - started
        if not answer.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"{path}: {answer[:60]!r}")
        return took


class Tricklers:
    def __init__(self, daemon: Daemon, kind: tuple[bytes, bytes], count: int) -> None:
        self.head, self.drip = kind
        self.sockets = []
        for n in range(count):
            sock = daemon.connect(f"127.0.0.{10 + n % 10}")
            sock.sendall(self.head)
            self.sockets.append(sock)
        self.closed_at: dict[int, float] = {}
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ends = time.monotonic() + 120
        while not self._stop.wait(0.5) and time.monotonic() < ends:
            for n, sock in enumerate(self.sockets):
                if n in self.closed_at:
                    continue
                try:
                    sock.send(self.drip)
                except OSError:
                    self.closed_at[n] = time.monotonic()

    def cut_off(self) -> int:
        """How many the server has answered or closed (reads without blocking)."""
        for n, sock in enumerate(self.sockets):
            if n in self.closed_at:
                continue
            sock.setblocking(False)
            try:
                sock.recv(4096)
                self.closed_at[n] = time.monotonic()
            except (ssl.SSLWantReadError, BlockingIOError):
                pass
            except OSError:
                self.closed_at[n] = time.monotonic()
            finally:
                with contextlib.suppress(OSError):
                    sock.setblocking(True)
        return len(self.closed_at)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _stats(samples: list[float | None]) -> dict[str, float | int | None]:
    """Latency figures; a request with no answer within 10 s counts as failed, not timed."""
    ordered = sorted(sample for sample in samples if sample is not None)
    if not ordered:
        return {"median_ms": None, "p95_ms": None, "max_ms": None, "failed": len(samples)}
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "failed": len(samples) - len(ordered),
    }


def _timed(call: Callable[[], float]) -> float | None:
    try:
        return call()
    except (OSError, RuntimeError):  # timed out, refused, reset, or not a 200
        return None


def _latencies(daemon: Daemon, requests: int) -> dict[str, dict[str, float | int | None]]:
    calls: dict[str, Callable[[], float]] = {
        "healthz": lambda: daemon.get("/healthz", staff=False),
        "staff_status": lambda: daemon.get("/api/v1/status", staff=True),
    }
    return {name: _stats([_timed(call) for _ in range(requests)]) for name, call in calls.items()}


def run(slow: int, requests: int, wait_for_cut_off: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as work, Daemon(Path(work)) as daemon:
        idle = _latencies(daemon, requests)
        headers = Tricklers(daemon, SLOW_HEADER, slow)
        bodies = Tricklers(daemon, SLOW_BODY, slow)
        cut: dict[str, float | None] | None = None
        left: int | None = None
        try:
            loaded = _latencies(daemon, requests)
            open_during = 2 * slow - headers.cut_off() - bodies.cut_off()
            ends = time.monotonic() + 60
            while wait_for_cut_off and time.monotonic() < ends:
                if headers.cut_off() + bodies.cut_off() == 2 * slow:
                    break
                threading.Event().wait(0.1)
            if wait_for_cut_off:
                cut = {  # None: not one of them was cut off
                    name: round(max(t.closed_at.values()) - t.started, 1) if t.closed_at else None
                    for name, t in (("slow_headers", headers), ("slow_bodies", bodies))
                }
                left = 2 * slow - len(headers.closed_at) - len(bodies.closed_at)
        finally:
            headers.close()
            bodies.close()
    return {
        "slow_connections": {"headers": slow, "bodies": slow},
        "requests_each": requests,
        "idle": idle,
        "with_slow_clients": loaded,
        "slow_connections_open_while_timed": open_during,
        "all_cut_off_by_the_server_after_s": cut,
        "never_cut_off": left,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="10 + 10 slow clients, 3 requests")
    parser.add_argument("--slow", type=int, default=50, help="slow clients of each kind")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.smoke:  # no wait for the server's 10 s deadline
        result = run(10, 3, wait_for_cut_off=False)
    else:
        result = run(args.slow, args.requests, wait_for_cut_off=True)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
