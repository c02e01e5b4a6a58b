"""The set-up's int8 build on the portrait corpus: how long it takes, and the gate's figures.

    .venv/bin/python benchmarks/bench_int8_build.py [--json OUT] [--gates-only DIR] [--smoke]

Default: copies the pinned float models into a temporary directory and runs the corpus build
there from scratch (`int8_build.build_from_corpus(force=True)`, what `appliance models build`
runs at set-up), timing each model, then times a second run (the no-op). `--gates-only DIR`
skips the build and reruns the accuracy gate on the int8 files already in DIR. Either way the
gate's own per-sample values are kept (not just the worst, which is what the gate compares
with its limit), so the results show the median and 90th percentile beside the worst.
`--smoke`: one model, for the test suite. Exit 3 when the quantizer is not installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.config import default_models_dir  # noqa: E402
from appliance.inference import corpus, int8_build, quantize_eval  # noqa: E402
from appliance.inference.registry import MODELS, get_model  # noqa: E402

Values = dict[str, dict[str, list[float]]]


def _recording(values: Values, current: list[str]) -> Any:
    original = quantize_eval.worst_of

    def worst_of(
        metric: str, pairs: list[tuple[float, str]], limit: float, higher: bool, unit: str = ""
    ) -> Any:
        # The first call per model and metric is the runtime file's (the int8-io file follows).
        values.setdefault(current[0], {}).setdefault(metric, [v for v, _ in pairs])
        return original(metric, pairs, limit, higher, unit)

    return worst_of


def _summary(values: Values) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model, metrics in values.items():
        for metric, seen in metrics.items():
            ordered = sorted(seen)
            if not ordered:
                continue
            p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
            out.setdefault(model, {})[metric] = {
                "samples": len(ordered),
                "median": round(statistics.median(ordered), 4),
                "p10": round(ordered[round(0.1 * (len(ordered) - 1))], 4),
                "p90": round(p90, 4),
                "min": round(ordered[0], 4),
                "max": round(ordered[-1], 4),
            }
    return out


def run_build(names: list[str], threads: int, values: Values) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    try:
        for name in MODELS:
            file = get_model(name).file.name
            shutil.copy(default_models_dir() / file, work / file)
        marks: list[tuple[float, str]] = []
        current = [""]

        def progress(line: str) -> None:
            marks.append((time.perf_counter(), line))
            if line.startswith("building "):
                current[0] = line.removeprefix("building ")

        quantize_eval.worst_of = _recording(values, current)
        start = time.perf_counter()
        built = int8_build.build_from_corpus(
            work, names=names, num_threads=threads, force=True, progress=progress
        )
        total = time.perf_counter() - start
        starts = [(t, line.removeprefix("building ")) for t, line in marks if "building " in line]
        per_model = {
            name: round((starts[i + 1][0] if i + 1 < len(starts) else start + total) - t, 1)
            for i, (t, name) in enumerate(starts)
        }
        again = time.perf_counter()
        second = int8_build.build_from_corpus(work, names=names, num_threads=threads)
        noop = time.perf_counter() - again
        sizes = {p.name: p.stat().st_size for p in sorted(work.iterdir()) if p.suffix == ".tflite"}
        return {
            "total_s": round(total, 1),
            "per_model_s": per_model,
            "second_run_s": round(noop, 2),
            "second_run_built": second.built,
            "sizes_bytes": sizes,
            "verdicts": {b.name: b.passed for b in built.models},
            "gate": [b.to_dict()["gate"] for b in built.models],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_gates(directory: Path, threads: int, values: Values) -> dict[str, Any]:
    from appliance.inference.quantize import PIPELINE_MODELS
    from appliance.inference.quantize_eval import (
        Portrait,
        Runner,
        id_gate,
        id_subjects,
        model_gate,
    )
    from appliance.inference.variants import read_manifest

    current = [""]
    quantize_eval.worst_of = _recording(values, current)
    runner = Runner(directory, threads)
    holdout = [Portrait.load(p) for p in corpus.verified_paths("evaluation")]
    float_id, id_holdout, framed = id_subjects(runner.service(), holdout, "icao-35x45")
    for name, build in read_manifest(directory).items():
        current[0] = name
        source = directory / get_model(name).file.name
        int8 = runner.model(directory / build.file, name)
        model_gate(name, runner.model(source, name), int8, runner, holdout)
        if name in PIPELINE_MODELS:
            swapped = runner.service({name: directory / build.file})
            id_gate(float_id, swapped, id_holdout, "icao-35x45")
    return {"framed_for_the_id_check": framed, "holdout": len(holdout)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--gates-only", type=Path, metavar="DIR")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if importlib.util.find_spec("ai_edge_quantizer") is None:
        print("ai-edge-quantizer is not installed: pip install 'appliance[build]'")
        return 3
    corpus.fetch_corpus()
    values: Values = {}
    names = ["face_detection_short_range"] if args.smoke else list(MODELS)
    if args.gates_only:
        result = run_gates(args.gates_only, args.threads, values)
    else:
        result = run_build(names, args.threads, values)
    result["distribution"] = _summary(values)
    result["machine"] = {"python": platform.python_version(), "cpu": platform.machine()}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
