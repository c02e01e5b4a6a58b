"""Invoke latency of every model, float against int8, on XNNPACK with 1, 2 and 4 threads.

Run from the repository root after the set-up (the daemon is not involved: each model is
loaded straight into LiteRT here):

    .venv/bin/python benchmarks/bench_models.py                 # full run, prints a table
    .venv/bin/python benchmarks/bench_models.py --smoke         # one invoke each (the tests')
    .venv/bin/python benchmarks/bench_models.py --json out.json

The int8 models are the ones `appliance models build` put in the models directory (the
manifest says which passed the accuracy gate). Where a model has none, this script makes one the
same way (same recipe, calibrated on the calibration half of ../shared/data/portraits or, on a
fresh clone, the astronaut sample), without the gate, in benchmarks/out/int8/; the table marks
those "ungated" (that needs the `build` extra; without it the script exits with status 3).
Only `interpreter.invoke()` is timed, on a fixed noise input, after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "portraits"
sys.path.insert(0, str(ROOT))

THREADS = (1, 2, 4)


def int8_models(models_dir: Path, smoke: bool) -> dict[str, tuple[Path, str]]:
    """Model name -> (int8 file, where it came from)."""
    from appliance.inference.registry import MODELS, verified_model_path
    from appliance.inference.variants import int8_file_name, read_manifest

    built = read_manifest(models_dir)
    found = {}
    missing = []
    for name in MODELS:
        entry = built.get(name)
        if entry and (models_dir / entry.file).is_file():
            verdict = "gate passed" if entry.passed else "gate FAILED"
            found[name] = (models_dir / entry.file, f"models dir, {verdict}")
        else:
            missing.append(name)
    if not missing:
        return found
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError:
        print("no int8 models built and ai-edge-quantizer is not installed to make them")
        sys.exit(3)
    from appliance.inference.quantize import (
        XNNPACK_FLOAT_ONLY,
        prepare_float_model,
        quantize_model,
        split_portraits,
    )
    from appliance.inference.quantize_eval import Portrait, Runner, calibration_samples
    from appliance.inference.tflite_graph import output_heads, read_model

    shared = sorted(SHARED.glob("hivision-*")) if SHARED.is_dir() else []
    paths = split_portraits(shared)[0] if shared else [ROOT / "samples" / "astronaut.png"]
    portraits = [Portrait.load(p) for p in paths[: 1 if smoke else None]]
    out = ROOT / "benchmarks" / "out" / "int8"
    out.mkdir(parents=True, exist_ok=True)
    reference = Runner(models_dir, 2).service()
    for name in missing:
        prepared, _ = prepare_float_model(verified_model_path(name, models_dir).read_bytes())
        samples = calibration_samples(name, portraits, reference)
        heads = output_heads(read_model(prepared))
        target = out / int8_file_name(name)
        target.write_bytes(quantize_model(prepared, samples, 2, heads, XNNPACK_FLOAT_ONLY))
        found[name] = (target, "ungated, built by this script")
    return found


def time_invokes(path: Path, name: str, threads: int, iterations: int) -> dict[str, float]:
    import numpy as np

    from appliance.inference.quantize_eval import Runner

    model = Runner(path.parent, threads).model(path, name)
    interpreter = model._interpreter
    spec = model.inputs[0]
    rng = np.random.default_rng(0)
    if spec.quantized:
        probe = rng.integers(-128, 128, spec.shape, dtype=np.int8).astype(spec.dtype)
    else:
        probe = rng.uniform(-1, 1, spec.shape).astype(spec.dtype)
    interpreter.set_tensor(spec.index, probe)
    for _ in range(1 if iterations == 1 else 10):
        interpreter.invoke()
    timings = []
    for _ in range(iterations):
        start = time.perf_counter()
        interpreter.invoke()
        timings.append((time.perf_counter() - start) * 1000.0)
    ordered = sorted(timings)
    return {
        "median_ms": round(statistics.median(timings), 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one invoke each, for the tests")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--models-dir", type=Path, help="default: the config's models directory")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from appliance.config import default_models_dir
    from appliance.inference.registry import MODELS, verified_model_path

    models_dir = args.models_dir or default_models_dir()
    iterations = 1 if args.smoke else args.iterations
    int8 = int8_models(models_dir, args.smoke)
    results = []
    for name in MODELS:
        files = {"float": (verified_model_path(name, models_dir), "pinned"), "int8": int8[name]}
        for variant, (path, origin) in files.items():
            for threads in THREADS:
                timing = time_invokes(path, name, threads, iterations)
                row = {"model": name, "variant": variant, "threads": threads, "origin": origin}
                results.append({**row, **timing, "iterations": iterations})
    print(f"{'model':<31} {'threads':>7} {'float median/p95 ms':>20} {'int8 median/p95 ms':>19}")
    for name in MODELS:
        for threads in THREADS:
            cells = {
                r["variant"]: f"{r['median_ms']:.2f} / {r['p95_ms']:.2f}"
                for r in results
                if r["model"] == name and r["threads"] == threads
            }
            print(f"{name:<31} {threads:>7} {cells['float']:>20} {cells['int8']:>19}")
    for name in MODELS:
        print(f"int8 {name}: {int8[name][0].name} ({int8[name][1]})")
    if args.json:
        machine = {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        }
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
