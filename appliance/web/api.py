"""REST API under /api/v1: sessions, photos, products, printing, download links, status.

Views are registered from :data:`appliance.web.openapi.ROUTES`. A product is stored as up to four
encrypted items in the session workspace: the digital file (its id is the product id) plus the
sheet, the guide-line preview and the JSON report, each tagged with that id in its metadata, so
the wipe takes all of them and nothing of a product lives outside the workspace.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import segno
from flask import Blueprint, Response, jsonify, request, url_for
from pydantic import BaseModel, ValidationError

from appliance.idphoto.pipeline import ProductRequest
from appliance.idphoto.specs import list_specs
from appliance.session.state import ItemNotFoundError, Session, SessionState, SessionStateError
from appliance.studio import Studio
from appliance.web.context import web_context
from appliance.web.customer import link_path
from appliance.web.openapi import (
    ROUTES,
    ButtonBody,
    FinishBody,
    LinkBody,
    PrintBody,
    ProductBody,
    SessionBody,
)
from appliance.web.openapi import openapi_document as build_document
from appliance.web.problems import WebError
from appliance.web.sealed import Sealed, SealedFile, seal
from appliance.web.security import identity
from appliance.web.services import DeviceUnavailableError, jsonable

bp = Blueprint("api", __name__)

Body = TypeVar("Body", bound=BaseModel)
_PREFIXES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*")  # JPEG PNG TIFF
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}


def _body(model: type[Body]) -> Body:
    raw = request.get_json(silent=True) if request.content_length else {}
    if raw is None:
        raise WebError(400, "bad_request", "The body must be a JSON object.")
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        # Field names and pydantic's rule text only: never echo the value (or an unknown key)
        # that was sent.
        problems = "; ".join(_problem(e) for e in error.errors())
        raise WebError(400, "bad_request", f"Invalid request body ({problems}).") from None


def _problem(error: Any) -> str:
    location = [str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":  # the last part is the caller's own key
        return ".".join([*location[:-1], "(unknown field)"])
    return f"{'.'.join(location) or 'body'}: {error['msg']}"


def _actor() -> str:
    return identity().actor


def _session(session_id: str) -> Session:
    return web_context().services.sessions.get(session_id)


def _studio() -> Studio:
    return web_context().services.actions


def _read_item(session_id: str, product_id: str, kind: str) -> bytes:
    try:
        return _studio().read_item(session_id, product_id, kind)
    except ItemNotFoundError:
        if kind == "digital":
            raise
        raise WebError(404, "not_found", f"This product has no {kind}.") from None


def looks_like_image(data: bytes) -> bool:
    """Magic numbers of the formats the decoder reads (JPEG, PNG, TIFF, WebP, HEIC)."""
    if data.startswith(_PREFIXES):
        return True
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def _uploaded_image() -> bytes:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("photo")
        if upload is None:
            raise WebError(400, "bad_request", "Send the photo in the multipart field 'photo'.")
        data = upload.read()
        declared = upload.mimetype or "application/octet-stream"
    else:
        declared = request.mimetype
        data = request.get_data(cache=False)
    if not data:
        raise WebError(400, "bad_request", "The upload is empty.")
    if not declared.startswith("image/") and declared != "application/octet-stream":
        raise WebError(415, "unsupported_media_type", "Send a photo (image/jpeg, image/png ...).")
    if not looks_like_image(data):
        raise WebError(
            415, "unsupported_media_type", "That file is not a JPEG, PNG, TIFF, WebP or HEIC photo."
        )
    return data


def _iso(seconds_from_now: float) -> str:
    moment = datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- views -----------------------------------------------------------------------------------


def create_session() -> tuple[Response, int]:
    body = _body(SessionBody)
    session = _studio().start(_actor(), body.desk)
    return jsonify(id=session.session_id, state=session.state.value), 201


def session_json(session: Session) -> dict[str, Any]:
    products = [
        {
            "id": item.item_id,
            "spec": item.metadata.get("spec"),
            "paper": item.metadata.get("paper"),
        }
        for item in session.products.values()
        if item.metadata.get("kind") == "digital"
    ]
    return {
        "id": session.session_id,
        "state": session.state.value,
        "photos": list(session.photos),
        "products": products,
        "print_jobs": len(session.print_jobs),
    }


def get_session(session_id: str) -> Response:
    return jsonify(session_json(_session(session_id)))


def consent(session_id: str) -> Response:
    session = _studio().consent(session_id, _actor())
    return jsonify(id=session_id, state=session.state.value)


def capture(session_id: str) -> tuple[Response, int]:
    photo = _studio().capture(session_id, _actor())
    return jsonify(photo_id=photo.item_id), 201


def upload_photo(session_id: str) -> tuple[Response, int]:
    _session(session_id)  # 404 before reading the body
    photo = _studio().upload(session_id, _uploaded_image(), _actor())
    return jsonify(photo_id=photo.item_id), 201


def make_product(session_id: str, photo_id: str) -> tuple[Response, int]:
    body = _body(ProductBody)
    wanted = ProductRequest(
        spec_id=body.spec, background=body.background, paper=body.sheet or "",
        portrait=body.portrait, religious_covering=body.religious_covering,
    )  # fmt: skip
    product_id, report = _studio().make_product(session_id, photo_id, wanted, _actor())
    return jsonify(product_id=product_id, report=report), 201


def product_report(session_id: str, product_id: str) -> Response:
    report = json.loads(_read_item(session_id, product_id, "report"))
    return jsonify(product_id=product_id, report=report)


def product_file(session_id: str, product_id: str, variant: str) -> Response:
    data = _read_item(session_id, product_id, variant)
    response = Response(data, mimetype="image/jpeg")
    response.headers["Content-Disposition"] = f'inline; filename="{variant}.jpg"'
    response.headers["Cache-Control"] = "no-store"
    return response


def print_product(session_id: str) -> tuple[Response, int]:
    body = _body(PrintBody)
    try:
        job_id = _studio().print_product(session_id, body.product_id, body.copies, _actor())
    except SessionStateError as error:
        raise WebError(400, "bad_request", "This product has no print sheet.") from error
    return jsonify(job_id=job_id), 201


def print_job(job_id: str) -> Response:
    printer = web_context().services.printer
    if printer is None:
        raise DeviceUnavailableError("No printer is configured.")
    try:
        state = printer.status(job_id)
    except LookupError:
        raise WebError(404, "not_found", "No such print job.") from None
    return jsonify(job_id=job_id, status=jsonable(state))


def qr_svg(url: str) -> str:
    stream = io.BytesIO()
    segno.make(url, error="m").save(
        stream, kind="svg", scale=6, border=2, xmldecl=False, svgns=True, nl=False
    )
    return stream.getvalue().decode("utf-8")


def download_link(session_id: str) -> tuple[Response, int]:
    """A sealed link (see appliance.web.sealed): the photo and the print sheet, encrypted under
    a key that is only in the URL's fragment; the URL names the configured host, never Host."""
    body = _body(LinkBody)
    context = web_context()
    studio = _studio()
    items = studio.product_items(session_id, body.product_id)
    studio.advance(session_id, SessionState.DELIVERING, _actor())
    files = [SealedFile("digital", "id-photo.jpg", _read_item(session_id, body.product_id,
                                                              "digital"))]  # fmt: skip
    if "sheet" in items:
        files.append(SealedFile("sheet", "print-sheet.jpg",
                                _read_item(session_id, body.product_id, "sheet")))  # fmt: skip
    sealed: list[Sealed] = []

    def seal_for(token: str) -> tuple[bytes, bytes]:
        sealed.append(seal(token, files))
        return sealed[0].blob, sealed[0].delete_digest

    uses = context.settings.link_uses
    link = context.services.sessions.create_link(
        session_id, body.product_id, uses=uses, actor=_actor(), seal=seal_for
    )
    url = context.address.http(link_path(link.token)) + "#" + sealed[0].fragment
    studio.update_desk(session_id, link_url=url, link_token=link.token)
    window = context.services.sessions.retention.download_window_s
    return jsonify(
        url=url, qr_svg=qr_svg(url), expires_at=_iso(window), uses=uses,
        files=[f.kind for f in files],
    ), 201  # fmt: skip


