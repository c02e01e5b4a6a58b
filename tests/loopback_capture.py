"""A packet capture of one loopback TCP port with Debian's tcpdump, and its TCP payloads.

The browser test proves with it that no JPEG of the session crosses the customer's network in
the clear: it captures the plain-HTTP port while the phone downloads, then searches every
flow's reassembled payload for sampled blocks of each output file.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from types import TracebackType

TCPDUMP = shutil.which("tcpdump") or "/usr/bin/tcpdump"
LINKTYPE_ETHERNET, LINKTYPE_NULL, LINKTYPE_LINUX_SLL = 1, 0, 113


def capture_unavailable() -> str:
    """Why a capture cannot run here ("" when it can)."""
    if not shutil.which("tcpdump"):
        return "Debian's tcpdump is not installed (apt-get install tcpdump)"
    if os.geteuid() != 0:
        return "tcpdump -i lo needs root (or CAP_NET_RAW)"
    return ""


class LoopbackCapture:
    def __init__(self, port: int, path: Path) -> None:
        self.port = port
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackCapture:
        command = [TCPDUMP, "-i", "lo", "--immediate-mode", "-U", "-n", "-s", "0",
                   "-w", str(self.path), "tcp", "port", str(self.port)]  # fmt: skip
        self._process = subprocess.Popen(command, stderr=subprocess.PIPE)
        assert self._process.stderr is not None
        deadline = time.monotonic() + 15
        line = b""
        while time.monotonic() < deadline and b"listening on" not in line:
            line = self._process.stderr.readline()
            if not line and self._process.poll() is not None:
                raise RuntimeError("tcpdump did not start (needs root or CAP_NET_RAW)")
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        if self._process is None:
            return
        try:
            self._flush()
        finally:
            self._process.terminate()
            self._process.wait(timeout=15)

    def _flush(self) -> None:
        """Wait until a marker connection made now is in the file: tcpdump writes in order, so
        everything captured before it is written too."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as marker:
            marker_port = marker.getsockname()[1]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if any(marker_port in ports for ports in self.flows()):
                return
            time.sleep(0.05)
        raise RuntimeError("tcpdump did not write the marker connection in 15 s")

    def flows(self) -> dict[tuple[int, int], bytes]:
        """TCP payload per (source port, destination port), in capture order."""
        data = self.path.read_bytes()
        (linktype,) = struct.unpack("<I", data[20:24])
        offset = 24
        flows: dict[tuple[int, int], list[bytes]] = defaultdict(list)
        while offset + 16 <= len(data):
            included = struct.unpack("<I", data[offset + 8 : offset + 12])[0]
            if offset + 16 + included > len(data):
                break  # a record tcpdump is still writing
            packet = data[offset + 16 : offset + 16 + included]
            offset += 16 + included
            link = {LINKTYPE_ETHERNET: 14, LINKTYPE_NULL: 4, LINKTYPE_LINUX_SLL: 16}[linktype]
            ip = packet[link:]
            if ip[0] >> 4 == 4:
                header = (ip[0] & 0x0F) * 4
                total = struct.unpack(">H", ip[2:4])[0]
                tcp = ip[header:total]
            else:  # IPv6, no extension headers on loopback TCP
                tcp = ip[40 : 40 + struct.unpack(">H", ip[4:6])[0]]
            ports = struct.unpack(">HH", tcp[:4])
            flows[ports].append(tcp[(tcp[12] >> 4) * 4 :])
        return {ports: b"".join(parts) for ports, parts in flows.items()}


def samples(data: bytes, count: int = 24, size: int = 48) -> list[bytes]:
    """Blocks spread over ``data`` (past the first bytes, which every JPEG shares)."""
    step = max(1, (len(data) - size) // count)
    return [data[i : i + size] for i in range(0, len(data) - size, step)][:count]
