"""Config sections for the devices and the hot folder: ``[camera]``, ``[buttons]``,
``[printer]`` and ``[hotfolder]``.

Same rules as :mod:`appliance.config`: unknown keys are refused, values are range-checked,
the defaults run on a laptop (fake camera, mock pins, fake printer, hot folder off).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# "name" of a built-in backend, or "package.module:Class" for one outside the tree.
_BACKEND_PATTERN = r"^([a-z0-9_]+|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"

# PWG 5101.1 self-describing media names, which CUPS maps onto any driver's page sizes
# (PPD, IPP Everywhere or raw): class_name_WIDTHxHEIGHTunit.
PWG_MEDIA_PATTERN = re.compile(r"^[a-z0-9]+_[a-z0-9.-]+_\d+(\.\d+)?x\d+(\.\d+)?(in|mm)$")
DEFAULT_MEDIA: dict[str, str] = {
    "4x6": "na_index-4x6_4x6in",
    "5x7": "na_5x7_5x7in",
    "a6": "iso_a6_105x148mm",
    "a4": "iso_a4_210x297mm",
}
# A CUPS destination name: printable, no space, slash, comma or '#' (CUPS refuses those).
_QUEUE_PATTERN = r"^[A-Za-z0-9_.-]{1,127}$"
# One lp "-o" option: name=value with no spaces (lp splits its -o argument on spaces).
_LP_OPTION_PATTERN = re.compile(r"^[a-z][a-z0-9-]*=[A-Za-z0-9_.,:-]+$")

# BCM number, or a gpiozero pin name such as "GPIO17", "BOARD11" or "J8:11".
Pin = Annotated[int | str, Field(union_mode="left_to_right")]
_PIN_NAME = re.compile(r"^(GPIO|BCM|BOARD|WPI|J8:|P1:)?\d{1,2}$")


def default_hotfolder_dir() -> Path:
    """A tmpfs on a laptop: $XDG_RUNTIME_DIR when set, else /dev/shm (as the workspace)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path("/dev/shm")  # noqa: S108 - tmpfs, by design
    return base / "appliance-hotfolder"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CameraConfig(_Section):
    # "picamera2" | "opencv" | "folder" | "fake" | "gphoto2" | "module:Class"
    backend: str = Field(default="fake", pattern=_BACKEND_PATTERN)
    # picamera2: camera number; opencv: V4L2 index, /dev/videoN, or a GStreamer pipeline
    # (Jetson CSI); gphoto2: a --port value such as "usb:001,004" ("" = first camera).
    device: int | str = 0
    # Still size; unset = the sensor's full resolution (picamera2) or 1920x1080 (opencv).
    width: int | None = Field(default=None, ge=64, le=16384)
    height: int | None = Field(default=None, ge=64, le=16384)
    preview_width: int = Field(default=640, ge=64, le=1920)
    preview_height: int = Field(default=480, ge=64, le=1080)
    preview_fps: float = Field(default=10.0, ge=0.5, le=30.0)
    # Stop producing preview frames when nobody has watched for this long.
    preview_idle_s: float = Field(default=5.0, ge=0.5, le=300.0)
    jpeg_quality: int = Field(default=92, ge=50, le=100)
    preview_quality: int = Field(default=70, ge=20, le=95)
    autofocus: bool = True
    # Demo backend: the folder whose images it cycles through.
    folder: Path | None = None
    capture_timeout_s: float = Field(default=10.0, gt=0.0, le=120.0)
    # Reconnect after the camera disappears: wait initial, then double, up to max.
    reconnect_initial_s: float = Field(default=0.5, gt=0.0, le=60.0)
    reconnect_max_s: float = Field(default=30.0, gt=0.0, le=600.0)

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        if (self.width is None) != (self.height is None):
            raise ValueError("set both width and height, or neither (full sensor resolution)")
        if self.backend == "folder" and self.folder is None:
            raise ValueError('backend "folder" needs folder = "/path/to/images"')
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self


