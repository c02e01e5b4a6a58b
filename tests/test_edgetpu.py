"""Edge TPU builds: compiled with edgetpu_compiler, loaded through the delegate, verified by
hash, with a per-model fallback that says why, and doctor saying where each model runs.

No Edge TPU and no edgetpu_compiler exist here. The compiler is replaced by a script with its
command line and its summary lines; the delegate by tests/fakes/edgetpu.py, which has LiteRT's
`load_delegate` signature and runs inside LiteRT's own Interpreter. The models are the real
pinned ones: the int8-io stand-ins are copies of them (the real int8 build is slow, and
`test_quantize` covers it), so every model really runs.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from fakes.edgetpu import FakeEdgeTpu
from PIL import Image

from appliance.assets import sha256_file
from appliance.config import Config, InferenceConfig
from appliance.inference import edgetpu_build, placement, service, tflite_graph
from appliance.inference.delegates import edgetpu as edgetpu_delegate
from appliance.inference.edgetpu_build import (
    EDGETPU_MANIFEST,
    EdgeTpuCompilerMissing,
    edgetpu_file_name,
    edgetpu_step,
)
from appliance.inference.registry import MODELS, get_model
from appliance.inference.runtime import InterpreterBackend
from appliance.inference.service import InferenceService
from appliance.inference.variants import MANIFEST_NAME, GateCheck, ModelBuild, int8_file_name

FAKE_COMPILER = f"""#!{sys.executable}
# Stands in for Coral's edgetpu_compiler: same arguments, same summary lines. It marks every
# CONV_2D as mapped (the real compiler replaces each mapped run of ops by one custom op).
import sys
from pathlib import Path
from appliance.inference import tflite_graph

args = sys.argv[1:]
if args == ["--version"]:
    print("Edge TPU Compiler version 16.0.384591198")
    sys.exit(0)
out, source = Path(args[args.index("--out_dir") + 1]), Path(args[-1])
model = tflite_graph.read_model(source.read_bytes())
graph = model.subgraphs[0]
mapped = 0
for index, code in enumerate(model.operatorCodes):
    if tflite_graph.opcode_name(model, index) == "CONV_2D":
        code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
        code.customCode = "edgetpu-custom-op"
        mapped += sum(1 for op in graph.operators if op.opcodeIndex == index)
