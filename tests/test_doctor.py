"""`appliance doctor`: one row per part, failures named, never a traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_doctor_json_reports_runtime_accelerator_models_and_latency(
    models_dir: Path, tmp_path: Path
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[inference]\nmodels_dir = "{models_dir}"\n')
    result = run_cli("--config", str(config), "doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["runtime"]["detail"].startswith("ai-edge-litert ")
    assert rows["accelerator"]["detail"].startswith("cpu (auto:")
    assert "edgetpu not used: No Edge TPU found" in rows["accelerator"]["detail"]
    for name in ("face_detection_short_range", "face_landmark", "selfie_segmentation"):
        assert rows[f"model {name}"]["status"] == "ok"
        assert "ms median invoke" in rows[f"latency {name}"]["detail"]
    for package in ("numpy", "opencv-python-headless", "pillow"):
        assert rows[package]["detail"][0].isdigit()


def test_doctor_fails_clearly_on_a_tampered_model(models_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    (copy / "selfie_segmentation.tflite").write_bytes(b"tampered")
    config = tmp_path / "c.toml"
    config.write_text(f'[inference]\nmodels_dir = "{copy}"\n')
    result = run_cli("--config", str(config), "doctor")
    assert result.returncode == 1
    assert "FAIL  model selfie_segmentation" in result.stdout
    assert "appliance models fetch --force" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
