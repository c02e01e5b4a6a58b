"""What the web layer needs from the rest of the appliance, bundled by the daemon.

The device contracts are typed structurally (Protocols) with the method names of
``appliance.devices``, so the real backends, the fakes and the tests' doubles all fit without
the web layer importing a backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from appliance.config import Config
from appliance.idphoto.pipeline import Product, ProductRequest
from appliance.session.audit import AuditLog
from appliance.session.lifecycle import SessionManager
from appliance.session.state import Session
from appliance.studio import DeviceUnavailableError, Studio
from appliance.web.addresses import PublicAddress
from appliance.web.settings import WebSettings
from appliance.web.users import UserStore


class Camera(Protocol):
    def open(self) -> None: ...
    def capture(self) -> bytes: ...
    def frames(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class Printer(Protocol):
    def submit(self, sheet: bytes, copies: int, media: str) -> str: ...
    def status(self, job: str) -> Any: ...
    def queue_state(self) -> Any: ...
    def resume(self) -> Any: ...
    def purge(self, job: str) -> Any: ...


class Pipeline(Protocol):
    def process(self, data: bytes, request: ProductRequest) -> Product: ...


# Returns a doctor-like mapping (JSON-ready): accelerator, models, anything the daemon knows.
StatusProvider = Callable[[], Mapping[str, Any]]
# Returns an iterator of preview JPEG frames; closing the iterator releases the camera stream.
PreviewSource = Callable[[], Iterator[bytes]]


@dataclass
class WebServices:
    """Built once by the daemon (composition root) and handed to :func:`create_app`."""

    config: Config
    sessions: SessionManager
    pipeline: Pipeline
    audit: AuditLog
    users: UserStore
    camera: Camera | None = None
    printer: Printer | None = None
    status: StatusProvider | None = None
    preview: PreviewSource | None = None
    settings: WebSettings = field(default_factory=WebSettings)
    # Demo only (mock pins): press a booth button by name, holding it for some seconds.
    buttons: Callable[[str, float], None] | None = None
    # The actions the API and the buttons share; made from the parts above when not given.
    studio: Studio | None = None
    # Where phones and kiosks reach the appliance; set by the WebServer once it listens
    # (appliance.web.addresses). None: from the config (test clients).
    public_address: Callable[[], PublicAddress] | None = None

    def __post_init__(self) -> None:
        if self.studio is None:
            self.studio = Studio(
                sessions=self.sessions,
                pipeline=self.pipeline,
                audit=self.audit,
                camera=self.camera,
                printer=self.printer,
                imaging=self.config.imaging,
            )

    @property
    def actions(self) -> Studio:
        assert self.studio is not None  # set in __post_init__
        return self.studio

    @classmethod
    def build(cls, config: Config, **parts: Any) -> WebServices:
        """Like the constructor, with ``settings`` read from ``config`` unless given."""
        parts.setdefault("settings", WebSettings.from_config(config))
        return cls(config=config, **parts)


def purge_print_jobs(printer: Printer) -> Callable[[Session], None]:
    """A SessionManager wipe hook that cancels and purges the session's print jobs
    (privacy invariant 3): ``sessions.add_wipe_hook(purge_print_jobs(printer))``."""

    def hook(session: Session) -> None:
        failures = 0
        for job in session.print_jobs:
            try:
                printer.purge(job)
            except Exception:
                failures += 1
        if failures:
            raise DeviceUnavailableError(f"{failures} print job(s) could not be purged")

    return hook


def jsonable(value: Any) -> Any:
    """A device's status object as JSON-ready data (dicts, dataclasses, enums, plain values)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    if hasattr(value, "__dataclass_fields__"):
        return {name: jsonable(getattr(value, name)) for name in value.__dataclass_fields__}
    enum_value = getattr(value, "value", None)
    if enum_value is not None and isinstance(enum_value, str | int):
        return enum_value
    return str(value)
