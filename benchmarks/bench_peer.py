"""The peer: MediaPipe's own Python solutions on the same photos, against the appliance.

MediaPipe 0.10.14 (`solutions.face_detection`, short range, and `solutions.selfie_segmentation`,
general model: the same two .tflite files the appliance runs) is installed by this script into
its own virtual environment, benchmarks/.peer-venv (it needs numpy < 2, the appliance numpy 2),
then run there as a child process on the same images. The appliance side times its own face
detection + segmentation on the same decoded pixels, and its whole ID-photo pipeline (decode to
finished JPEG and print sheet) on the same files, for the ratio.

    .venv/bin/python benchmarks/bench_peer.py               # full run, prints a table
    .venv/bin/python benchmarks/bench_peer.py --smoke       # one iteration (the tests')

Exit status 3 means the peer environment could not be made (no package index, say); the last
line says why. Images: ../shared/data/portraits/hivision-*.jpg and the astronaut sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data" / "portraits"
PEER_VENV = ROOT / "benchmarks" / ".peer-venv"
PEER_REQUIREMENTS = ["mediapipe==0.10.14", "numpy<2"]
CANNOT_INSTALL = 3


def images() -> list[Path]:
    shared = sorted(SHARED.glob("hivision-*")) if SHARED.is_dir() else []
    return [*shared, ROOT / "samples" / "astronaut.png"]


def median_ms(run: Callable[[], object], iterations: int) -> float:
    timings = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        timings.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(timings), 2)


# --- inside the peer's environment: mediapipe, its numpy and its OpenCV only ---------------------


def peer_child(paths: list[str], iterations: int) -> None:
    import cv2
    import mediapipe as mp

    solutions = mp.solutions
    with (
        solutions.face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=0.5
        ) as detector,
        solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as segmenter,
    ):
        for path in paths:
            rgb = cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            faces = len(detector.process(rgb).detections or [])  # also the warm-up
            segmenter.process(rgb)
            detect = median_ms(lambda image=rgb: detector.process(image), iterations)
            segment = median_ms(lambda image=rgb: segmenter.process(image), iterations)
            row = {"image": Path(path).name, "faces": faces, "detect_ms": detect}
            print(json.dumps({**row, "segment_ms": segment, "peer_ms": round(detect + segment, 2)}))
    print(json.dumps({"mediapipe": mp.__version__}))


# --- the appliance's side -------------------------------------------------------------------------


def ensure_peer_venv(venv: Path) -> Path:
    """The peer's python, installing mediapipe there first if needed; exits 3 if it cannot."""
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import mediapipe, numpy; assert numpy.__version__ < '2'"]
    if python.is_file() and subprocess.run(probe, capture_output=True, timeout=120).returncode == 0:
        return python
    from appliance.config import default_cache_dir

    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         # the appliance's wheel cache already holds the pinned mediapipe wheel
         "--find-links", str(default_cache_dir()), *PEER_REQUIREMENTS],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"cannot make the peer environment {venv}: {tail[0]}")
            sys.exit(CANNOT_INSTALL)
    return python


def appliance_times(paths: list[Path], iterations: int, spec: str) -> list[dict[str, object]]:
    import numpy as np
    from PIL import Image

    from appliance.config import Config
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.inference.service import InferenceService

    config = Config()
    service = InferenceService.from_config(config.inference)
    pipeline = IdPhotoPipeline(service, config)
    rows = []
    request = ProductRequest(spec_id=spec)
    for path in paths:
        data = path.read_bytes()
        rgb = np.asarray(Image.open(path).convert("RGB"))
        service.detector.detect(rgb)
        service.segmenter.segment(rgb)
        detect = median_ms(lambda image=rgb: service.detector.detect(image), iterations)
        segment = median_ms(lambda image=rgb: service.segmenter.segment(image), iterations)
        try:
            pipeline.process(data, request)
            end_to_end: float | None = median_ms(
                lambda d=data: pipeline.process(d, request), iterations
            )
        except Exception as exc:  # a refusal (no face, ...) is a result here, not a crash
            print(f"{path.name}: no ID photo ({exc})", file=sys.stderr)
            end_to_end = None
        rows.append(
            {
                "image": path.name,
                "detect_ms": detect,
                "segment_ms": segment,
                "models_ms": round(detect + segment, 2),
                "end_to_end_ms": end_to_end,
            }
        )
    variants = {name: choice.variant for name, choice in service.variants.items()}
    rows.append({"variants": variants})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one iteration, for the tests")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--spec", default="icao-35x45")
    parser.add_argument("--venv", type=Path, default=PEER_VENV)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--peer-child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    iterations = 1 if args.smoke else args.iterations
    if args.peer_child is not None:
        peer_child(args.peer_child, iterations)
        return 0
    sys.path.insert(0, str(ROOT))
    paths = images()
    python = ensure_peer_venv(args.venv)
    command = [str(python), __file__, "--iterations", str(iterations), "--peer-child"]
    done = subprocess.run(
        [*command, *map(str, paths)], capture_output=True, text=True, timeout=1800, check=True
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    peer = {row["image"]: row for row in lines if "image" in row}
    ours = appliance_times(paths, iterations, args.spec)
    variants = ours.pop()["variants"]
    table = []
    header = ("image", "peer det+seg", "ours det+seg", "ours ID photo", "ratio")
    print("{:<22} {:>12} {:>12} {:>13} {:>6}".format(*header))
    for row in ours:
        theirs = peer[str(row["image"])]
        end = row["end_to_end_ms"]
        ratio = round(float(end) / theirs["peer_ms"], 2) if end is not None else None
        table.append({**row, "peer_ms": theirs["peer_ms"], "peer_detect_ms": theirs["detect_ms"],
                      "peer_segment_ms": theirs["segment_ms"], "peer_faces": theirs["faces"],
                      "end_to_end_over_peer": ratio})  # fmt: skip
        shown = "-" if end is None else f"{end:.1f}"
        print(
            f"{row['image']!s:<22} {theirs['peer_ms']:>12.1f} {row['models_ms']:>12.1f} "
            f"{shown:>13} {ratio if ratio is not None else '-':>6}"
        )
    print(f"appliance variants: {variants}")
    if args.json:
        report = {
            "peer": {"mediapipe": lines[-1].get("mediapipe"), "venv": str(args.venv)},
            "iterations": iterations,
            "variants": variants,
            "images": table,
        }
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
