"""`appliance doctor` rows for the devices: camera, GPIO, printer and CUPS privacy, core dumps.

The doctor may run beside a live daemon, so nothing here opens the camera or claims a pin: it
reports what is configured and whether the device nodes and services it needs are present.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.config import Config
    from appliance.doctor import DoctorRow, Status

_DEV = Path("/dev")


def _camera_row(config: Config) -> tuple[Status, str]:
    camera = config.camera
    backend = camera.backend
    if backend == "picamera2":
        nodes = sorted(str(p) for p in _DEV.glob("media*"))
        return ("ok" if nodes else "fail"), (
            f"picamera2 (libcamera): media devices {', '.join(nodes)}"
            if nodes
            else "picamera2: no /dev/media* node: check the ribbon cable and camera_auto_detect"
        )
    if backend == "opencv":
        device = camera.device
        node = Path(f"/dev/video{device}") if isinstance(device, int) else Path(str(device))
        if isinstance(device, str) and not device.startswith("/dev/"):
            return "info", "opencv with a GStreamer pipeline"
        return ("ok" if node.exists() else "fail"), (
            f"opencv on {node}"
            if node.exists()
            else f"opencv: {node} does not exist: plug the USB camera in or set [camera] device"
        )
    if backend == "folder":
        folder = camera.folder
        count = len(list(folder.iterdir())) if folder is not None and folder.is_dir() else 0
        return ("ok" if count else "warn"), f"folder (demo): {count} files in {folder}"
    return "info", f"{backend}"


def _gpio_row(config: Config) -> tuple[Status, str]:
    buttons = config.buttons
    if not buttons.enabled:
        return "info", "buttons and LEDs disabled"
    if buttons.pin_factory == "mock":
        return "info", "mock pins (demo): buttons are driven from the tablet page"
    chips = sorted(str(p) for p in _DEV.glob("gpiochip*"))
    return ("ok" if chips else "fail"), (
        f"{buttons.pin_factory} on {', '.join(chips)}"
        if chips
        else f"{buttons.pin_factory}: no /dev/gpiochip*: this is not a Pi, use pin_factory = mock"
    )


def device_rows(config: Config) -> Iterator[DoctorRow]:
    from appliance.doctor import DoctorRow

    status, detail = _camera_row(config)
    yield DoctorRow("camera", status, detail)
    status, detail = _gpio_row(config)
    yield DoctorRow("gpio", status, detail)
    printer = config.printer
    if printer.backend != "cups":
        yield DoctorRow("printer", "info", f"{printer.backend} printer")
    else:
        from appliance.devices.printer import open_printer
        from appliance.devices.printer.cups_doctor import cups_privacy_rows
        from appliance.errors import ApplianceError

        try:
            state = open_printer(printer).queue_state()
            verdict: Status = "ok" if state.ok else "warn"
            text = "ready" if state.ok else (state.reason or "not accepting jobs")
            yield DoctorRow("printer", verdict, f"CUPS queue {printer.queue}: {text}")
        except ApplianceError as exc:
            yield DoctorRow("printer", "fail", f"CUPS queue {printer.queue}: {exc}")
        for row in cups_privacy_rows():
            yield DoctorRow(row.name, row.status, row.detail)
    yield DoctorRow(
        "core dumps",
        "info",
        "the daemon turns them off at start (RLIMIT_CORE 0, not dumpable); the unit sets "
        "LimitCORE=0 and systemd-coredump keeps none",
    )