class ButtonsConfig(_Section):
    enabled: bool = True
    # gpiozero pin factory: "mock" (laptop, demo) | "lgpio" (Pi 5 / Bookworm) | "rpigpio" |
    # "pigpio" | "native" | "module:Class".
    pin_factory: str = Field(default="mock", pattern=_BACKEND_PATTERN)
    # Buttons wired between the pin and ground (pull_up = true). Unset = no such button.
    capture_pin: Pin | None = 17
    print_pin: Pin | None = 27
    finish_pin: Pin | None = 22
    pull_up: bool = True
    bounce_time_s: float = Field(default=0.05, ge=0.0, le=1.0)
    # Finish wipes the session: it needs a deliberate hold, so a brush cannot wipe.
    finish_hold_s: float = Field(default=2.0, ge=0.5, le=10.0)
    led_ready_pin: Pin | None = 5
    led_busy_pin: Pin | None = 6
    led_attention_pin: Pin | None = 13
    led_error_pin: Pin | None = 19
    led_active_high: bool = True
    # One common-cathode RGB LED (red, green, blue pins) instead of, or beside, the four.
    rgb_led_pins: tuple[Pin, Pin, Pin] | None = None

    @field_validator(
        "capture_pin",
        "print_pin",
        "finish_pin",
        "led_ready_pin",
        "led_busy_pin",
        "led_attention_pin",
        "led_error_pin",
    )
    @classmethod
    def _pin_shape(cls, value: int | str | None) -> int | str | None:
        return None if value is None else _check_pin(value)

    @field_validator("rgb_led_pins")
    @classmethod
    def _rgb_shape(
        cls, value: tuple[int | str, int | str, int | str] | None
    ) -> tuple[int | str, int | str, int | str] | None:
        if value is None:
            return None
        red, green, blue = (_check_pin(pin) for pin in value)
        return (red, green, blue)

    @model_validator(mode="after")
    def _pins_distinct(self) -> ButtonsConfig:
        pins = [
            self.capture_pin,
            self.print_pin,
            self.finish_pin,
            self.led_ready_pin,
            self.led_busy_pin,
            self.led_attention_pin,
            self.led_error_pin,
            *(self.rgb_led_pins or ()),
        ]
        seen: set[str] = set()
        for pin in pins:
            if pin is None:
                continue
            key = str(pin).upper().removeprefix("GPIO").removeprefix("BCM")
            if key in seen:
                raise ValueError(f"pin {pin} is assigned twice: each button and LED needs its own")
            seen.add(key)
        return self


def _check_pin(value: int | str) -> int | str:
    if isinstance(value, int):
        if not 0 <= value <= 53:
            raise ValueError(f"BCM pin {value} does not exist (0-53)")
        return value
    if not _PIN_NAME.match(value):
        raise ValueError(f"{value!r} is not a pin: use a BCM number or a name such as 'GPIO17'")
    return value


class PrinterConfig(_Section):
    # "cups" | "file" (demo: sheets into the session workspace) | "fake" | "module:Class"
    backend: str = Field(default="fake", pattern=_BACKEND_PATTERN)
    # The CUPS destination (lpadmin -p NAME).
    queue: str = Field(default="studio", pattern=_QUEUE_PATTERN)
    # CUPS server for the client tools ("host:port" or a socket path); unset = the local
    # default (/run/cups/cups.sock). Passed as CUPS_SERVER to the tools only.
    server: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.:/\[\]-]{1,255}$")
    timeout_s: float = Field(default=30.0, ge=1.0, le=300.0)
    max_copies: int = Field(default=10, ge=1, le=99)
    # Paper (product.default_paper and the sheet layouts) -> PWG media name sent to CUPS.
    media: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_MEDIA))
    # Extra lp -o options for the studio printer's driver, e.g. ["print-scaling=none"].
    extra_options: tuple[str, ...] = ()

    @field_validator("media")
    @classmethod
    def _media_names(cls, value: dict[str, str]) -> dict[str, str]:
        for paper, name in value.items():
            if not PWG_MEDIA_PATTERN.match(name):
                raise ValueError(
                    f"media for {paper!r} is {name!r}: use a PWG name such as "
                    "'na_index-4x6_4x6in' or 'iso_a6_105x148mm'"
                )
        return {**DEFAULT_MEDIA, **value}

    @field_validator("extra_options")
    @classmethod
    def _lp_options(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for option in value:
            if not _LP_OPTION_PATTERN.match(option) or option.startswith("media="):
                raise ValueError(
                    f"{option!r} is not a single lp option: use name=value without spaces "
                    "(media is set per print from the paper)"
                )
        return value


class HotFolderConfig(_Section):
    enabled: bool = False
    # Must be a tmpfs: plaintext photos wait here until they are taken into the workspace.
    path: Path = Field(default_factory=default_hotfolder_dir)
    poll_interval_s: float = Field(default=0.5, ge=0.05, le=10.0)
    # Larger files are deleted unread and reported.
    max_bytes: int = Field(default=40 * 1024 * 1024, ge=1024 * 1024, le=512 * 1024 * 1024)
    # Also wait while a process holds the file open for writing (looks in /proc/*/fd).
    check_writers: bool = True
