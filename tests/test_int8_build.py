"""The set-up's int8 build: licence-clean calibration, localface held out, a cache key over
every input, and a no-op rerun."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance.assets import sha256_file
from appliance.inference import corpus, int8_build, quantize
from appliance.inference.registry import MATPLOTLIB_WHEEL, MODELS, SKIMAGE_WHEEL, get_model
from appliance.inference.variants import MANIFEST_NAME, GateCheck, ModelBuild, int8_file_name

NAMES = list(MODELS)


def _built(models_dir: Path, tmp_path: Path, inputs_sha256: str) -> Path:
    """A models directory as a corpus build leaves it (copies stand in for the int8 files)."""
    directory = tmp_path / "models"
    directory.mkdir()
    entries = []
    for name in NAMES:
        source = models_dir / get_model(name).file.name
        shutil.copy(source, directory / source.name)
        runtime, io = directory / int8_file_name(name), directory / int8_file_name(name, True)
        shutil.copy(source, runtime)
        shutil.copy(source, io)
        check = GateCheck("stand-in", 1.0, 2.0, False, "p.jpg", 10)
        entries.append(
            ModelBuild(
                name,
                source.name,
                get_model(name).file.sha256,
                runtime.name,
                sha256_file(runtime),
                "static_wi8_ai8",
                (check,),
                integer_io_file=io.name,
                integer_io_sha256=sha256_file(io),
            ).to_dict()
        )
    manifest = {"version": 1, "models": entries, "inputs": {"sha256": inputs_sha256}}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


def test_the_cache_key_covers_every_input() -> None:
    first = int8_build.build_inputs(NAMES, 1)
    assert first == int8_build.build_inputs(NAMES, 1)  # stable: nothing random, no clock
    detail = first.detail
    assert detail["float_models"] == {n: get_model(n).file.sha256 for n in NAMES}
    assert len(detail["calibration"]) == 3 and len(detail["evaluation"]) == 39  # type: ignore[arg-type]
    localface = {p.file.sha256 for p in corpus.CORPUS}
    assert not set(detail["calibration"]) & localface  # type: ignore[arg-type]
    assert set(detail["evaluation"]) <= localface  # type: ignore[arg-type]
    assert detail["calibration_sources"] == [  # the two pinned wheels, nothing from npm
        f"{w.requirement} sha256 {w.sha256}" for w in (MATPLOTLIB_WHEEL, SKIMAGE_WHEEL)
    ]
    assert set(detail["packages"]) == set(int8_build.COMPUTING_PACKAGES)  # type: ignore[arg-type]
    assert int8_build.build_inputs(NAMES, 2).sha256 != first.sha256
    assert int8_build.build_inputs(NAMES[:2], 1).sha256 != first.sha256
    assert int8_build.build_inputs(NAMES, 1, "us-2x2").sha256 != first.sha256


def test_the_calibration_derivatives_are_deterministic(corpus_dir: Path, tmp_path: Path) -> None:
    photos = corpus.calibration_paths(corpus_dir)
    first = int8_build.calibration_images(photos, tmp_path / "a")
    again = int8_build.calibration_images(photos, tmp_path / "b")
    assert first[:3] == photos  # the gray camera photo has no "gray" derivative
    assert len(first) == 3 * (1 + len(int8_build.DERIVATIVES)) - 1
    assert [sha256_file(p) for p in first] == [sha256_file(p) for p in again]
    assert len({sha256_file(p) for p in first}) == len(first)  # each one differs
    from PIL import Image

    for path in first[3:]:
        with Image.open(path) as derived:
            assert derived.size == (int8_build.SIDE, int8_build.SIDE) and derived.mode == "RGB"


def test_a_close_up_fills_the_frame_with_the_face_and_stays_inside_the_photo() -> None:
    photo = np.zeros((600, 512, 3), np.uint8)
    photo[143:343, 166:366] = 200  # a bright "face" where Grace Hopper's is
    for kind, fill in int8_build.CLOSE_UPS.items():
        crop = int8_build.derivative(photo, (166, 143, 366, 343), kind)
        columns = np.flatnonzero(crop[int8_build.SIDE // 2, :, 0] > 100)
        assert abs(len(columns) / int8_build.SIDE - fill) < 0.01, kind
    # A face at the corner: the crop moves inside instead of padding.
    corner = int8_build.close_up(photo, (0, 0, 100, 100), 0.45)
    assert corner.shape == (int8_build.SIDE, int8_build.SIDE, 3)


def test_a_change_to_the_build_code_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = int8_build.build_inputs(NAMES, 1).sha256
    monkeypatch.setattr(int8_build, "_source_digest", lambda: "edited")
    assert int8_build.build_inputs(NAMES, 1).sha256 != before


def test_up_to_date_needs_the_same_inputs_and_files_that_verify(
    models_dir: Path, tmp_path: Path
) -> None:
    inputs = int8_build.build_inputs(NAMES, 1)
    directory = _built(models_dir, tmp_path, inputs.sha256)
    assert int8_build.up_to_date(directory, inputs)
    assert not int8_build.up_to_date(directory, int8_build.build_inputs(NAMES, 2))
    altered = directory / int8_file_name("face_landmark")
    altered.write_bytes(altered.read_bytes() + b"\0")
    assert not int8_build.up_to_date(directory, inputs)
    assert not int8_build.up_to_date(tmp_path / "nothing-built", inputs)


def test_a_second_set_up_builds_nothing(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = int8_build.build_inputs(NAMES, 1)
    directory = _built(models_dir, tmp_path, inputs.sha256)

    def must_not_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("an up-to-date build was rebuilt")

    monkeypatch.setattr(quantize, "build_models", must_not_build)
    outcome = int8_build.build_from_corpus(directory, num_threads=1)
    assert not outcome.built
    assert outcome.lines[0].startswith("int8 models up to date (inputs sha256 ")
    assert [line.split(":")[0] for line in outcome.lines[1:]] == [f"int8  {n}" for n in NAMES]


def test_a_changed_input_builds_again_from_the_corpus(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, corpus_dir: Path
) -> None:
    directory = _built(models_dir, tmp_path, "0" * 64)  # built from other inputs
    seen: dict[str, object] = {}

    def record(
        models: Path, out: Path | None, calibration: list[Path], holdout: list[Path], **kw: object
    ) -> object:
        seen.update(calibration=calibration, holdout=holdout, **kw)
        return quantize.BuildReport(models, models / MANIFEST_NAME, ())

    monkeypatch.setattr(quantize, "build_models", record)
    outcome = int8_build.build_from_corpus(directory, num_threads=1, corpus_dir=corpus_dir)
    assert outcome.built
    calibration, holdout = seen["calibration"], seen["holdout"]
    names = [p.name for p in calibration]  # type: ignore[attr-defined]
    assert names[:3] == ["astronaut.png", "grace_hopper.jpg", "camera.png"]
    assert len(names) == 3 * (1 + len(int8_build.DERIVATIVES)) - 1
    assert [p.name for p in holdout] == [p.name for p in corpus.portraits("evaluation")]  # type: ignore[attr-defined]
    assert not {sha256_file(p) for p in calibration} & {sha256_file(p) for p in holdout}  # type: ignore[attr-defined]
    assert seen["inputs"]["sha256"] == outcome.inputs.sha256  # type: ignore[index]
    assert seen["spec_id"] == "icao-35x45"


@pytest.mark.slow
def test_the_real_corpus_build_of_one_model_gates_it(
    models_dir: Path, tmp_path: Path, corpus_dir: Path
) -> None:
    """The real thing, one model (about a minute on an idle 2-core machine)."""
    directory = tmp_path / "models"
    shutil.copytree(models_dir, directory)
    outcome = int8_build.build_from_corpus(
        directory, names=["face_detection_short_range"], num_threads=1, corpus_dir=corpus_dir
    )
    assert outcome.built and len(outcome.models) == 1
    build = outcome.models[0]
    assert all(check.samples >= 39 for check in build.gate[:2])  # both sides of 39 portraits
    assert int8_build.up_to_date(directory, outcome.inputs)


def test_the_set_up_built_and_gated_every_model(models_dir: Path) -> None:
    """What a fresh install has after `./run-tests` or `./run-appliance`: every model's int8
    build, made from the current inputs, every file verified, every gate run; doctor says so."""
    import os

    from appliance.config import Config, InferenceConfig
    from appliance.doctor import int8_build_rows
    from appliance.inference.variants import read_manifest, verify_int8

    if not (models_dir / MANIFEST_NAME).is_file():
        message = f"no int8 build in {models_dir}: the set-up runs `appliance models build`"
        if os.environ.get("CI"):
            pytest.fail(message)  # on CI the set-up just ran: a missing build is a failure
        pytest.skip(message)
    threads = InferenceConfig().num_threads
    assert int8_build.recorded_inputs(models_dir) == int8_build.build_inputs(NAMES, threads).sha256
    assert all(not problem for _, problem in verify_int8(models_dir))
    builds = read_manifest(models_dir)
    assert list(builds) == NAMES
    for build in builds.values():
        assert build.gate and all(check.samples >= 39 for check in build.gate[:1]), build.name
    rows = list(int8_build_rows(Config(inference=InferenceConfig(models_dir=models_dir))))
    assert rows[0].name == "int8 builds" and rows[0].status == "ok", rows[0]
    assert rows[0].detail.startswith(f"{len(NAMES)} present in {models_dir}")


def test_doctor_times_both_variants_even_where_startup_did_not(
    models_dir: Path, tmp_path: Path
) -> None:
    from appliance.config import Config, InferenceConfig
    from appliance.doctor import run_checks

    directory = _built(models_dir, tmp_path, "0" * 64)
    config = Config(inference=InferenceConfig(models_dir=directory, variant="float"))
    rows = {row.name: row.detail for row in run_checks(config)}
    for name in ("face_detection_short_range", "face_landmark", "selfie_segmentation"):
        assert rows[f"variant {name}"].startswith('float: configured: variant = "float"')
        assert rows[f"timing {name}"].startswith("not timed")
        timing = rows[f"int8 timing {name}"]
        assert timing.startswith("float ") and " ms, int8 " in timing, timing
        assert timing.endswith("(the int8 file is not used: float runs)")
