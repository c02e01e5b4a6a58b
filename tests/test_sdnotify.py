from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from appliance.sdnotify import Notifier, Watchdog


def receiver(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    return sock


def test_no_socket_means_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_ready_status_stopping_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with receiver(path) as sock:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.ready("serving")
        assert sock.recv(256) == b"READY=1\nSTATUS=serving"
        notifier.stopping()
        assert sock.recv(256) == b"STOPPING=1"


def test_abstract_namespace(tmp_path: Path) -> None:
    name = f"appliance-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    with sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).watchdog()
        assert sock.recv(64) == b"WATCHDOG=1"


def test_watchdog_pings_only_while_healthy(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with receiver(path) as sock:
        env = {
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": "100000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        healthy = threading.Event()
        healthy.set()
        dog = Watchdog(Notifier(env), healthy.is_set)
        dog.start()
        try:
            assert sock.recv(64) == b"WATCHDOG=1"
            healthy.clear()
            # drain anything already in flight, then expect silence
            sock.settimeout(0.3)
            received = []
            try:
                while True:
                    received.append(sock.recv(64))
            except TimeoutError:
                pass
            assert len(received) <= 1
        finally:
            dog.stop()


def test_watchdog_for_another_pid_is_ignored() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "100000", "WATCHDOG_PID": "1"}
    assert Notifier(env).watchdog_s == 0.0
