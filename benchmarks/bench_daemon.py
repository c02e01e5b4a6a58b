"""Daemon cold start to READY=1, and its resident memory with every model loaded.

    .venv/bin/python benchmarks/bench_daemon.py            # 3 starts
    .venv/bin/python benchmarks/bench_daemon.py --smoke    # 1 start (the test suite's)

Each start is a fresh `appliance run --demo` process on its own ports, state dir and tmpfs
workspace, with $NOTIFY_SOCKET pointing at this script, exactly as systemd would run it. After
READY it makes one ID photo from a small photo through the API, then one from a 12 MP camera
JPEG (what a studio capture is), reading VmRSS after each and VmHWM (the peak) from /proc, and
VmRSS once more after the daemon has been idle long enough to give freed buffers back (not in
--smoke mode).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.memory import IdleTrimmer  # noqa: E402


def free_port() -> int:
    """A free loopback port (the other daemon benchmarks take it from here too)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return fields


def camera_jpeg() -> bytes:
    """The 12 MP camera-like JPEG bench_process.py times (a real portrait, enlarged)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_process import make_inputs

    return make_inputs()["12mp"]


def one_start(work: Path, smoke: bool) -> dict[str, float]:
    state = work / f"state-{uuid.uuid4().hex[:6]}"
    workspace = Path("/dev/shm") / f"appliance-bench-{uuid.uuid4().hex[:8]}"
    config = work / "bench.toml"
    config.write_text(f'[session]\nworkspace_dir = "{workspace}"\n')
    notify_path = work / f"notify-{uuid.uuid4().hex[:6]}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(180)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable,
        "-m",
        "appliance.cli",
        "--config",
        str(config),
        "run",
        "--demo",
        "--state-dir",
        str(state),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--http-port",
        str(free_port()),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        ready_s = time.perf_counter() - started
        at_ready = process_memory(process.pid)
        token = (
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "appliance.cli",
                    "token",
                    "create",
                    "--name",
                    "bench",
                    "--state-dir",
                    str(state),
                ],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
                cwd=ROOT,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        context = ssl.create_default_context(cafile=str(state / "tls" / "ca.crt"))
        context.check_hostname = False

        def call(path: str, body: bytes | None = None, kind: str = "application/json") -> dict:
            request = urllib.request.Request(
                f"https://127.0.0.1:{port}/api/v1{path}",
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": kind},
            )
            with urllib.request.urlopen(request, context=context, timeout=120) as response:
                return dict(json.loads(response.read()))

        session = call("/sessions")["id"]
        call(f"/sessions/{session}/consent")
        photo = (ROOT / "samples" / "astronaut.png").read_bytes()
        photo_id = call(f"/sessions/{session}/photos", photo, "image/png")["photo_id"]
        call(f"/sessions/{session}/photos/{photo_id}/products", b'{"spec": "icao-35x45"}')
        steady = process_memory(process.pid)
        big_id = call(f"/sessions/{session}/photos", camera_jpeg(), "image/jpeg")["photo_id"]
        call(f"/sessions/{session}/photos/{big_id}/products", b'{"spec": "icao-35x45"}')
        after_big = process_memory(process.pid)
        idle = {"VmRSS": 0.0}
        if not smoke:  # the daemon gives freed buffers back after 15 s idle (checked every 5 s)
            trimmer = IdleTrimmer()
            time.sleep(trimmer.idle_s + trimmer.interval_s + 1.0)
            idle = process_memory(process.pid)
        return {
            "cold_start_to_ready_s": round(ready_s, 2),
            "rss_at_ready_mb": at_ready.get("VmRSS", 0.0),
            "rss_after_one_product_mb": steady.get("VmRSS", 0.0),
            "rss_after_a_12mp_product_mb": after_big.get("VmRSS", 0.0),
            "rss_idle_after_that_mb": idle.get("VmRSS", 0.0),
            "peak_rss_mb": after_big.get("VmHWM", 0.0),
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        notify.close()
        shutil.rmtree(workspace, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        runs = [one_start(Path(work), args.smoke) for _ in range(1 if args.smoke else args.starts)]
    summary = {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
    print(", ".join(f"{key} {value}" for key, value in summary.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
