"""`appliance doctor`: what this device runs on, and whether each part is healthy.

Each check returns a row (name, status, detail); a failing check never stops the others, so the
table always says everything that is wrong at once.
"""

from __future__ import annotations

import importlib.metadata
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.inference.registry import MODELS, verified_model_path

if TYPE_CHECKING:
    from appliance.inference.service import InferenceService

Status = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True)
class DoctorRow:
    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _platform_rows() -> Iterator[DoctorRow]:
    yield DoctorRow("python", "info", f"{platform.python_version()} on {platform.machine()}")
    for package in ("numpy", "opencv-python-headless", "pillow", "cryptography"):
        yield DoctorRow(package, "info", _version(package))


def _model_rows(config: Config) -> Iterator[DoctorRow]:
    for name in MODELS:
        try:
            path = verified_model_path(name, config.inference.models_dir)
        except ApplianceError as exc:
            yield DoctorRow(f"model {name}", "fail", str(exc))
            continue
        yield DoctorRow(f"model {name}", "ok", f"sha256 verified ({path})")


def _inference_rows(config: Config) -> Iterator[DoctorRow]:
    # Imported here: a machine without a runtime still gets the rest of the table.
    from appliance.inference.service import InferenceService

    try:
        service = InferenceService.from_config(config.inference)
    except ApplianceError as exc:
        yield DoctorRow("inference", "fail", str(exc))
        return
    yield from service_rows(config, service)
    for name, model in service.models().items():
        width, height = model.input_size
        probe = np.full((height, width, 3), 128, dtype=np.uint8)
        timings = []
        for _ in range(6):
            start = time.perf_counter()
            model.run(probe)
            timings.append((time.perf_counter() - start) * 1000.0)
        median = statistics.median(timings[1:])
        kind = f"{model.path.name}, {model.inputs[0].dtype} input, {width}x{height}"
        yield DoctorRow(f"latency {name}", "info", f"{median:.1f} ms median invoke ({kind})")
    yield from _untimed_int8_rows(config, service)


def _untimed_int8_rows(config: Config, service: InferenceService) -> Iterator[DoctorRow]:
    """Both timings also where startup took none (the int8 build failed its gate, or the
    config says float): the int8 file is not used, but how fast it would be here is known."""
    from appliance.inference.registry import get_model
    from appliance.inference.runtime import TFLiteModel
    from appliance.inference.variants import median_invoke_ms, read_manifest, verify_int8

    directory = config.inference.models_dir
    try:
        builds = read_manifest(directory)
        bad = {file for file, problem in verify_int8(directory) if problem}
    except ApplianceError:
        return
    for name, model in service.models().items():
        choice, build = service.variants.get(name), builds.get(name)
        if choice is None or choice.int8_ms is not None or build is None or build.file in bad:
            continue
        spec = get_model(name)
        try:
            int8 = TFLiteModel(
                directory / build.file,
                service.backend,
                service.accelerator,
                num_threads=config.inference.num_threads,
                input_range=(spec.input_min, spec.input_max),
            )
        except ApplianceError as exc:
            yield DoctorRow(f"int8 timing {name}", "info", f"the int8 file does not load: {exc}")
            continue
        use = "used" if choice.variant == "int8" else "not used"
        yield DoctorRow(
            f"int8 timing {name}",
            "info",
            f"float {median_invoke_ms(model):.2f} ms, int8 {median_invoke_ms(int8):.2f} ms "
            f"median invoke here (the int8 file is {use}: {choice.variant} runs)",
        )


def service_rows(config: Config, service: InferenceService) -> Iterator[DoctorRow]:
    """What a loaded inference service runs on, and why."""
    yield DoctorRow("runtime", "ok", f"{service.backend.name} {service.backend.version}")
    choice = service.accelerator
    detail = f"{choice.name} ({choice.reason})"
    for name, why in choice.rejected:
        detail += f"; {name} not used: {why}"
    yield DoctorRow("accelerator", "ok", detail)
    yield DoctorRow("threads", "info", str(config.inference.num_threads))
    for name, picked in service.variants.items():
        yield DoctorRow(f"variant {name}", "info", f"{picked.variant}: {picked.reason}")
        yield DoctorRow(f"timing {name}", "info", picked.timings())
        if picked.runs_on:
            yield DoctorRow(f"runs on {name}", "info", picked.runs_on)
    yield from int8_build_rows(config)


def int8_build_rows(config: Config) -> Iterator[DoctorRow]:
    """Whether the int8 builds are present and what their gate said, per model."""
    from appliance.inference.variants import read_manifest, verify_int8

    directory = config.inference.models_dir
    try:
        builds = read_manifest(directory)
        problems = {file: why for file, why in verify_int8(directory) if why}
    except ApplianceError as exc:
        yield DoctorRow("int8 builds", "warn", str(exc))
        return
    if not builds:
        yield DoctorRow("int8 builds", "warn", f"none in {directory}: run `appliance models build`")
        return
    passed = sum(b.passed for b in builds.values())
    yield DoctorRow(
        "int8 builds",
        "warn" if problems else "ok",
        f"{len(builds)} present in {directory}, {passed} passed the accuracy gate"
        + (f"; {len(problems)} files do not verify" if problems else ""),
    )
    for name, build in builds.items():
        trouble = problems.get(build.file)
        status: Status = "warn" if trouble else "info"
        verdict = build.gate_summary()  # "passed: ..." or "FAILED: ..., by how much"
        yield DoctorRow(f"int8 {name}", status, f"{trouble}; {verdict}" if trouble else verdict)


Check = Callable[[Config], Iterator[DoctorRow]]


def _extra_checks() -> list[Check]:
    """Checks owned by later layers (workspace, devices), each in its own module."""
    from appliance.devices.doctor import device_rows
    from appliance.session.hardening import doctor_rows as session_rows
    from appliance.web.vendor_js import doctor_rows as customer_page_rows

    return [session_rows, device_rows, customer_page_rows]


def run_checks(config: Config) -> list[DoctorRow]:
    rows = list(_platform_rows())
    for check in (_model_rows, _inference_rows, *_extra_checks()):
        try:
            rows.extend(check(config))
        except Exception as exc:
            rows.append(DoctorRow(getattr(check, "__name__", "check"), "fail", repr(exc)[:300]))
    return rows


def live_rows(config: Config, service: InferenceService) -> list[DoctorRow]:
    """The doctor table for a running daemon: its own loaded models, no second load and no
    timing probes (for the admin page)."""
    rows = list(_platform_rows())
    rows.extend(service_rows(config, service))
    for check in _extra_checks():
        try:
            rows.extend(check(config))
        except Exception as exc:
            rows.append(DoctorRow(getattr(check, "__name__", "check"), "fail", repr(exc)[:300]))
    return rows


def format_table(rows: list[DoctorRow]) -> str:
    width = max(len(row.name) for row in rows)
    return "\n".join(f"{row.status.upper():<5} {row.name:<{width}}  {row.detail}" for row in rows)
