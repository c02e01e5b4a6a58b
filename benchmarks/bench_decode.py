"""The decoder against an older commit's, alternating call by call in one process.

    .venv/bin/python benchmarks/bench_decode.py --against 8b01eef --runs 150

Loads `appliance/imaging/decode.py` as it was at the given commit (`git show`) beside the
current one and times both on the bench_process.py inputs: the reduced decode for the models
and the kept decode of the 12 MP camera JPEG, and the full decode of the 0.4 MP portrait.
The order alternates each run, so neither gets the warmer caches.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def load_old(revision: str, folder: Path) -> Any:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:appliance/imaging/decode.py"],
        capture_output=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    path = folder / "old_decode.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("old_decode", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_decode"] = module
    spec.loader.exec_module(module)
    return module.decode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--against", default="8b01eef", help="the older commit")
    parser.add_argument("--runs", type=int, default=150)
    args = parser.parse_args()
    from bench_process import make_inputs

    from appliance.config import ImagingConfig
    from appliance.imaging.decode import decode as new

    budget = ImagingConfig().decode_budget_bytes
    inputs = make_inputs()
    cases = [
        ("12 MP, for the models", inputs["12mp"], {"max_side": 1024, "at_least": False}),
        ("12 MP, kept at 1/2", inputs["12mp"], {"max_side": 2000, "shrink": False}),
        ("0.4 MP, in full", inputs["0.4mp"], {"max_side": 1024, "at_least": False}),
    ]
    with tempfile.TemporaryDirectory() as folder:
        old = load_old(args.against, Path(folder))
        for name, data, options in cases:
            times: dict[str, list[float]] = {"old": [], "new": []}
            calls = [("old", old, {}), ("new", new, {"max_bytes": budget})]
            for run in range(args.runs):
                for label, function, extra in calls if run % 2 else calls[::-1]:
                    start = time.perf_counter()
                    function(data, max_pixels=64_000_000, **options, **extra)
                    times[label].append((time.perf_counter() - start) * 1000.0)
            before, now = statistics.median(times["old"]), statistics.median(times["new"])
            print(f"{name}: {args.against} {before:.2f} ms, now {now:.2f} ms, x{now / before:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
