"""What the face and mouth occlusion checks cost, call by call, on finished 413 x 531 photos.

    nice -n 10 .venv/bin/python benchmarks/bench_occlusion.py [--repeats 400]

Each portrait goes through the pipeline (spec icao-35x45); the finished photo, its mesh and
its matte are then measured once, and `occlusion_checks` is timed alone, many times, each on a
fresh FaceImage whose shared colour planes (CIELAB, luminance, skin, the skin reference) are
made first, as the checks before it in face_checks.py have made them. Prints the median, the
10th percentile and the best time per portrait, clean and with a painted mask (a failing face
also grows the occluder's box).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from occlusion_variants import surgical_mask  # noqa: E402

PORTRAITS = ("astronaut.png", "grace_hopper.jpg")
SHARED = ROOT.parent / "shared" / "data" / "portraits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=400)
    args = parser.parse_args()
    from appliance.assets import fetch_files
    from appliance.config import Config, InferenceConfig, default_cache_dir, default_models_dir
    from appliance.idphoto.face_zones import FaceImage, FaceZones
    from appliance.idphoto.occlusion import occlusion_checks
    from appliance.idphoto.pipeline import IdPhotoPipeline, ProductRequest
    from appliance.inference.registry import SAMPLES
    from appliance.inference.service import InferenceService

    samples = ROOT / "samples"
    fetch_files(SAMPLES, samples, default_cache_dir())
    config = Config(inference=InferenceConfig(models_dir=default_models_dir()))
    inference = InferenceService.from_config(config.inference)
    pipeline = IdPhotoPipeline(inference, config)
    paths = [samples / name for name in PORTRAITS]
    paths += [SHARED / "hivision-test0.jpg"] if (SHARED / "hivision-test0.jpg").is_file() else []
    for path in paths:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").save(buffer, "PNG")
        product = pipeline.process(buffer.getvalue(), ProductRequest(spec_id="icao-35x45"))
        finished = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(product.digital))))
        face = inference.detector.detect(finished)[0]
        points = inference.landmarker.landmarks(finished, face).points[:, :2].astype(np.float64)
        alpha = inference.segmenter.refine(inference.segmenter.segment(finished), finished)
        for case, pixels in (("clean", finished), ("mask", surgical_mask(finished, points))):
            times = []
            for _ in range(args.repeats):
                image = FaceImage(pixels, alpha, FaceZones(points, pixels.shape[:2]))
                _ = image.lab, image.luminance, image.skin, image.reference
                start = time.perf_counter()
                found = occlusion_checks(image)
                times.append((time.perf_counter() - start) * 1000.0)
            ms = np.array(times)
            verdicts = "/".join(c.status for c in found)
            print(
                f"{path.name:22s} {case:5s} {pixels.shape[1]}x{pixels.shape[0]} {verdicts:9s} "
                f"median {np.median(ms):.2f} ms, p10 {np.percentile(ms, 10):.2f}, "
                f"best {ms.min():.2f}"
            )


if __name__ == "__main__":
    main()
