"""What scrubbing freed memory (appliance/memory.py, M_PERTURB) costs the ID-photo pipeline.

    .venv/bin/python benchmarks/bench_scrub.py --iterations 20

One process per image size; runs alternate scrub on and off (glibc takes the setting at any
time), so a noisy host moves both the same way. Prints the median of each and their ratio.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def child(name: str, iterations: int) -> dict[str, object]:
    from bench_process import make_inputs

    from appliance.config import Config
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.inference.service import InferenceService
    from appliance.memory import SCRUB_BYTE

    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    data = make_inputs()[name]
    config = Config()
    pipeline = IdPhotoPipeline(InferenceService.from_config(config.inference), config)
    request = ProductRequest(spec_id="icao-35x45")
    pipeline.process(data, request)
    times: dict[bool, list[float]] = {True: [], False: []}
    for index in range(2 * iterations):
        scrub = index % 2 == 0
        mallopt(-6, SCRUB_BYTE if scrub else 0)  # M_PERTURB
        start = time.perf_counter()
        pipeline.process(data, request)
        times[scrub].append((time.perf_counter() - start) * 1000.0)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    return {"image": name, "scrub_ms": round(on, 1), "plain_ms": round(off, 1),
            "ratio": round(on / off, 3)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.iterations)))
        return 0
    for name in ("12mp", "0.4mp"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", name, "--iterations", str(args.iterations)],
            capture_output=True, text=True, check=True, timeout=900,
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{name:>6}: scrub on {result['scrub_ms']} ms, off {result['plain_ms']} ms "
            f"(median of {args.iterations} each, alternating): x{result['ratio']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
