"""The studio's actions, shared by the tablet page, the REST API and the physical buttons.

Every way of driving the appliance (a tap, an API call, a button press) goes through these
methods, so they behave the same and are audited the same. A *desk* is the session one booth
is working on right now: what its customer screen (a paired kiosk bound to that desk) shows.
Each operator starts sessions on their own desk, so two operators never show each other's
customer; the physical buttons act on the ``booth`` desk.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from appliance.config import ImagingConfig
from appliance.devices.buttons import ApplianceStatus
from appliance.errors import ApplianceError
from appliance.idphoto.pipeline import Product, ProductRequest
from appliance.imaging.decode import check_decodable
from appliance.session.audit import AuditLog
from appliance.session.lifecycle import SessionManager
from appliance.session.state import (
    ItemNotFoundError,
    Session,
    SessionState,
    SessionStateError,
    StoredItem,
    WipeReason,
)

# The usual way through a session; steps are only ever taken forwards along it.
ORDER = (
    SessionState.STARTED,
    SessionState.CONSENTED,
    SessionState.CAPTURING,
    SessionState.REVIEWING,
    SessionState.DELIVERING,
)


class DeviceUnavailableError(ApplianceError, RuntimeError):
    """The camera or printer this action needs is not configured or not answering."""


class NothingToDoError(ApplianceError, LookupError):
    """A button was pressed with nothing for it to act on (no session, no result yet)."""


DEFAULT_DESK = "booth"


@dataclass(frozen=True)
class Desk:
    """What the booth is working on: the current session, product and download link."""

    session_id: str | None = None
    product_id: str | None = None
    link_url: str | None = None
    link_token: str | None = None


@dataclass
class Studio:
    sessions: SessionManager
    pipeline: Any  # IdPhotoPipeline (or anything with .process(bytes, ProductRequest))
    audit: AuditLog
    camera: Any = None  # appliance.devices.camera.Camera
    printer: Any = None  # appliance.devices.printer.Printer
    defaults: Callable[[], tuple[str, str]] = field(default=lambda: ("icao-35x45", "4x6"))
    on_status: Callable[[ApplianceStatus], None] | None = None
    desks: dict[str, Desk] = field(default_factory=dict)
    # Limits an upload is checked against (from its header) before it is stored.
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    # One photo is processed at a time: the models use every core already.
    pipeline_lock: threading.Lock = field(default_factory=threading.Lock)
    _desk_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the desk ---------------------------------------------------------------------------

    @property
    def desk(self) -> Desk:
        """The booth's desk: what the physical buttons act on."""
        return self.desk_for(DEFAULT_DESK)

    def desk_for(self, desk_id: str) -> Desk:
        with self._desk_lock:
            return self.desks.get(desk_id, Desk())

    def update_desk(self, session_id: str, **changes: str | None) -> None:
        """Change what the desk showing ``session_id`` shows (no desk shows it: nothing)."""
        with self._desk_lock:
            for desk_id, desk in self.desks.items():
                if desk.session_id == session_id:
                    self.desks[desk_id] = replace(desk, **changes)

    def clear_desk(self, session_id: str) -> None:
        with self._desk_lock:
            for desk_id, desk in list(self.desks.items()):
                if desk.session_id == session_id:
                    del self.desks[desk_id]

    def _status(self, status: ApplianceStatus) -> None:
        if self.on_status is not None:
            self.on_status(status)

    # --- states ---------------------------------------------------------------------------------

    def session(self, session_id: str) -> Session:
        return self.sessions.get(session_id)

    def advance(self, session_id: str, target: SessionState, actor: str) -> None:
        """Step forward along ORDER until `target` (never backwards)."""
        state = self.session(session_id).state
        if state not in ORDER or ORDER.index(state) >= ORDER.index(target):
            return
        for step in ORDER[ORDER.index(state) + 1 : ORDER.index(target) + 1]:
            self.sessions.transition(session_id, step, actor=actor)

    def back_to_capturing(self, session_id: str, actor: str) -> None:
        """A new photo after a result is a retake: delivering -> reviewing -> capturing."""
        path = {
            SessionState.REVIEWING: (SessionState.CAPTURING,),
            SessionState.DELIVERING: (SessionState.REVIEWING, SessionState.CAPTURING),
        }.get(self.session(session_id).state, ())
        for step in path:
            self.sessions.transition(session_id, step, actor=actor)

    # --- actions --------------------------------------------------------------------------------

    def start(self, actor: str, desk: str = DEFAULT_DESK) -> Session:
        session = self.sessions.create(actor=actor)
        with self._desk_lock:
            self.desks[desk] = Desk(session_id=session.session_id)
        return session

    def consent(self, session_id: str, actor: str) -> Session:
        if self.session(session_id).state is SessionState.STARTED:
            self.advance(session_id, SessionState.CAPTURING, actor)
        return self.session(session_id)

    def capture(self, session_id: str, actor: str) -> StoredItem:
        if self.camera is None:
            raise DeviceUnavailableError("No camera is configured: upload a photo instead.")
        self.session(session_id)
        self.back_to_capturing(session_id, actor)
        try:
            data = self.camera.capture()
        except ApplianceError:
            raise
        except Exception as error:
            raise DeviceUnavailableError(
                "The camera did not deliver a photo: try again."
            ) from error
        return self.sessions.add_photo(session_id, data, {"source": "camera"})

    def upload(self, session_id: str, data: bytes, actor: str) -> StoredItem:
        """Store a photo from outside (tablet, API, hot folder): one no decode could handle
        within the memory budget (a bomb, a 64 MP PNG on a small board) is refused here,
        from its header, before it reaches the workspace."""
        self.session(session_id)
        imaging = self.imaging
        check_decodable(
            data,
            max_pixels=imaging.max_pixels,
            max_bytes=imaging.decode_budget_bytes,
            max_side=imaging.analysis_max_side,
        )
        self.back_to_capturing(session_id, actor)
        return self.sessions.add_photo(session_id, data, {"source": "upload"})

    def make_product(
        self, session_id: str, photo_id: str, wanted: ProductRequest, actor: str
    ) -> tuple[str, dict[str, Any]]:
        spec, paper = self.defaults()
        if wanted.portrait is None and wanted.spec_id is None:
            wanted = replace(wanted, spec_id=spec)
        if not wanted.paper:
            wanted = replace(wanted, paper=paper)
        photo = self.sessions.read_photo(session_id, photo_id)
        self._status(ApplianceStatus.BUSY)
        try:
            with self.pipeline_lock:
                product: Product = self.pipeline.process(photo, wanted)
        except ApplianceError:
            self._status(ApplianceStatus.ATTENTION)
            raise
        label = wanted.spec_id if wanted.portrait is None else f"portrait-{wanted.portrait}"
        digital = self.sessions.add_product(
            session_id, product.digital, {"kind": "digital", "spec": str(label),
                                          "paper": wanted.paper or paper},
        )  # fmt: skip
        product_id = digital.item_id
        report = json.dumps(product.report, default=str).encode("utf-8")
        extra = [("preview", product.preview), ("report", report)]
        if product.sheet is not None:
            extra.append(("sheet", product.sheet))
        for kind, data in extra:
            self.sessions.add_product(session_id, data, {"kind": kind, "product": product_id})
        self.advance(session_id, SessionState.REVIEWING, actor)
        self.update_desk(session_id, product_id=product_id, link_url=None, link_token=None)
        self._status(ApplianceStatus.READY)
        return product_id, json.loads(report)

    def product_items(self, session_id: str, product_id: str) -> dict[str, StoredItem]:
        session = self.session(session_id)
        digital = session.product(product_id)
        if digital.metadata.get("kind") != "digital":
            raise ItemNotFoundError(f"no product {product_id} in this session")
        items = {"digital": digital}
        for item in session.products.values():
            if item.metadata.get("product") == product_id:
                items[str(item.metadata["kind"])] = item
        return items

    def read_item(self, session_id: str, product_id: str, kind: str) -> bytes:
        items = self.product_items(session_id, product_id)
        if kind not in items:
            raise ItemNotFoundError(f"this product has no {kind}")
        return self.sessions.read_product(session_id, items[kind].item_id)

    def print_product(self, session_id: str, product_id: str, copies: int, actor: str) -> str:
        if self.printer is None:
            raise DeviceUnavailableError("No printer is configured.")
        items = self.product_items(session_id, product_id)
        if "sheet" not in items:
            raise SessionStateError("this product has no print sheet")
        sheet = self.sessions.read_product(session_id, items["sheet"].item_id)
        self.advance(session_id, SessionState.DELIVERING, actor)
        media = str(items["digital"].metadata.get("paper", "4x6"))
        token = PRINTING_SESSION.set(session_id)
        try:
            job_id = str(self.printer.submit(sheet, copies, media))
        except ApplianceError:
            self._status(ApplianceStatus.ATTENTION)
            raise
        except Exception as error:
            raise DeviceUnavailableError("The printer did not take the job: check it.") from error
        finally:
            PRINTING_SESSION.reset(token)
        self.sessions.add_print_job(session_id, job_id)
        self.audit.record("print.submitted", actor=actor, session=session_id, copies=copies)
        return job_id

    def delete_now(self, session_id: str, actor: str) -> None:
        """The customer's "Delete my photos now": the one wipe, at once, whatever the state."""
        self.sessions.wipe(session_id, WipeReason.CUSTOMER_REQUEST, actor=actor)
        self.clear_desk(session_id)

    def finish(self, session_id: str, actor: str, *, wipe: bool = False) -> str:
        """End the session: wipe now, or keep it for its download window when a link is out."""
        if wipe or self.session(session_id).state is not SessionState.DELIVERING:
            self.sessions.wipe(session_id, WipeReason.OPERATOR, actor=actor)
        else:
            self.sessions.finish(session_id, actor=actor)
        self.clear_desk(session_id)
        found = self.sessions.find(session_id)
        return found.state.value if found else "wiped"

    def store_printed(self, sheet: bytes) -> str:
        """The demo file printer's store: the sheet, encrypted, in the printing session."""
        session_id = PRINTING_SESSION.get()
        if session_id is None:
            raise DeviceUnavailableError("the file printer prints only from a session")
        item = self.sessions.add_product(session_id, sheet, {"kind": "printed"})
        return item.item_id


