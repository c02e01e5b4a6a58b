"""The face checks against an older commit's, alternating call by call in one process.

    .venv/bin/python benchmarks/bench_checks.py --against b45756d --runs 100
    # instructions, independent of the machine's load (subtract a --runs 0 run):
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python benchmarks/bench_checks.py --only new --runs 20

Loads the face checks' modules (appliance/idphoto/face_zones.py, appearance.py, wearables.py,
face_checks.py) as they were at the given commit (`git show`) beside the current ones. Inputs
are what the pipeline hands the face checks (the finished photo, its matte and the mesh on it)
for the bench_process.py 0.4 MP portrait, the pinned samples (astronaut, Grace Hopper) and
the portraits in ../shared/data/portraits/ (skipped where absent). Each run times both
versions on every input, the order alternating run by run, so neither gets the warmer
caches; "per check" is each check's own time in report order on a fresh FaceImage (a plane
both read is charged to the first). The two versions' reports are compared on every input.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHARED = ROOT.parent / "shared" / "data" / "portraits"
MODULES = ("face_zones", "appearance", "wearables", "face_checks")

# Each check as face_checks runs it, by the module attributes both versions have.
STEPS: list[tuple[str, Callable[[Any, Any, Any], object]]] = [
    ("exposure", lambda m, face, spec: m["appearance"].exposure_check(face)),
    ("illumination", lambda m, face, spec: m["appearance"].illumination_check(face)),
    ("face shadows", lambda m, face, spec: m["appearance"].face_shadow_check(face)),
    ("background shadow", lambda m, face, spec: m["appearance"].background_shadow_check(face)),
    ("natural colour", lambda m, face, spec: m["appearance"].colour_check(face)),
    ("red-eye", lambda m, face, spec: m["appearance"].red_eye_check(face)),
    ("eyes visible", lambda m, face, spec: m["appearance"].eyes_visible_check(face)),
    ("glasses, tint, glare", lambda m, face, spec: m["wearables"].glasses_checks(face, spec)),
    (
        "head covering",
        lambda m, face, spec: m["wearables"].head_covering_check(face, spec, False),
    ),
]


def load_old(revision: str, folder: Path) -> dict[str, ModuleType]:
    """The face checks' modules at `revision`, as the package `old_idphoto`."""
    package = folder / "old_idphoto"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in MODULES:
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{revision}:appliance/idphoto/{name}.py"],
            capture_output=True, check=True, timeout=60, text=True,
        ).stdout  # fmt: skip
        (package / f"{name}.py").write_text(_renamed(source))
    sys.path.insert(0, str(folder))
    return {name: importlib.import_module(f"old_idphoto.{name}") for name in MODULES}


def _renamed(source: str) -> str:
    """The source with its imports of the face checks' modules taken from old_idphoto."""
    lines = []
    for line in source.splitlines():
        for other in MODULES:
            line = line.replace(f"from appliance.idphoto.{other} ", f"from old_idphoto.{other} ")
        if line.startswith("from appliance.idphoto import "):
            names = [n.strip() for n in line.split(" import ", 1)[1].split(",")]
            ours = [n for n in names if n in MODULES]
            theirs = [n for n in names if n not in MODULES]
            line = "\n".join(
                [f"from old_idphoto import {', '.join(ours)}"] * bool(ours)
                + [f"from appliance.idphoto import {', '.join(theirs)}"] * bool(theirs)
            )
        lines.append(line)
    return "\n".join(lines) + "\n"


def load_new() -> dict[str, ModuleType]:
    return {name: importlib.import_module(f"appliance.idphoto.{name}") for name in MODULES}


