"""The face checks measure what they measured when frozen, on real portraits: a guard for work
on how they compute (their speed), not on what they decide.

Every portrait the project has (the pinned astronaut and Grace Hopper samples, and the
hivision portraits in ../shared/data/portraits/, skipped where absent), plain and with every
painted fault of benchmarks/portrait_variants.py, goes through `face_checks` on the photo
itself, with the mesh and the refined matte on it (as benchmarks/eval_checks.py does for a
photo the pipeline refuses): these inputs depend on the models only, not on the framing or
the background replacement, so work there does not move them.

Tolerance: verdicts and messages' templates identical; each value, and each number in the
message's values, within one unit of its last reported digit (the checks round to 0.01-0.1;
a float summed in another order may round the other way); each marked region within 1 px.

The frozen file, tests/data/face_checks_frozen.json, was written by the face checks as they
were at b45756d (before the speed work). A change meant to change a check's measure (its
logic) refreezes it and the file's diff shows what moved:

    .venv/bin/python tests/test_face_checks_frozen.py --freeze
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
FROZEN = ROOT / "tests" / "data" / "face_checks_frozen.json"
SHARED = ROOT.parent / "shared" / "data" / "portraits"
PORTRAITS = (
    ROOT / "samples" / "astronaut.png",
    ROOT / "samples" / "grace_hopper.jpg",
    *(SHARED / f"hivision-{kind}{n}.jpg" for kind, count in (("demo", 4), ("test", 5))
      for n in range(count)),
)  # fmt: skip

sys.path.insert(0, str(ROOT / "benchmarks"))
import portrait_variants  # noqa: E402


def measured(inference: Any, path: Path) -> dict[str, list[dict[str, Any]]]:
    """The face checks' reports on the portrait and each painted variant, by variant."""
    from appliance.idphoto.face_checks import face_checks
    from appliance.idphoto.specs import get_spec

    base = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
    points = inference.landmarker.landmarks(base, inference.detector.detect(base)[0]).points
    cases = [("(real)", base, False)]
    cases += [(name, paint(base, points[:, :2]), False) for name, (paint, _) in
              portrait_variants.VARIANTS.items()]  # fmt: skip
    cases.append(("headscarf+religious", cases[[c[0] for c in cases].index("headscarf")][1], True))
    spec = get_spec("icao-35x45")
    found = {}
    for name, pixels, religious in cases:
        faces = inference.detector.detect(pixels)
        if not faces:
            found[name] = []
            continue
        marks = inference.landmarker.landmarks(pixels, faces[0])
        alpha = inference.segmenter.refine(inference.segmenter.segment(pixels), pixels)
        checks = face_checks(pixels, alpha, marks.points[:, :2], spec, religious)
        found[name] = [
            {
                "name": c.name,
                "status": c.status,
                "value": c.value,
                "text": c.text,
                "values": c.values,
                "regions": [[r.kind, list(r.box)] for r in c.regions],
            }
            for c in checks
        ]
    return found


def _close(now: object, then: object) -> bool:
    """Equal, or numbers within one unit of the last digit `then` is given to."""
    if now == then:
        return True
    try:
        a, b = float(str(now).rstrip("%")), float(str(then).rstrip("%"))
    except ValueError:
        return False
    text = str(then).rstrip("%")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return math.isfinite(a) and abs(a - b) <= 10.0**-decimals + 1e-9


def differences(now: list[dict[str, Any]], then: list[dict[str, Any]]) -> list[str]:
    if [c["name"] for c in now] != [c["name"] for c in then]:
        return [f"checks {[c['name'] for c in now]} != {[c['name'] for c in then]}"]
    found = []
    for a, b in zip(now, then, strict=True):
        where = a["name"]
        if (a["status"], a["text"]) != (b["status"], b["text"]):
            found.append(f"{where}: {a['status']} {a['text']!r} != {b['status']} {b['text']!r}")
        if not _close(a["value"], b["value"]):
            found.append(f"{where}: value {a['value']} != {b['value']}")
        if set(a["values"]) != set(b["values"]) or not all(
            _close(a["values"][k], b["values"][k]) for k in b["values"]
        ):
            found.append(f"{where}: values {a['values']} != {b['values']}")
        boxes_a, boxes_b = a["regions"], b["regions"]
        if len(boxes_a) != len(boxes_b) or any(
            ka != kb or max(abs(p - q) for p, q in zip(ba, bb, strict=True)) > 1
            for (ka, ba), (kb, bb) in zip(boxes_a, boxes_b, strict=True)
        ):
            found.append(f"{where}: regions {boxes_a} != {boxes_b}")
    return found


@pytest.mark.parametrize("path", PORTRAITS, ids=lambda p: p.name)
def test_face_checks_measure_what_was_frozen(inference: Any, sample_dir: Path, path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path} absent")
    frozen = json.loads(FROZEN.read_text("utf-8"))
    assert path.name in frozen, f"{path.name} not frozen: run {Path(__file__).name} --freeze"
    now = measured(inference, path)
    assert set(now) == set(frozen[path.name])
    wrong = {v: d for v in now if (d := differences(now[v], frozen[path.name][v]))}
    assert not wrong, json.dumps(wrong, indent=1)


def main() -> None:
    if sys.argv[1:] != ["--freeze"]:
        sys.exit(__doc__)
    sys.path.insert(0, str(ROOT))
    from appliance.assets import fetch_files
    from appliance.config import Config, InferenceConfig, default_cache_dir, default_models_dir
    from appliance.inference.registry import SAMPLES
    from appliance.inference.service import InferenceService

    fetch_files(SAMPLES, ROOT / "samples", default_cache_dir())
    config = Config(inference=InferenceConfig(models_dir=default_models_dir()))
    inference = InferenceService.from_config(config.inference)
    frozen = {p.name: measured(inference, p) for p in PORTRAITS if p.exists()}
    FROZEN.parent.mkdir(exist_ok=True)
    lines = ["{"]
    for i, (portrait, variants) in enumerate(sorted(frozen.items())):
        lines.append(f"{json.dumps(portrait)}: {{")
        for j, (variant, checks) in enumerate(sorted(variants.items())):
            rows = ",\n".join("   " + json.dumps(c, sort_keys=True) for c in checks)
            lines.append(
                f"  {json.dumps(variant)}: [\n{rows}\n  ]" + ("," if j < len(variants) - 1 else "")
            )
        lines.append("}" + ("," if i < len(frozen) - 1 else ""))
    FROZEN.write_text("\n".join(lines) + "\n}\n", "utf-8")  # a check a line, for the diffs
    print(f"froze {len(frozen)} portraits in {FROZEN}")


if __name__ == "__main__":
    main()
