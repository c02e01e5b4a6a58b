"""Edge TPU builds: `edgetpu_compiler` run on the integer-I/O int8 models, verified by hash.

`appliance models build` compiles each model's `<model>.int8-io.tflite` (int8 in, int8 out:
what the compiler takes) with Coral's `edgetpu_compiler` when it is installed. The compiler is
an x86-64 Debian package from Coral's apt repository, not on PyPI, so where it is absent the
build says so and makes no Edge TPU file; `--edgetpu` turns that into an error. Each output,
`<model>.int8-io_edgetpu.tflite`, is recorded in `edgetpu-models.json` with its sha256, the
sha256 of the int8-io file it came from, the compiler's version and how many ops it mapped to
the Edge TPU and left on the CPU. The runtime (`variants.select_model`) loads one only with
accelerator "edgetpu", only if that record checks out, and only where the int8-io model it came
from passed its own accuracy gate; otherwise it falls back per model and says why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appliance.assets import sha256_file
from appliance.errors import ApplianceError
from appliance.inference.registry import get_model
from appliance.inference.variants import BUILD_COMMAND, read_manifest

COMPILER = "edgetpu_compiler"
EDGETPU_MANIFEST = "edgetpu-models.json"
EDGETPU_MANIFEST_VERSION = 1
CUSTOM_OP = "edgetpu-custom-op"  # what the compiler replaces the ops it maps with
COMPILE_TIMEOUT_S = 600
INSTALL_HINT = (
    f"{COMPILER} is not installed, so no Edge TPU model was made: on an x86-64 Debian build "
    "host add Coral's apt repository, `apt-get install edgetpu-compiler`, then run "
    f"`{BUILD_COMMAND} --edgetpu` (the int8 models stay as they are)"
)

Runner = Callable[..., subprocess.CompletedProcess[str]]


class EdgeTpuCompilerMissing(ApplianceError, FileNotFoundError):
    """edgetpu_compiler is not on PATH."""


@dataclass(frozen=True)
class EdgeTpuBuild:
    """One compiled model: the file, its hash, where it came from, what the compiler mapped."""

    name: str
    source_file: str  # the int8-io file it was compiled from
    source_sha256: str
    file: str
    sha256: str
    compiler: str
    tpu_ops: int
    cpu_ops: int

    def describe(self) -> str:
        return (
            f"{self.file}: {self.tpu_ops} ops on the Edge TPU, {self.cpu_ops} on the CPU "
            f"({self.compiler})"
        )


def edgetpu_file_name(name: str) -> str:
    stem = get_model(name).file.name.removesuffix(".tflite")
    return f"{stem}.int8-io_edgetpu.tflite"


def read_edgetpu_manifest(models_dir: Path) -> dict[str, EdgeTpuBuild]:
    path = models_dir / EDGETPU_MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != EDGETPU_MANIFEST_VERSION:
            return {}
        return {m["name"]: EdgeTpuBuild(**m) for m in data["models"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise ApplianceError(
            f"{path} is not a valid Edge TPU manifest ({exc}); run `{BUILD_COMMAND} --edgetpu`"
        ) from None


def _mapped_ops(text: str) -> tuple[int, int]:
    """(ops on the Edge TPU, ops on the CPU) from the compiler's summary lines."""
    counts = []
    for where in ("Edge TPU", "CPU"):
        found = re.search(rf"Number of operations that will run on {where}:\s*(\d+)", text)
        if found is None:
            raise ApplianceError(f"{COMPILER} printed no '{where}' operation count")
        counts.append(int(found.group(1)))
    return counts[0], counts[1]