def pipeline_inputs(smoke: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """What the pipeline hands face_checks for each portrait (icao-35x45; `smoke`: two)."""
    from bench_process import make_inputs

    from appliance.assets import fetch_files
    from appliance.config import Config, default_cache_dir
    from appliance.idphoto import pipeline
    from appliance.inference.registry import SAMPLES
    from appliance.inference.service import InferenceService

    fetch_files(SAMPLES, ROOT / "samples", default_cache_dir())
    photos = {"bench 0.4 MP": make_inputs()["0.4mp"]}
    for path in (ROOT / "samples" / "astronaut.png", ROOT / "samples" / "grace_hopper.jpg"):
        photos[path.name] = path.read_bytes()
    for path in sorted(SHARED.glob("hivision-*.jpg")) if SHARED.is_dir() else []:
        photos[path.name] = path.read_bytes()
    if smoke:
        photos = dict(list(photos.items())[:2])
    config = Config()
    maker = pipeline.IdPhotoPipeline(InferenceService.from_config(config.inference), config)
    seen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    real = pipeline.face_checks

    def recording(pixels: np.ndarray, alpha: np.ndarray, points: np.ndarray, *rest: Any) -> Any:
        seen.append((pixels, alpha, np.asarray(points)))
        return real(pixels, alpha, points, *rest)

    pipeline.face_checks = recording  # type: ignore[assignment]
    try:
        found = {}
        for name, data in photos.items():
            seen.clear()
            maker.process(data, pipeline.ProductRequest(spec_id="icao-35x45"))
            if seen:
                found[name] = seen[-1]
        return found
    finally:
        pipeline.face_checks = real


def per_check(modules: dict[str, ModuleType], case: tuple[Any, ...], spec: Any) -> list[float]:
    pixels, alpha, points = case
    zones_module = modules["face_zones"]
    zones = zones_module.FaceZones(np.asarray(points, dtype=np.float64)[:, :2], pixels.shape[:2])
    face = zones_module.FaceImage(pixels, alpha, zones)
    times = []
    for _name, step in STEPS:
        start = time.perf_counter()
        step(modules, face, spec)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def whole(modules: dict[str, ModuleType], case: tuple[Any, ...], spec: Any) -> float:
    start = time.perf_counter()
    modules["face_checks"].face_checks(*case, spec)
    return (time.perf_counter() - start) * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--against", default="b45756d", help="the older commit")
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="two photos, one run (the tests')")
    parser.add_argument("--only", choices=("old", "new"), help="run one version (callgrind)")
    parser.add_argument(
        "--inputs", type=Path, help="keep the inputs in this .npz (made when absent: run once "
        "without valgrind, so the models do not run under it)"
    )  # fmt: skip
    args = parser.parse_args()
    from appliance.idphoto.specs import get_spec

    spec = get_spec("icao-35x45")
    if args.inputs and args.inputs.exists():
        with np.load(args.inputs) as saved:
            names = sorted({key.rsplit("/", 1)[0] for key in saved.files})
            cases = {
                n: tuple(saved[f"{n}/{k}"] for k in ("pixels", "alpha", "points")) for n in names
            }
    else:
        cases = pipeline_inputs(args.smoke)
        if args.inputs:
            np.savez(
                args.inputs,
                **{f"{n}/{k}": v for n, case in cases.items()
                   for k, v in zip(("pixels", "alpha", "points"), case, strict=True)},
            )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        versions = {"old": load_old(args.against, Path(folder)), "new": load_new()}
        if args.only:
            chosen = versions[args.only]
            for _ in range(args.runs):
                for case in cases.values():
                    chosen["face_checks"].face_checks(*case, spec)
            print(f"{args.only}: {args.runs} runs over {len(cases)} photos")
            return 0
        differ = [
            name
            for name, case in cases.items()
            if [c.to_dict() for c in versions["old"]["face_checks"].face_checks(*case, spec)]
            != [c.to_dict() for c in versions["new"]["face_checks"].face_checks(*case, spec)]
        ]
        print(f"{len(cases)} photos; reports differ on: {', '.join(differ) or 'none'}")
        if not args.runs and not args.smoke:
            return 0
        totals: dict[str, list[float]] = {"old": [], "new": []}
        steps: dict[str, list[list[float]]] = {"old": [], "new": []}
        order = ["old", "new"]
        for run in range(1 if args.smoke else args.runs):
            for label in order if run % 2 else order[::-1]:
                for case in cases.values():
                    totals[label].append(whole(versions[label], case, spec))
                    steps[label].append(per_check(versions[label], case, spec))
        before, now = statistics.median(totals["old"]), statistics.median(totals["new"])
        print(f"face_checks, median per photo: {args.against} {before:.2f} ms, now {now:.2f} ms")
        for index, (name, _) in enumerate(STEPS):
            old_ms = statistics.median(row[index] for row in steps["old"])
            new_ms = statistics.median(row[index] for row in steps["new"])
            print(f"  {name:22s} {old_ms:6.2f} -> {new_ms:6.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
