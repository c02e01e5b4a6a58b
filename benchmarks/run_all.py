"""Every benchmark in one run, on one machine state, with the machine, date and versions.

    .venv/bin/python benchmarks/run_all.py                  # full run (about 10 minutes)
    .venv/bin/python benchmarks/run_all.py --smoke          # one iteration each
    .venv/bin/python benchmarks/run_all.py --only process,daemon

Runs, one after the other (never two at once, so none disturbs another's timing):
bench_models.py (each model, float against int8, 1/2/4 threads), bench_process.py (the ID
photo per stage, the limit, peak RSS), bench_peer.py (MediaPipe's own solutions on the shared
portraits beside the appliance), bench_daemon.py (cold start, RSS), bench_slow_clients.py
(staff and health latency with 100 slow clients connected), bench_background.py (the
background residue on real portraits and flag variants, the matte step's and the measure's
cost) and bench_memory.py (the daemon's peak memory per upload kind, decompression bombs
included). Each writes its JSON into
--out (default benchmarks/out/<UTC date and time>/); all.json there holds them together with
the machine description. The figures in RESULTS.md come from such a run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {
    "models": "bench_models.py",
    "process": "bench_process.py",
    "peer": "bench_peer.py",
    "daemon": "bench_daemon.py",
    "slow_clients": "bench_slow_clients.py",
    "background": "bench_background.py",
    "memory": "bench_memory.py",
}
PACKAGES = ("ai-edge-litert", "numpy", "opencv-python-headless", "pillow", "appliance")


def machine() -> dict[str, object]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu or platform.processor(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "versions": versions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one iteration each")
    parser.add_argument("--only", default=",".join(SCRIPTS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, help="directory for the JSON files")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(SCRIPTS)}")
    out = args.out or ROOT / "benchmarks" / "out" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    combined: dict[str, object] = {"machine": machine(), "smoke": args.smoke, "results": {}}
    results: dict[str, object] = {}
    failed = []
    for name in chosen:
        target = out / f"{name}.json"
        command = [sys.executable, str(ROOT / "benchmarks" / SCRIPTS[name]), "--json", str(target)]
        if args.smoke:
            command.append("--smoke")
        print(f"== {name}: {' '.join(command[1:])}", flush=True)
        started = time.monotonic()
        done = subprocess.run(command, cwd=ROOT, check=False, timeout=3600)
        seconds = round(time.monotonic() - started, 1)
        if done.returncode != 0 or not target.is_file():
            failed.append(name)
            results[name] = {"error": f"exit status {done.returncode}", "seconds": seconds}
            continue
        results[name] = {"seconds": seconds, **json.loads(target.read_text())}
    combined["results"] = results
    combined["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    (out / "all.json").write_text(json.dumps(combined, indent=2))
    print(f"== written: {out / 'all.json'}")
    if failed:
        print(f"== failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
