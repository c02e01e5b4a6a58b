"""Staff pages: the operator's tablet page, the customer screen (kiosk) and the live preview.

The pages are server-rendered; the small scripts in static/ drive them through the REST API with
the page's CSRF token, so the browser and API clients go through exactly the same checks.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

from flask import Blueprint, Response, abort, g, jsonify, render_template, url_for

from appliance.idphoto.specs import list_specs
from appliance.web.api import qr_svg
from appliance.web.context import web_context
from appliance.web.i18n import translate

bp = Blueprint("ui", __name__)

PAPERS = ("4x6", "5x7", "a6", "a4")
PORTRAITS = ("4:5", "2:3", "1:1")
BACKGROUNDS = (("#FFFFFF", "White"), ("#F2F2F2", "Light grey"), ("#DCE6F0", "Light blue"))
PREVIEW_MAX_S = 300.0  # one stream per page visit; the page restarts it when it needs it
DEFAULT_CONSENT = (
    "Your photo is used only to make your ID photo. It stays on this device, encrypted, and is "
    "deleted when we finish, at the latest within the hour. Nothing is uploaded anywhere."
)


def consent_text() -> str:
    settings = web_context().settings
    return settings.consent_text or translate(g.get("lang", "en"), DEFAULT_CONSENT)


@bp.route("/")
def index() -> str:
    context = web_context()
    desk = context.desk
    session_id = desk.session_id if desk.session_id else ""
    if session_id and context.services.sessions.find(session_id) is None:
        session_id = ""
    return render_template(
        "operator.html",
        specs=list_specs(),
        papers=PAPERS,
        portraits=PORTRAITS,
        backgrounds=BACKGROUNDS,
        defaults=context.defaults.load(),
        session_id=session_id,
        has_camera=context.services.camera is not None,
        has_preview=context.services.preview is not None,
        has_printer=context.services.printer is not None,
        consent=consent_text(),
    )


@bp.route("/kiosk")
def kiosk() -> str:
    context = web_context()
    return render_template(
        "kiosk.html",
        consent=consent_text(),
        countdown=context.settings.kiosk_countdown_s,
        has_camera=context.services.camera is not None,
    )


@bp.route("/kiosk/state")
def kiosk_state() -> Response:
    """What the customer screen should show now (polled)."""
    context = web_context()
    desk = context.desk
    session = context.services.sessions.find(desk.session_id) if desk.session_id else None
    if session is None:
        return jsonify(session=None)
    preview = None
    if desk.product_id and desk.product_id in session.products:
        preview = url_for(
            "api.product_file",
            session_id=session.session_id,
            product_id=desk.product_id,
            variant="digital",  # the customer sees the clean photo; guides are for staff
        )
    qr = None
    if (
        desk.link_url
        and desk.link_token
        and context.services.sessions.link_is_valid(desk.link_token)
    ):
        svg = qr_svg(desk.link_url).encode("utf-8")
        qr = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    return jsonify(
        session={"id": session.session_id, "state": session.state.value},
        product_id=desk.product_id,
        preview_url=preview,
        qr=qr,
    )


def _mjpeg(frames: Iterator[bytes], limit_s: float) -> Iterator[bytes]:
    deadline = time.monotonic() + limit_s
    try:
        for frame in frames:
            yield (
                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(frame)).encode("ascii")
                + b"\r\n\r\n"
                + frame
                + b"\r\n"
            )
            if time.monotonic() >= deadline:
                break
    finally:
        close = getattr(frames, "close", None)
        if callable(close):
            close()  # releases the camera's preview stream when the viewer goes away


@bp.route("/preview.mjpg")
def preview() -> Response:
    source = web_context().services.preview
    if source is None:
        abort(404)
    response = Response(
        _mjpeg(source(), PREVIEW_MAX_S), mimetype="multipart/x-mixed-replace; boundary=frame"
    )
    response.headers["Cache-Control"] = "no-store"
    return response
