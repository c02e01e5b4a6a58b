"""Staff pages: the operator's tablet page and the live preview (the kiosk has its own module).

The pages are server-rendered; the small scripts in static/ drive them through the REST API with
the page's CSRF token, so the browser and API clients go through exactly the same checks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from flask import Blueprint, Response, abort, g, render_template, request

from appliance.idphoto.specs import list_specs
from appliance.studio import DEFAULT_DESK
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


DESK_COOKIE = "studio-desk"  # the operator's choice of desk (a preference, not a secret)


@bp.route("/")
def index() -> str:
    context = web_context()
    desks = context.kiosks.desks()
    chosen = request.cookies.get(DESK_COOKIE, DEFAULT_DESK)
    desk_id = chosen if chosen in desks else DEFAULT_DESK
    desk = context.desk(desk_id)
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
        desks=desks,
        desk_id=desk_id,
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
