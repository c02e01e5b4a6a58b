"""End-to-end `process` timing per stage, for a 12 MP and a 0.4 MP JPEG, and peak memory.

Run from the repository root after the set-up (`./run-tests` or `./run-appliance` once):

    .venv/bin/python benchmarks/bench_process.py            # full run, prints a table
    .venv/bin/python benchmarks/bench_process.py --smoke    # one iteration (the test suite's)

Each image size runs in its own child process so its peak RSS (ru_maxrss) is its own. The
inputs are made from the public-domain astronaut sample (always present after set-up) and, when
present, ../shared/data/portraits/hivision-test4.jpg: a real portrait enlarged to 12 MP and a
real 0.44 MP portrait, encoded as camera-like JPEGs.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "portraits"


def make_inputs() -> dict[str, bytes]:
    from PIL import Image

    base = SHARED / "hivision-test4.jpg"
    source = Image.open(base if base.exists() else ROOT / "samples" / "astronaut.png").convert(
        "RGB"
    )
    big = source.resize(
        (4000, round(4000 * source.height / source.width)), Image.Resampling.BICUBIC
    )
    big = big.crop((0, 0, 4000, min(big.height, 3000))) if big.height > 3000 else big
    small_src = SHARED / "hivision-test0.jpg"
    small = (
        Image.open(small_src).convert("RGB") if small_src.exists() else source.resize((576, 768))
    )
    out = {}
    for name, image in (("12mp", big), ("0.4mp", small)):
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        out[name] = buffer.getvalue()
    return out


def limit_once(pipeline: object, data: bytes, product: object) -> float:
    """The same work with nothing but the unavoidable parts, in ms: the reduced decode for the
    models, the decode of the kept pixels at the scale kept, one invoke of each model, and
    the encodes of the digital file and the sheet."""
    import io
    import math

    import numpy as np
    from PIL import Image

    from appliance.imaging.decode import decode
    from appliance.imaging.encode import encode_jpeg

    imaging = pipeline.config.imaging  # type: ignore[attr-defined]
    inference = pipeline.inference  # type: ignore[attr-defined]
    report = product.report  # type: ignore[attr-defined]
    models = [inference.detector.model, inference.landmarker.model, inference.segmenter.model]
    inputs = [np.full((m.input_size[1], m.input_size[0], 3), 128, np.uint8) for m in models]
    digital = np.asarray(Image.open(io.BytesIO(product.digital)).convert("RGB"))  # type: ignore[attr-defined]
    sheet = np.asarray(Image.open(io.BytesIO(product.sheet)).convert("RGB"))  # type: ignore[attr-defined]
    scale = report["transforms"]["scale_out_per_source_px"]
    start = time.perf_counter()
    analysis = decode(
        data, max_pixels=imaging.max_pixels, max_side=imaging.analysis_max_side, at_least=False
    )
    if scale > analysis.scale:
        decode(
            data,
            max_pixels=imaging.max_pixels,
            max_side=math.ceil(max(analysis.full_size) * min(1.0, scale)),
        )
    for model, pixels in zip(models, inputs, strict=True):
        model.run(pixels)
    encode_jpeg(digital, dpi=300, quality=95)
    encode_jpeg(sheet, dpi=300, quality=95)
    return (time.perf_counter() - start) * 1000.0


def run_one(
    name: str, data: bytes, iterations: int, spec: str, sheet: bool, scrub: bool = True
) -> dict[str, object]:
    from appliance.config import Config
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.inference.service import InferenceService
    from appliance.memory import scrub_freed_memory

    if scrub:  # as the daemon runs: freed memory is overwritten (appliance/memory.py)
        scrub_freed_memory()

    config = Config()
    pipeline = IdPhotoPipeline(InferenceService.from_config(config.inference), config)
    request = ProductRequest(spec_id=spec)
    pipeline.process(data, request)  # warm-up: first invokes allocate
    totals: list[float] = []
    limits: list[float] = []
    stages: dict[str, list[float]] = {}
    for _ in range(iterations):
        start = time.perf_counter()
        product = pipeline.process(data, request)
        totals.append((time.perf_counter() - start) * 1000.0)
        limits.append(limit_once(pipeline, data, product))
        for stage, ms in product.report["timings_ms"].items():
            stages.setdefault(stage, []).append(ms)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ordered = sorted(totals)
    return {
        "image": name,
        "scrub_freed_memory": scrub,
        "megapixels": product.report["input"]["size"][0] * product.report["input"]["size"][1] / 1e6,
        "iterations": iterations,
        "total_median_ms": round(statistics.median(totals), 1),
        "total_p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "limit_median_ms": round(statistics.median(limits), 1),
        "ratio_to_limit": round(statistics.median(totals) / statistics.median(limits), 2),
        "stages_median_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
        "peak_rss_mb": round(rss_kb / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one iteration each, for the tests")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--spec", default="icao-35x45")
    parser.add_argument(
        "--no-scrub", action="store_true", help="leave freed memory as it is (not the daemon's way)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    iterations = 1 if args.smoke else args.iterations
    if args.child:
        data = make_inputs()[args.child]
        print(json.dumps(run_one(args.child, data, iterations, args.spec, True, not args.no_scrub)))
        return 0
    results = []
    for name in ("12mp", "0.4mp"):
        command = [
            sys.executable,
            __file__,
            "--child",
            name,
            "--iterations",
            str(iterations),
            "--spec",
            args.spec,
            *(["--no-scrub"] if args.no_scrub else []),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=900)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    for r in results:
        print(
            f"{r['image']:>6}: limit {r['limit_median_ms']} ms, ratio {r['ratio_to_limit']}; "
            f"total median {r['total_median_ms']} ms (p95 {r['total_p95_ms']}), "
            f"peak RSS {r['peak_rss_mb']} MB"
        )
        print("        " + ", ".join(f"{k} {v}" for k, v in r["stages_median_ms"].items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": platform.platform(), "cpu": platform.processor(), "results": results},
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
