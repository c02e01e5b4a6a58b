"""The aarch64 tier: the appliance on Raspberry Pi OS's two bases, emulated, against x86.

scripts/aarch64-userland.sh makes (once, cached) a Debian arm64 userland for each base,
bookworm (Python 3.11) and trixie (Python 3.13), from .debs unpacked without maintainer
scripts, and installs the project's pinned aarch64 wheels for that base's CPython into it.
Debian's qemu-aarch64 runs the target's own interpreter (`-L ROOT`, no binfmt_misc) on this
checkout's sources. Each base then runs:

- `appliance doctor --json`: the same rows with the same verdicts as on x86, on aarch64;
- `appliance process` on the scikit-image astronaut (always) and one shared portrait (when
  ../shared is present), for icao-35x45 and us-2x2, compared with the x86 run of the same
  command: output size equal, geometry within 1 output pixel, every check the same verdict,
  and the output pixels within PIXEL_MEAN_TOLERANCE / PIXEL_OUTLIER_* below;
- the real picamera2 package's code (tests/aarch64/picamera2_probe.py): which of its compiled
  helpers load beside the venv's numpy, how far `import picamera2` gets, and, where Debian has
  libcamera's bindings (trixie), the whole import (with a display-less pykms) and the
  appliance's backend against real libcamera with no camera attached.

Emulated timings mean nothing and are not reported. The x86 commands run first; the emulated
ones of a base run side by side (two cores).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_PORTRAITS
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
USERLAND = ROOT / "scripts" / "aarch64-userland.sh"
PROBE = ROOT / "tests" / "aarch64" / "picamera2_probe.py"
DISPLAY_STAND_IN = ROOT / "tests" / "aarch64" / "display"
SUITES = {"bookworm": "3.11", "trixie": "3.13"}
SPECS = ("icao-35x45", "us-2x2")
SHARED_PICK = "hivision-demo0.jpg"  # one shared portrait: emulation is slow
# Output pixels, decoded, aarch64 against x86 (0-255 per channel): LiteRT's float kernels
# (XNNPACK's NEON against AVX paths) differ in the last bits, which moves the matte edge and
# a JPEG block here and there, never the picture.
# Seen here (both bases, both specs, astronaut and hivision-demo0): mean 0.03-0.35, largest
# single difference 11, no value more than 32 apart.
PIXEL_MEAN_TOLERANCE = 1.0  # mean absolute difference
PIXEL_OUTLIER_LEVEL = 32  # a channel value this far off counts as an outlier...
PIXEL_OUTLIER_SHARE = 0.001  # ...and at most this share of them is allowed
GEOMETRY_PX = ("crown_y", "chin_y", "eye_line_y", "face_centre_x", "eye_distance_px")
GEOMETRY_MM = ("head_height_mm", "eye_line_from_bottom_mm", "centre_offset_mm")
# Doctor rows whose text differs by design: the interpreter line, and timings.
PLATFORM_ROWS = re.compile(r"python$|latency |int8 timing ")

pytestmark = pytest.mark.timeout(1800)


@dataclass(frozen=True)
class Userland:
    suite: str
    env: dict[str, Any]

    def command(self, *args: str) -> list[str]:
        return [self.env["qemu"], "-L", self.env["root"], self.env["python"], *args]

    def environment(self, *extra_path: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k == "HOME" or k.startswith("XDG_")}
        return {
            **keep,
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": os.pathsep.join([self.env["site"], str(ROOT), *extra_path]),
        }


def prepare(suite: str) -> Userland:
    result = subprocess.run(
        [str(USERLAND), suite], capture_output=True, text=True, timeout=1500, check=False
    )
    assert result.returncode == 0, (
        f"scripts/aarch64-userland.sh {suite} failed:\n" + result.stderr[-4000:]
    )
    env_file = Path(result.stdout.strip().splitlines()[-1])
    return Userland(suite, json.loads(env_file.read_text(encoding="utf-8")))


APPLIANCE = "import sys; from appliance.cli import main; sys.exit(main())"


def appliance_commands(out: Path, inputs: Sequence[Path]) -> dict[str, list[str]]:
    """The same `appliance` runs for either machine (arguments after the interpreter)."""
    commands = {"doctor": ["-c", APPLIANCE, "doctor", "--json"]}
    for spec in SPECS:
        commands[spec] = [
            "-c", APPLIANCE, "process", *map(str, inputs), "--spec", spec,
            "--out", str(out / spec), "--json",
        ]  # fmt: skip
    return commands


def run_all(jobs: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, str]:
    """Run the jobs side by side; their stdout by name (any failure fails the test)."""
    started = {
        name: subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, (command, env) in jobs.items()
    }
    finished = {}
    try:
        for name, process in started.items():
            finished[name] = (*process.communicate(timeout=1200), process.returncode)
    finally:
        for process in started.values():  # on a timeout, none is left running
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, (_, stderr, code) in finished.items():
        assert code == 0, f"{name} failed ({code}):\n{stderr[-3000:]}"
    return {name: stdout for name, (stdout, _, _) in finished.items()}


@dataclass(frozen=True)
class Runs:
    userland: Userland
    inputs: list[Path]
    arm_out: Path
    x86_out: Path
    arm: dict[str, str]
    x86: dict[str, str]


@pytest.fixture(scope="module", params=list(SUITES))
def runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         sample_dir: Path) -> Iterator[Runs]:  # fmt: skip
    userland = prepare(request.param)
    inputs = [sample_dir / "astronaut.png"]
    if (SHARED_PORTRAITS / SHARED_PICK).is_file():
        inputs.append(SHARED_PORTRAITS / SHARED_PICK)
    base = tmp_path_factory.mktemp(f"aarch64-{userland.suite}")
    x86_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    x86_commands = appliance_commands(base / "x86", inputs)
    x86 = run_all({n: ([sys.executable, *c], x86_env) for n, c in x86_commands.items()})
    arm_jobs = {
        n: (userland.command(*c), userland.environment())
        for n, c in appliance_commands(base / "arm", inputs).items()
    }
    arm_jobs["picamera2"] = (
        userland.command(str(PROBE), str(DISPLAY_STAND_IN), str(ROOT)),
        userland.environment(userland.env["camera"]),
    )
    arm = run_all(arm_jobs)
    yield Runs(userland, inputs, base / "arm", base / "x86", arm, x86)


def test_the_userland_holds_exactly_the_pinned_wheels_for_its_python(runs: Runs) -> None:
    pins = _pins()
    site = Path(runs.userland.env["site"])
    installed = {}
    for info in site.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert installed, f"no distributions in {site}"
    unpinned = {n: v for n, v in installed.items() if pins.get(n) != v}
    assert not unpinned, f"in the aarch64 site but not as pinned: {unpinned}"
    assert {"numpy", "ai-edge-litert", "opencv-python-headless", "simplejpeg"} <= set(installed)
    abi = "cp" + SUITES[runs.userland.suite].replace(".", "")
    for wheel in runs.userland.env["wheels"]:
        tags = wheel.removesuffix(".whl").split("-")[-3:]
        assert tags[2] == "any" or "aarch64" in tags[2], wheel
        assert tags[1] in ("none", "abi3", abi), f"{wheel} is not for {abi}"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "image-build" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


@pytest.mark.parametrize("suite", list(SUITES))
def test_the_pi_image_payload_resolves_the_pins_for_each_base(suite: str, tmp_path: Path) -> None:
    """The image recipe's own wheel step (prepare-payload.sh, as build-rootfs.sh --target pi
    --suite SUITE calls it): the pinned wheels for that base's CPython on arm64, plus the
    `pi` extra's simplejpeg, and nothing else."""
    out = tmp_path / "payload"
    result = subprocess.run(
        [str(ROOT / "image-build" / "prepare-payload.sh"), "--arch", "arm64", "--suite", suite,
         "--extra", "pi", "--out", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "requirement").read_text().startswith("appliance[pi]==")
    abi = "cp" + SUITES[suite].replace(".", "")
    wheels = {}
    for wheel in (out / "wheels").glob("*.whl"):
        name, version, *_, wheel_abi, platform = wheel.name.removesuffix(".whl").split("-")
        assert platform == "any" or "aarch64" in platform, wheel.name
        assert wheel_abi in ("none", "abi3", abi), f"{wheel.name} is not for {abi}"
        wheels[re.sub(r"[-_.]+", "-", name).lower()] = version
    assert wheels.pop("appliance")
    pins = _pins()
    assert {n: v for n, v in wheels.items() if pins.get(n) != v} == {}
    assert wheels["simplejpeg"] == pins["simplejpeg"]


def test_doctor_on_aarch64_matches_x86(runs: Runs) -> None:
    arm = json.loads(runs.arm["doctor"])
    x86 = json.loads(runs.x86["doctor"])
    assert [r["name"] for r in arm] == [r["name"] for r in x86]
    python = next(r for r in arm if r["name"] == "python")
    assert python["detail"].endswith("on aarch64"), python
    assert python["detail"].startswith(SUITES[runs.userland.suite] + "."), python
    for a, b in zip(arm, x86, strict=True):
        assert a["status"] == b["status"], (a, b)
        if not PLATFORM_ROWS.match(a["name"]):
            assert a["detail"] == b["detail"], (a, b)
    assert not [r for r in arm if r["status"] == "fail"]


def _reports(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("spec", SPECS)
def test_process_on_aarch64_matches_x86(runs: Runs, spec: str) -> None:
    arm, x86 = _reports(runs.arm[spec]), _reports(runs.x86[spec])
    assert len(arm) == len(x86) == len(runs.inputs)
    mm_per_px = 25.4 / x86[0]["output"]["dpi"]
    for source, a, b in zip(runs.inputs, arm, x86, strict=True):
        what = f"{source.name} {spec}"
        assert a["output"]["size"] == b["output"]["size"], what
        for key in GEOMETRY_PX:
            assert abs(a["geometry"][key] - b["geometry"][key]) <= 1.0, (what, key)
        for key in GEOMETRY_MM:
            # 1 px, plus the report's rounding to 0.01 mm on either side.
            assert abs(a["geometry"][key] - b["geometry"][key]) <= mm_per_px + 0.01, (what, key)
        assert [(c["name"], c["status"]) for c in a["checks"]] == [
            (c["name"], c["status"]) for c in b["checks"]
        ], what
        name = f"{source.stem}.{spec}.jpg"
        arm_px = np.asarray(Image.open(runs.arm_out / spec / name).convert("RGB"), np.int16)
        x86_px = np.asarray(Image.open(runs.x86_out / spec / name).convert("RGB"), np.int16)
        assert arm_px.shape == x86_px.shape, what
        diff = np.abs(arm_px - x86_px)
        assert diff.mean() <= PIXEL_MEAN_TOLERANCE, (what, float(diff.mean()))
        outliers = float((diff > PIXEL_OUTLIER_LEVEL).mean())
        assert outliers <= PIXEL_OUTLIER_SHARE, (what, outliers)


def test_picamera2_and_its_compiled_helpers_on_aarch64(runs: Runs) -> None:
    probe = json.loads(runs.arm["picamera2"].strip().splitlines()[-1])
    helpers = probe["helpers"]
    site, root = runs.userland.env["site"], runs.userland.env["root"]
    # The venv's numpy 2 and the pinned simplejpeg wheel (built for numpy 2) work together.
    assert probe["numpy"] == "2.4.6"
    assert helpers["numpy"]["file"].startswith(site)
    assert helpers["simplejpeg"]["file"].startswith(site)
    roundtrip = probe["simplejpeg_roundtrip"]
    assert roundtrip["shape"] == [48, 64, 3] and roundtrip["mean_abs_error"] < 3, roundtrip
    # Debian's prctl (no numpy inside) and picamera2's pure-Python helpers load.
    assert helpers["prctl"]["file"].startswith(f"{root}/usr/lib/python3/dist-packages")
    for name in ("videodev2", "piexif", "pidng.core", "pidng.camdefs", "PIL.Image"):
        assert "file" in helpers[name], (name, helpers[name])
    plain = probe["plain_import"]
    if runs.userland.suite == "bookworm":
        # Debian 12 has no libcamera Python bindings (Pi OS has them from its own archive):
        # picamera2's first line stops there.
        assert helpers["libcamera"]["error"]["name"] == "libcamera"
        assert plain["type"] == "ModuleNotFoundError" and plain["name"] == "libcamera", plain
        assert probe["with_display_stand_in"] is None
        return
    # trixie: Debian's libcamera bindings load; the import then stops only at pykms (the DRM
    # preview's binding, Raspberry Pi archive only), after libcamera, simplejpeg and prctl.
    assert helpers["libcamera"]["file"].startswith(f"{root}/usr/lib/python3/dist-packages")
    assert plain["type"] == "ModuleNotFoundError" and plain["name"] == "pykms", plain
    loaded = "\n".join(probe["extensions"])
    for extension in ("/libcamera/_libcamera.", "/simplejpeg/_jpeg.", "/_prctl.", "/numpy/_core/"):
        assert extension in loaded, (extension, probe["extensions"])
    # With a display-less pykms the real package imports whole; real libcamera finds no
    # camera, and the appliance's backend says so instead of hanging or crashing.
    stand_in = probe["with_display_stand_in"]
    assert "error" not in stand_in, stand_in
    assert stand_in["file"].startswith(runs.userland.env["camera"])
    assert stand_in["cameras"] == []
    assert stand_in["open"]["type"] == "CameraUnavailable", stand_in
    assert "no camera 0 found (0 connected)" in stand_in["open"]["message"], stand_in