def compile_edgetpu(
    models_dir: Path,
    *,
    compiler: str | None = None,
    run: Runner = subprocess.run,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[EdgeTpuBuild]:
    """Compile every int8-io model the build manifest lists; write `edgetpu-models.json`."""
    program = compiler or shutil.which(COMPILER)
    if program is None:
        raise EdgeTpuCompilerMissing(INSTALL_HINT)
    version = run(
        [program, "--version"], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()
    builds = []
    for name, build in sorted(read_manifest(models_dir).items()):
        source = models_dir / build.integer_io_file
        if not build.integer_io_file or not source.is_file():
            progress(f"edgetpu {name}: no int8-io file to compile")
            continue
        if sha256_file(source) != build.integer_io_sha256:
            raise ApplianceError(f"{source} does not match its manifest hash: rebuild first")
        with tempfile.TemporaryDirectory(dir=models_dir, prefix=".edgetpu-") as work:
            try:
                done = run(
                    [program, "--out_dir", work, "--show_operations", str(source)],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=COMPILE_TIMEOUT_S,
                )
            except subprocess.CalledProcessError as exc:
                tail = " / ".join((exc.stdout or exc.stderr or "").strip().splitlines()[-3:])
                raise ApplianceError(f"{COMPILER} failed on {source.name}: {tail}") from None
            produced = Path(work) / f"{source.stem}_edgetpu.tflite"
            if not produced.is_file():
                raise ApplianceError(f"{COMPILER} wrote no {produced.name}")
            tpu_ops, cpu_ops = _mapped_ops(done.stdout)
            target = models_dir / edgetpu_file_name(name)
            os.replace(produced, target)
        builds.append(
            EdgeTpuBuild(
                name,
                source.name,
                build.integer_io_sha256,
                target.name,
                sha256_file(target),
                version,
                tpu_ops,
                cpu_ops,
            )
        )
        progress(f"edgetpu {builds[-1].describe()}")
    manifest: dict[str, Any] = {
        "version": EDGETPU_MANIFEST_VERSION,
        "compiler": version,
        "models": [asdict(b) for b in builds],
    }
    partial = models_dir / f".{EDGETPU_MANIFEST}.partial"
    partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(partial, models_dir / EDGETPU_MANIFEST)
    return builds


def compiled_up_to_date(models_dir: Path) -> bool:
    """True when every int8-io build has its Edge TPU file, compiled from that very file."""
    try:
        builds, compiled = read_manifest(models_dir), read_edgetpu_manifest(models_dir)
    except ApplianceError:
        return False
    for name, build in builds.items():
        entry = compiled.get(name)
        if entry is None or entry.source_sha256 != build.integer_io_sha256:
            return False
        path = models_dir / entry.file
        if not path.is_file() or sha256_file(path) != entry.sha256:
            return False
    return bool(builds)


def edgetpu_step(
    models_dir: Path,
    *,
    required: bool,
    force: bool = False,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[str]:
    """What `appliance models build` does for the Edge TPU after the int8 build: compile
    where the compiler is installed (unless already done), else say how to get it; with
    `required` (`--edgetpu`) a missing compiler is an error."""
    if shutil.which(COMPILER) is None:
        if required:
            raise EdgeTpuCompilerMissing(INSTALL_HINT)
        return [f"edgetpu: {INSTALL_HINT}"]
    if not force and compiled_up_to_date(models_dir):
        return ["edgetpu: the Edge TPU files are up to date: nothing compiled"]
    return [f"edgetpu {b.describe()}" for b in compile_edgetpu(models_dir, progress=progress)]


def edgetpu_candidate(name: str, models_dir: Path) -> tuple[Path | None, str]:
    """The verified Edge TPU file for `name`, or None and why it cannot be used."""
    try:
        compiled = read_edgetpu_manifest(models_dir).get(name)
        build = read_manifest(models_dir).get(name)
    except ApplianceError as exc:
        return None, str(exc)
    if compiled is None or build is None:
        return None, f"no Edge TPU build ({COMPILER} has not compiled {name})"
    if build.source_sha256 != get_model(name).file.sha256:
        return None, "the Edge TPU build is of another float model; rebuild"
    if compiled.source_sha256 != build.integer_io_sha256:
        return None, f"{compiled.file} was compiled from another int8-io file; compile again"
    failed = [c for c in build.integer_io_gate if not c.passed]
    if not build.integer_io_gate or failed:
        detail = "; ".join(c.describe() for c in failed) or "no gate was run"
        return None, f"the integer-I/O model it is compiled from failed its gate: {detail}"
    path = models_dir / compiled.file
    if Path(compiled.file).name != compiled.file or not path.is_file():
        return None, f"{compiled.file} is missing"
    if sha256_file(path) != compiled.sha256:
        return None, f"{path.name} does not match its manifest hash (sha256); compile again"
    return path, f"Edge TPU build verified ({compiled.describe()})"
