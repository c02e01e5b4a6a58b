"""Remnants of the old background: the residue measure on real portraits, and what the matte
step and the measure cost.

Run from the repository root after the set-up (`./run-tests` or `./run-appliance` once):

    .venv/bin/python benchmarks/bench_background.py            # full run, prints a table
    .venv/bin/python benchmarks/bench_background.py --smoke    # one repeat (the test suite's)

For every real portrait (the astronaut, and ../shared/data/portraits/hivision-* when present)
and two framings (ICAO 35 x 45 mm, tight; US 2 x 2 in, wide), it makes the ID photo and
records the background check (remnant area in mm^2, 0 when clean) and how much solid matte
the matte step took off as not the person. Then the same for faithful variants with a real
flag beside the shoulder (the US flag cut from the astronaut photograph, composited behind the
sitter with its edge over the outer pixels of their outline, or pasted over the outline),
each once with the matte as the segmenter gives it ("old") and once with the matte step's
removal ("new"), with the ground truth beside the measure: how many output pixels still show
the flag's red (none do in the same photo made without the flag). Last, the time of
the removal (`drop_foreign`) and of the measure (`find_remnants`) on each output raster,
repeated, median; and on the largest output of the specs (HK 40 x 50 mm, 1280 x 1600); and
the whole ID photo from bench_process.py's 12 MP and 0.4 MP inputs with and without both,
alternating run by run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "portraits"
sys.path.insert(0, str(ROOT))

# (portrait, framing, flag box x, y, w, h in the photo's pixels, px of outline it hangs over
# (0: pasted over the box), flag mirrored (for the right shoulder), the set: "tuning" (what
# the rules were tuned on) or "unseen" (placed by the portrait's own shoulder, not tuned on).
VARIANTS = [
    ("astronaut.png", "us-2x2", (70, 150, 60, 250), 8, False, "tuning"),
    ("hivision-test0.jpg", "us-2x2", (40, 200, 50, 330), 8, False, "tuning"),
    ("hivision-test0.jpg", "us-2x2", (60, 180, 70, 260), 0, False, "tuning"),
    ("hivision-test0.jpg", "icao-35x45", (100, 200, 60, 200), 0, False, "tuning"),
    ("hivision-test0.jpg", "us-2x2", (111, 92, 63, 345), 0, False, "tuning"),
    ("hivision-demo1.jpg", "icao-35x45", (540, 446, 66, 382), 8, True, "unseen"),
    ("hivision-demo1.jpg", "icao-35x45", (540, 446, 66, 382), 0, True, "unseen"),
    ("hivision-demo3.jpg", "icao-35x45", (517, 446, 66, 382), 0, True, "unseen"),
    ("hivision-test3.jpg", "us-2x2", (456, 211, 56, 321), 0, True, "unseen"),
    ("hivision-test4.jpg", "us-2x2", (641, 135, 107, 456), 0, True, "unseen"),
    ("hivision-test4.jpg", "icao-35x45", (641, 135, 107, 456), 8, True, "unseen"),
]


def portrait_path(name: str) -> Path:
    return ROOT / "samples" / name if name == "astronaut.png" else SHARED / name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="one repeat, for the tests")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    repeats = 1 if args.smoke else args.repeats

    import cv2
    import numpy as np
    from PIL import Image

    import appliance.idphoto.render as render_mod
    from appliance.config import Config, InferenceConfig
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.imaging.body import drop_foreign
    from appliance.imaging.matte import replace_background
    from appliance.imaging.remnants import find_remnants
    from appliance.inference.service import InferenceService

    config = Config(inference=InferenceConfig())
    inference = InferenceService.from_config(config.inference)
    pipeline = IdPhotoPipeline(inference, config)
    rasters: list[tuple[str, tuple[Any, ...]]] = []
    real_drop = render_mod.drop_foreign
    real_replace = render_mod.replace_background
    before: list[Any] = []

    def keep_raster(pixels: Any, alpha: Any, colour: Any) -> Any:
        before.append(pixels)
        return real_replace(pixels, alpha, colour)

    render_mod.replace_background = keep_raster  # type: ignore[assignment]

    def spy(*call: Any) -> Any:
        rasters.append(("", call))
        return real_drop(*call)

    def rgb(path: Path) -> Any:
        return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))

    def make(pixels: Any, spec: str) -> dict[str, Any]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, "PNG")
        product = pipeline.process(buffer.getvalue(), ProductRequest(spec_id=spec))
        report = product.report
        check = next(c for c in report["checks"] if c["name"] == "background")
        return {
            "status": check["status"],
            "residue_mm2": check["value"],
            "regions": len(check["regions"]),
            "dropped_px": report["transforms"]["matte_dropped_px"],
            "pixels": np.asarray(Image.open(io.BytesIO(product.digital)).convert("RGB")),
            "raster": before[-1],
            "region_boxes": [r["box"] for r in check["regions"]],
        }

    def flag_shown(result: dict[str, Any], clean: dict[str, Any]) -> int:
        """Output pixels that still show the flag: not the new background (by 16 levels),
        and with a raster colour outside what the photo without the flag has within 2 px
        (by 40 levels). Also whether a region of the check lies on them ("caught")."""
        pixels = result.pop("pixels").astype(int)
        raster, without = result.pop("raster").astype(int), clean["raster"]
        kernel = np.ones((5, 5), np.uint8)
        differs = (raster > cv2.dilate(without, kernel).astype(int) + 40) | (
            raster < cv2.erode(without, kernel).astype(int) - 40
        )
        flag_px = cv2.morphologyEx(
            differs.any(axis=2).view(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)
        )
        shown = (flag_px > 0) & (np.abs(pixels - 255).max(axis=2) > 16)
        result["caught"] = any(
            shown[y0:y1, x0:x1].any() for x0, y0, x1, y1 in result.pop("region_boxes")
        )
        return int(shown.sum())

    names = ["astronaut.png", *sorted(p.name for p in SHARED.glob("hivision-*"))]
    portraits = []
    for name in names:
        for spec in ("icao-35x45", "us-2x2"):
            render_mod.drop_foreign = spy  # type: ignore[assignment]
            result = make(rgb(portrait_path(name)), spec)
            render_mod.drop_foreign = real_drop
            result.pop("pixels")
            result.pop("raster")
            result.pop("region_boxes")
            portraits.append({"portrait": name, "spec": spec, **result})
            rasters[-1] = (f"{name} {spec}", rasters[-1][1])

    flag = rgb(ROOT / "samples" / "astronaut.png")[0:215, 0:80]
    variants = []
    for name, spec, (x, y, w, h), over, mirrored, which in VARIANTS:
        if not portrait_path(name).exists():
            continue
        photo = rgb(portrait_path(name)).copy()
        clean = make(photo, spec)
        clean.pop("pixels")
        if over:  # behind the sitter: their matte, less the outer `over` px, occludes it
            person = inference.segmenter.refine(inference.segmenter.segment(photo), photo)
            person = cv2.erode(person, np.ones((2 * over + 1, 2 * over + 1), np.uint8))
            share = person[y : y + h, x : x + w, None]
        else:  # pasted over the box, the outline included
            share = np.zeros((h, w, 1), np.float32)
        real_flag = np.ascontiguousarray(flag[:, ::-1]) if mirrored else flag
        strip = cv2.resize(real_flag, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        region = photo[y : y + h, x : x + w].astype(np.float32)
        photo[y : y + h, x : x + w] = np.clip(share * region + (1 - share) * strip + 0.5, 0, 255)
        render_mod.drop_foreign = lambda alpha, *_: (alpha, 0)  # type: ignore[assignment]
        old = make(photo, spec)
        render_mod.drop_foreign = real_drop
        new = make(photo, spec)
        old["flag_px_shown"], new["flag_px_shown"] = flag_shown(old, clean), flag_shown(new, clean)
        placed = "over the outline" if not over else f"behind, {over} px over the outline"
        variants.append(
            {
                "portrait": name,
                "spec": spec,
                "flag": [x, y, w, h],
                "placed": placed + (", mirrored, right shoulder" if mirrored else ""),
                "set": which,
                "old": old,
                "new": new,
            }
        )

    # The largest output raster of the specs, for the cost at size.
    render_mod.drop_foreign = spy  # type: ignore[assignment]
    make(rgb(portrait_path(names[-1])), "hk-40x50")
    render_mod.drop_foreign = real_drop
    rasters[-1] = (f"{names[-1]} hk-40x50", rasters[-1][1])

    def median_ms(work: Any, *call: Any) -> float:
        work(*call)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            work(*call)
            times.append((time.perf_counter() - start) * 1000.0)
        return round(statistics.median(times), 2)

    timings = []
    render_mod.replace_background = real_replace  # type: ignore[assignment]
    for label, (alpha, pixels, seed, eye_px, chin) in rasters:
        cleaned, _ = drop_foreign(alpha, pixels, seed, eye_px, chin)
        drop_ms = median_ms(drop_foreign, alpha, pixels, seed, eye_px, chin)
        # The measure as the pipeline takes it: on the finished pixels, with the raster
        # before the replacement.
        out = replace_background(pixels, cleaned, (255, 255, 255))
        white = (255, 255, 255)
        measure_ms = median_ms(find_remnants, out, cleaned, white, seed, eye_px, chin, pixels)
        replace_ms = median_ms(replace_background, pixels, cleaned, (255, 255, 255))
        height, width = alpha.shape
        timings.append(
            {
                "raster": label,
                "size": [width, height],
                "drop_ms": drop_ms,
                "measure_ms": measure_ms,
                "replace_ms": replace_ms,
            }
        )

    # End to end, alternating run by run in this process (the host's load moves separate
    # runs by more than the difference): the pipeline with the removal and the measure,
    # and without them (the matte as the segmenter gives it, the check's evenness only).
    import appliance.idphoto.pipeline as pipeline_mod

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_process import make_inputs

    real_find = pipeline_mod.find_remnants
    end_to_end = {}
    for size, data in make_inputs().items():
        request = ProductRequest(spec_id="icao-35x45")
        pipeline.process(data, request)
        with_ms: list[float] = []
        without_ms: list[float] = []
        for _ in range(max(1, repeats // 2)):
            for bucket, on in ((with_ms, True), (without_ms, False)):
                render_mod.drop_foreign = real_drop if on else (lambda alpha, *_: (alpha, 0))  # type: ignore[assignment]
                pipeline_mod.find_remnants = real_find if on else (lambda *_: [])  # type: ignore[assignment]
                start = time.perf_counter()
                pipeline.process(data, request)
                bucket.append((time.perf_counter() - start) * 1000.0)
        render_mod.drop_foreign, pipeline_mod.find_remnants = real_drop, real_find
        end_to_end[size] = {
            "with_median_ms": round(statistics.median(with_ms), 1),
            "without_median_ms": round(statistics.median(without_ms), 1),
            "runs_each": len(with_ms),
        }

    results = {
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "repeats": repeats,
        "portraits": portraits,
        "variants": variants,
        "timings": timings,
        "end_to_end": end_to_end,
        "load_average": list(os.getloadavg()),
    }
    for row in portraits:
        print(
            f"{row['portrait']:22s} {row['spec']:11s} {row['status']:4s} "
            f"residue {row['residue_mm2']:5.1f} mm2, dropped {row['dropped_px']} px"
        )
    for row in variants:
        print(
            f"[{row['set']}] flag on {row['portrait']:18s} {row['spec']:11s} ({row['placed']}): "
            f"old {row['old']['status']} {row['old']['residue_mm2']} mm2 -> "
            f"new {row['new']['status']} {row['new']['residue_mm2']} mm2"
            f"{' (region on the flag)' if row['new']['caught'] else ''}, "
            f"dropped {row['new']['dropped_px']} px; flag pixels shown "
            f"{row['old']['flag_px_shown']} -> {row['new']['flag_px_shown']}"
        )
    drops = [t["drop_ms"] for t in timings[:-1]]
    measures = [t["measure_ms"] for t in timings[:-1]]
    replaces = [t["replace_ms"] for t in timings[:-1]]
    print(
        f"drop_foreign median over rasters {statistics.median(drops):.2f} ms "
        f"(max {max(drops):.2f}); find_remnants {statistics.median(measures):.2f} ms "
        f"(max {max(measures):.2f}); replace_background {statistics.median(replaces):.2f} ms; "
        f"at {timings[-1]['size']}: {timings[-1]['drop_ms']} / {timings[-1]['measure_ms']} / "
        f"{timings[-1]['replace_ms']} ms"
    )
    for size, row in end_to_end.items():
        print(
            f"end to end {size}: {row['with_median_ms']} ms with, {row['without_median_ms']} ms "
            f"without ({row['runs_each']} alternating runs each)"
        )
    print(f"load average {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
