"""The daemon's peak memory per kind of upload, worst cases included (issue 15, failure 5).

    .venv/bin/python benchmarks/bench_memory.py                 # every kind below
    .venv/bin/python benchmarks/bench_memory.py --only png-64mp-solid,jpeg-64mp
    .venv/bin/python benchmarks/bench_memory.py --smoke         # two small kinds (the tests')

Each kind gets a fresh `appliance run --demo` daemon (its own ports, state dir and tmpfs
workspace), so VmHWM, the kernel's record of its peak resident memory, is that upload's alone:
the script reads VmRSS and VmHWM at READY, uploads the photo through the API, asks for an ID
photo if the upload was accepted, and reads VmHWM again. The photos are made here from a real
portrait (../shared/data/portraits/hivision-test4.jpg when present, else the public-domain
astronaut sample), enlarged where the kind says so (HEIC only with the `heic` extra installed),
plus the decompression bombs of the issue
(a one-colour 8000 x 8000 PNG of about 200 KB, and a PNG whose header claims 100 000 x 100 000).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import os
import platform
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

from bench_daemon import free_port, process_memory

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "portraits"


def _portrait(megapixels: float) -> object:
    from PIL import Image

    base = SHARED / "hivision-test4.jpg"
    source = Image.open(base if base.exists() else ROOT / "samples" / "astronaut.png")
    source = source.convert("RGB")
    width = round(math.sqrt(megapixels * 1e6 * source.width / source.height))
    return source.resize((width, round(width * source.height / source.width)))


def _encoded(megapixels: float, fmt: str, **options: object) -> Callable[[], bytes]:
    def make() -> bytes:
        if fmt == "HEIF":  # the optional `heic` extra (pillow-heif)
            import pillow_heif

            pillow_heif.register_heif_opener()
        stream = io.BytesIO()
        _portrait(megapixels).save(stream, fmt, **options)  # type: ignore[attr-defined]
        return stream.getvalue()

    return make


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def solid_png(width: int, height: int, rows: int | None = None) -> bytes:
    """One-colour RGB PNG made row by row (never holding its pixels); ``rows`` truncates."""
    packer = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * (3 * width)
    data = b"".join(packer.compress(row) for _ in range(height if rows is None else rows))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", data + packer.flush())
        + _chunk(b"IEND", b"")
    )


KINDS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "jpeg-12mp": ("image/jpeg", _encoded(12, "JPEG", quality=92)),
    "jpeg-12mp-progressive": ("image/jpeg", _encoded(12, "JPEG", quality=92, progressive=True)),
    "jpeg-64mp": ("image/jpeg", _encoded(63.9, "JPEG", quality=90)),
    "jpeg-64mp-progressive": ("image/jpeg", _encoded(63.9, "JPEG", quality=90, progressive=True)),
    "png-12mp": ("image/png", _encoded(12, "PNG")),
    "png-22mp": ("image/png", _encoded(22, "PNG")),  # about the largest PNG the budget takes
    "png-64mp-solid": ("image/png", lambda: solid_png(8000, 8000)),
    "webp-12mp": ("image/webp", _encoded(12, "WEBP", quality=90)),
    "heic-12mp": ("image/heic", _encoded(12, "HEIF", quality=90)),
    "dimensions-bomb": ("image/png", lambda: solid_png(100_000, 100_000, rows=2)),
}
SMOKE = ("jpeg-12mp", "png-64mp-solid")


def measure(work: Path, kind: str, photo: bytes, content_type: str) -> dict[str, object]:
    state = work / f"state-{uuid.uuid4().hex[:6]}"
    workspace = Path("/dev/shm") / f"appliance-bench-mem-{uuid.uuid4().hex[:8]}"
    config = work / "bench.toml"
    config.write_text(f'[session]\nworkspace_dir = "{workspace}"\n')
    notify_path = work / f"notify-{uuid.uuid4().hex[:6]}"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(180)
    port = free_port()
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [
        sys.executable, "-m", "appliance.cli", "--config", str(config), "run", "--demo",
        "--state-dir", str(state), "--bind", "127.0.0.1", "--port", str(port),
        "--http-port", str(free_port()),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        at_ready = process_memory(process.pid)
        token = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "token", "create", "--name", "bench",
             "--state-dir", str(state)],
            capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        context = ssl.create_default_context(cafile=str(state / "tls" / "ca.crt"))
        context.check_hostname = False

        def call(path: str, body: bytes | None = None, kind: str = "application/json") -> tuple:
            request = urllib.request.Request(
                f"https://127.0.0.1:{port}/api/v1{path}",
                data=body,
                method="POST",
                headers={"Authorization": f"Bearer {token}", "Content-Type": kind},
            )
            try:
                with urllib.request.urlopen(request, context=context, timeout=300) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read() or b"{}")

        _, created = call("/sessions")
        session = created["id"]
        call(f"/sessions/{session}/consent")
        started = time.perf_counter()
        status, answer = call(f"/sessions/{session}/photos", photo, content_type)
        outcome = f"upload {status} {answer.get('error', '')}".strip()
        if status == 201:
            status, answer = call(
                f"/sessions/{session}/photos/{answer['photo_id']}/products",
                b'{"spec": "icao-35x45"}',
            )
            outcome += f", product {status} {answer.get('error', '')}".strip()
        seconds = time.perf_counter() - started
        after = process_memory(process.pid)
        return {
            "kind": kind,
            "file_kb": round(len(photo) / 1024),
            "outcome": outcome,
            "seconds": round(seconds, 2),
            "rss_at_ready_mb": at_ready.get("VmRSS", 0.0),
            "peak_at_ready_mb": at_ready.get("VmHWM", 0.0),
            "peak_rss_mb": after.get("VmHWM", 0.0),
            "rss_after_mb": after.get("VmRSS", 0.0),
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        notify.close()
        shutil.rmtree(workspace, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="two small kinds only")
    parser.add_argument("--only", help="comma-separated kinds: " + ", ".join(KINDS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = list(SMOKE) if args.smoke else list(KINDS)
    if args.only:
        names = [name.strip() for name in args.only.split(",")]
        unknown = sorted(set(names) - set(KINDS))
        if unknown:
            parser.error(f"unknown kind(s): {', '.join(unknown)}")
    if "heic-12mp" in names and importlib.util.find_spec("pillow_heif") is None:
        names.remove("heic-12mp")
        print("heic-12mp: skipped, pillow-heif (the heic extra) is not installed", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name in names:
            content_type, make = KINDS[name]
            result = measure(Path(work), name, make(), content_type)
            results.append(result)
            print(
                f"{name:>22}: {result['file_kb']:>7} KB  peak {result['peak_rss_mb']:>6} MB "
                f"(ready {result['rss_at_ready_mb']} MB, peak at ready "
                f"{result['peak_at_ready_mb']} MB)  {result['outcome']}  {result['seconds']} s",
                flush=True,
            )
    if args.json:
        args.json.write_text(
            json.dumps({"machine": platform.platform(), "results": results}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