def finish(session_id: str) -> Response:
    body = _body(FinishBody)
    state = _studio().finish(session_id, _actor(), wipe=body.wipe)
    return jsonify(id=session_id, state=state)


def press_button(button: str) -> tuple[Response, int]:
    body = _body(ButtonBody)
    press = web_context().services.buttons
    if press is None:
        raise DeviceUnavailableError("The buttons are real GPIO pins here: press them.")
    if button not in ("capture", "print", "finish"):
        raise WebError(400, "bad_request", "The buttons are capture, print and finish.")
    press(button, body.hold_s)
    return jsonify(button=button, hold_s=body.hold_s), 202


def status() -> Response:
    return jsonify(status_json())


def status_json() -> dict[str, Any]:
    services = web_context().services
    workspace = services.sessions.workspace
    printer: dict[str, Any] = {"configured": services.printer is not None}
    if services.printer is not None:
        try:
            printer["queue"] = jsonable(services.printer.queue_state())
        except Exception:
            printer["error"] = "The printer does not answer."
    camera: dict[str, Any] = {"configured": services.camera is not None}
    state = getattr(services.camera, "state", None)  # ReconnectingCamera: ready or why not
    if state is not None:
        with contextlib.suppress(Exception):
            camera["state"] = jsonable(state() if callable(state) else state)
    result: dict[str, Any] = {
        "camera": camera,
        "preview": services.preview is not None,
        "printer": printer,
        "workspace": {
            "used_bytes": workspace.usage(),
            "max_bytes": workspace.max_bytes,
            "sessions": len(services.sessions.sessions()),
            # Held or promised (each open session counts as at least its reserve): a new
            # session is admitted while a reserve still fits.
            "committed_bytes": workspace.committed(),
            "session_max_bytes": workspace.session_max_bytes,
            "session_reserve_bytes": workspace.session_reserve_bytes,
            "room_for_a_new_session": workspace.committed()
            + max(1, workspace.session_reserve_bytes)
            <= workspace.max_bytes,
        },
    }
    if services.status is not None:
        try:
            result["appliance"] = jsonable(services.status())
        except Exception:
            result["appliance"] = {"error": "status unavailable"}
    return result


def specs() -> Response:
    return jsonify(specs=[spec.to_dict() for spec in list_specs()])


def openapi() -> Response:
    return jsonify(build_document(url_for("api.create_session").rsplit("/", 1)[0]))


_VIEWS: dict[str, Callable[..., Any]] = {
    name: view
    for name, view in globals().items()
    if callable(view) and name in {route.endpoint for route in ROUTES}
}
for _route in ROUTES:
    bp.add_url_rule(
        _route.flask_rule, _route.endpoint, _VIEWS[_route.endpoint], methods=[_route.method]
    )
