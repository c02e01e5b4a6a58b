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