# Which session the printer is printing for, for the demo printer's store (set per call).
PRINTING_SESSION: ContextVar[str | None] = ContextVar("printing_session", default=None)


class BoothButtons:
    """The physical buttons' actions: the same Studio calls the tablet makes, on the desk."""

    ACTOR = "button:{name}"

    def __init__(self, studio: Studio) -> None:
        self.studio = studio

    def _session(self) -> str:
        session_id = self.studio.desk.session_id
        if session_id is None or self.studio.sessions.find(session_id) is None:
            self.studio._status(ApplianceStatus.ATTENTION)
            raise NothingToDoError("no session on the desk: start one on the tablet first")
        return session_id

    def capture(self) -> None:
        session_id = self._session()
        if self.studio.session(session_id).state is SessionState.STARTED:
            # Consent is given on the customer screen, never by a button.
            self.studio._status(ApplianceStatus.ATTENTION)
            raise NothingToDoError("the customer has not accepted the notice yet")
        actor = self.ACTOR.format(name="capture")
        photo = self.studio.capture(session_id, actor)
        self.studio.make_product(session_id, photo.item_id, ProductRequest(paper=""), actor)

    def print(self) -> None:
        session_id = self._session()
        product_id = self.studio.desk.product_id
        if product_id is None:
            self.studio._status(ApplianceStatus.ATTENTION)
            raise NothingToDoError("nothing to print yet: capture first")
        self.studio.print_product(session_id, product_id, 1, self.ACTOR.format(name="print"))

    def finish(self) -> None:
        session_id = self._session()
        self.studio.finish(session_id, self.ACTOR.format(name="finish"), wipe=True)