(out / (source.stem + "_edgetpu.tflite")).write_bytes(tflite_graph.write_model(model))
print("Model compiled successfully in 12 ms.")
print("Number of operations that will run on Edge TPU:", mapped)
print("Number of operations that will run on CPU:", len(graph.operators) - mapped)
"""


def _passing(metric: str) -> GateCheck:
    return GateCheck(metric, 1.0, 2.0, False, "p.jpg", 10)


@pytest.fixture
def models(models_dir: Path, tmp_path: Path) -> Path:
    """The pinned models, and an int8 build of each whose gates passed (copies stand in)."""
    directory = tmp_path / "models"
    directory.mkdir()
    entries = []
    for name in MODELS:
        source = models_dir / get_model(name).file.name
        shutil.copy(source, directory / source.name)
        runtime, io = directory / int8_file_name(name), directory / int8_file_name(name, True)
        shutil.copy(source, runtime)
        shutil.copy(source, io)
        build = ModelBuild(
            name,
            source.name,
            get_model(name).file.sha256,
            runtime.name,
            sha256_file(runtime),
            "static_wi8_ai8",
            (_passing("stand-in"),),
            integer_io_file=io.name,
            integer_io_sha256=sha256_file(io),
            integer_io_gate=(_passing("stand-in"),),
        )
        entries.append(build.to_dict())
    (directory / MANIFEST_NAME).write_text(json.dumps({"version": 1, "models": entries}))
    return directory


@pytest.fixture
def compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / "edgetpu_compiler"
    program.write_text(FAKE_COMPILER)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return program


@pytest.fixture
def tpu(models: Path, monkeypatch: pytest.MonkeyPatch) -> FakeEdgeTpu:
    """The fake TPU behind the runtime: accelerator = "edgetpu" loads it."""
    fake = FakeEdgeTpu(
        {edgetpu_file_name(n): models / int8_file_name(n, integer_io=True) for n in MODELS}
    )
    module = SimpleNamespace(Interpreter=fake.interpreter_class(), load_delegate=fake.load_delegate)
    backend = InterpreterBackend("ai-edge-litert", "fake-edgetpu", module)  # type: ignore[arg-type]
    monkeypatch.setattr(service, "load_backend", lambda: backend)
    monkeypatch.setattr(edgetpu_delegate, "check_library", lambda library: None)
    return fake


def _service(models: Path) -> InferenceService:
    config = InferenceConfig(models_dir=models, accelerator="edgetpu", variant="int8")
    return InferenceService.from_config(config)


def test_the_build_compiles_each_int8_io_model_and_records_its_hash(
    models: Path, compiler: Path
) -> None:
    lines = edgetpu_step(models, required=True)
    assert len(lines) == len(MODELS), lines
    manifest = json.loads((models / EDGETPU_MANIFEST).read_text())
    assert manifest["compiler"] == "Edge TPU Compiler version 16.0.384591198"
    for entry in manifest["models"]:
        compiled = models / entry["file"]
        assert entry["file"] == edgetpu_file_name(entry["name"])
        assert sha256_file(compiled) == entry["sha256"]
        io = models / int8_file_name(entry["name"], integer_io=True)
        assert entry["source_sha256"] == sha256_file(io)
        assert entry["tpu_ops"] > 0 and entry["cpu_ops"] > 0
    assert edgetpu_step(models, required=True) == [
        "edgetpu: the Edge TPU files are up to date: nothing compiled"
    ]


def test_without_the_compiler_the_build_says_how_to_get_it(
    models: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (line,) = edgetpu_step(models, required=False)
    assert "edgetpu_compiler is not installed" in line
    assert "apt-get install edgetpu-compiler" in line
    with pytest.raises(EdgeTpuCompilerMissing, match="appliance models build --edgetpu"):
        edgetpu_step(models, required=True)
    assert not (models / EDGETPU_MANIFEST).exists()


def test_with_the_delegate_the_runtime_runs_the_compiled_files(
    models: Path, compiler: Path, tpu: FakeEdgeTpu, sample_dir: Path
) -> None:
    edgetpu_step(models, required=True)
    inference = _service(models)
    assert inference.accelerator.name == "edgetpu"
    assert tpu.loads and tpu.loads[0] == ("libedgetpu.so.1", {})
    for name, choice in inference.variants.items():
        assert choice.path.name == edgetpu_file_name(name), choice.reason
        assert "Edge TPU build verified" in choice.reason
        assert choice.runs_on.startswith("Edge TPU and CPU: "), choice.runs_on
        assert edgetpu_file_name(name) in tpu.delegated
    # The compiled graphs really compute (the fake TPU runs what they were compiled from).
    astronaut = np.asarray(Image.open(sample_dir / "astronaut.png").convert("RGB"))
    assert len(inference.detector.detect(astronaut)) == 1
    from appliance.doctor import service_rows

    rows = {r.name: r.detail for r in service_rows(Config(), inference)}
    assert rows["runs on face_landmark"].startswith("Edge TPU and CPU")
    assert "edgetpu" in rows["accelerator"]


def test_each_model_falls_back_on_its_own_and_doctor_says_why(
    models: Path, compiler: Path, tpu: FakeEdgeTpu
) -> None:
    edgetpu_step(models, required=True)
    altered = models / edgetpu_file_name("face_landmark")
    altered.write_bytes(altered.read_bytes() + b"\0")
    tpu.rejects.add(edgetpu_file_name("selfie_segmentation"))
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    for entry in manifest["models"]:
        if entry["name"] == "face_detection_full_range":
            entry["integer_io_gate"][0].update(value=3.5, passed=False)
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))

    choices = _service(models).variants
    short = choices["face_detection_short_range"]
    assert short.path.name == edgetpu_file_name("face_detection_short_range")
    for name, why in (
        ("face_landmark", "does not match its manifest hash"),
        ("selfie_segmentation", "does not load on the Edge TPU"),
        ("face_detection_full_range", "failed its gate"),
    ):
        choice = choices[name]
        assert choice.path.name == int8_file_name(name), choice.reason  # the CPU int8 build
        assert "Edge TPU file not used: " in choice.reason and why in choice.reason
        assert choice.runs_on.startswith("CPU: "), choice.runs_on
        assert "not compiled for the Edge TPU" in choice.runs_on
    assert "Failed to prepare for TPU" in choices["selfie_segmentation"].reason
    (models / EDGETPU_MANIFEST).unlink()
    assert "no Edge TPU build" in _service(models).variants["face_landmark"].reason


def test_placement_counts_what_the_compiler_mapped(models_dir: Path) -> None:
    data = (models_dir / "face_landmark.tflite").read_bytes()
    assert placement.edgetpu_placement(data, "x.tflite").startswith("CPU: x.tflite is not")
    model = tflite_graph.read_model(data)
    for index, code in enumerate(model.operatorCodes):
        code.builtinCode = code.deprecatedBuiltinCode = 32
        code.customCode = "edgetpu-custom-op" if index == 0 else code.customCode
    whole = tflite_graph.write_model(model)
    counts = placement.op_counts(whole)
    assert counts["edgetpu-custom-op"] > 0
    line = placement.edgetpu_placement(whole, "x.tflite")
    assert f"{counts['edgetpu-custom-op']} compiled segments on the TPU" in line


def test_on_the_cpu_doctor_names_xnnpack_per_model(inference: InferenceService) -> None:
    for choice in inference.variants.values():
        assert choice.runs_on.startswith("CPU: XNNPACK ("), choice.runs_on
    assert edgetpu_build.COMPILER == "edgetpu_compiler"
