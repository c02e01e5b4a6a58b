"""The customer screen (a paired kiosk) and its pairing, from the kiosk's side and the admin's.

A kiosk sees only its own desk's current customer: consent, countdown, result and QR code, and
"Delete my photos now". None of its calls name a session: each acts on whatever session its
desk shows now, so a kiosk cannot reach another desk's customer or any staff page or API route
(its role ranks below operator; tests/test_web_access.py tries every route with it).
"""

from __future__ import annotations

import base64

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from appliance.session.state import Session
from appliance.studio import Desk
from appliance.web.api import qr_svg
from appliance.web.context import WebContext, web_context
from appliance.web.kiosks import KioskNameError, PairingError
from appliance.web.privacy import privacy_notice
from appliance.web.problems import WebError
from appliance.web.security import KIOSK_COOKIE, identity, kiosk_only, public, requires
from appliance.web.ui import consent_text

bp = Blueprint("kiosk", __name__)

KIOSK_COOKIE_AGE = 5 * 365 * 24 * 3600  # the device credential is revoked, not timed out


def _desk() -> tuple[WebContext, Desk, Session | None]:
    context = web_context()
    kiosk = identity().kiosk
    assert kiosk is not None  # the access gate lets only kiosks in
    desk = context.desk(kiosk.desk)
    session = context.services.sessions.find(desk.session_id) if desk.session_id else None
    return context, desk, session


def _session() -> tuple[WebContext, Desk, Session]:
    context, desk, session = _desk()
    if session is None:
        raise WebError(409, "no_session", "There is no customer at this desk right now.")
    return context, desk, session


# --- the kiosk's own pages and calls -----------------------------------------------------------


@bp.route("/kiosk")
@kiosk_only
def kiosk() -> str:
    context = web_context()
    return render_template(
        "kiosk.html",
        consent=consent_text(),
        countdown=context.settings.kiosk_countdown_s,
        has_camera=context.services.camera is not None,
        notice=privacy_notice(context.services),
        kiosk=identity().kiosk,
    )


@bp.route("/kiosk/state")
@kiosk_only
def kiosk_state() -> Response:
    """What this desk's customer screen should show now (polled)."""
    context, desk, session = _desk()
    if session is None:
        return jsonify(session=None)
    preview = None
    if desk.product_id and desk.product_id in session.products:
        preview = url_for(".kiosk_photo", product=desk.product_id)
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


@bp.route("/kiosk/photo.jpg")
@kiosk_only
def kiosk_photo() -> Response:
    """The current customer's clean photo (the guides are for staff)."""
    context, desk, session = _session()
    if not desk.product_id:
        raise WebError(404, "not_found", "No photo yet.")
    data = context.services.actions.read_item(session.session_id, desk.product_id, "digital")
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/kiosk/consent", methods=["POST"])
@kiosk_only
def kiosk_consent() -> Response:
    context, _, session = _session()
    done = context.services.actions.consent(session.session_id, identity().actor)
    return jsonify(state=done.state.value)


@bp.route("/kiosk/capture", methods=["POST"])
@kiosk_only
def kiosk_capture() -> tuple[Response, int]:
    context, _, session = _session()
    photo = context.services.actions.capture(session.session_id, identity().actor)
    return jsonify(photo_id=photo.item_id), 201


@bp.route("/kiosk/delete", methods=["POST"])
@kiosk_only
def kiosk_delete() -> Response:
    """ "Delete my photos now": the one wipe (files, key, links, print jobs), one audit event."""
    context, _, session = _session()
    context.services.actions.delete_now(session.session_id, identity().actor)
    return jsonify(deleted=True)


# --- pairing: the kiosk enters the code once ---------------------------------------------------


@bp.route("/kiosk/pair", methods=["GET", "POST"])
@public
def pair() -> BaseResponse | tuple[str, int]:
    context = web_context()
    if request.method == "GET":
        return render_template("kiosk_pair.html"), 200
    client = request.remote_addr or "unknown"
    wait = context.kiosks.retry_after(client)
    if wait > 0:
        return render_template("kiosk_pair.html", error="locked", wait_s=int(wait) + 1), 429
    try:
        kiosk, credential = context.kiosks.pair(request.form.get("code", "")[:32], client)
    except PairingError:
        return render_template("kiosk_pair.html", error="code"), 403
    context.services.audit.record("kiosk.paired", actor=f"kiosk:{kiosk.kiosk_id}")
    response = redirect(url_for(".kiosk"))
    response.set_cookie(
        KIOSK_COOKIE, credential, max_age=KIOSK_COOKIE_AGE, path="/", secure=True,
        httponly=True, samesite="Strict",
    )  # fmt: skip
    return response


# --- the admin's side (listed with the API tokens) ---------------------------------------------


@bp.route("/admin/kiosks", methods=["POST"])
@requires("admin", sudo=True)
def new_pairing() -> tuple[str, int]:
    context = web_context()
    try:
        code = context.kiosks.new_pairing_code(
            request.form.get("name", ""), request.form.get("desk", "")
        )
    except KioskNameError as error:
        return render_template("admin/kiosk_code.html", error=str(error)), 400
    pair_url = context.address.https(url_for(".pair"))
    with_code = context.address.https(url_for(".pair", code=code))
    return render_template(
        "admin/kiosk_code.html",
        code=code,
        pair_url=pair_url,
        qr=base64.b64encode(qr_svg(with_code).encode("utf-8")).decode("ascii"),
    ), 201


@bp.route("/admin/kiosks/<kiosk_id>/revoke", methods=["POST"])
@requires("admin", sudo=True)
def revoke(kiosk_id: str) -> BaseResponse:
    context = web_context()
    if context.kiosks.revoke(kiosk_id):
        context.services.audit.record("kiosk.revoked", actor=identity().actor)
    return redirect(url_for("admin.tokens"))
