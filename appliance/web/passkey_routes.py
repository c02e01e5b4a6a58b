"""Passkey routes: adding and removing one on the account page, and logging in with one.

The pages' script (static/passkeys.js) asks for options, hands them to the browser's WebAuthn
API and posts the answer back as JSON. Each challenge lives in memory for two minutes, bound to
the RP id and origin it was made for (and, when adding, to the login); adding needs the password
and, once a TOTP factor exists, a code (:func:`appliance.web.auth.recheck`). Failed passkey
logins count against the client's login lockout, and the owner's once the passkey is known.
"""

from __future__ import annotations

import json

from cryptography import x509
from flask import Blueprint, jsonify, redirect, request, url_for
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from appliance.web.auth import (
    client_login_keys,
    login_keys,
    recheck,
    start_login,
    trust_device,
)
from appliance.web.challenges import Expiring
from appliance.web.context import web_context
from appliance.web.passkeys import Ceremony, PasskeyError, parse_credential, rp_id_for
from appliance.web.security import identity, public, safe_next
from appliance.web.tls import tls_files

bp = Blueprint("passkeys", __name__)


def _ceremonies() -> Expiring[Ceremony]:
    return web_context().passkey_ceremonies


def _server_certificate() -> x509.Certificate | None:
    path = tls_files(web_context().services.config.state_dir).server_cert
    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None


def _problem(error: str, status: int, wait_s: int = 0) -> tuple[Response, int]:
    response = jsonify(error=error, wait_s=wait_s)
    if wait_s:
        response.headers["Retry-After"] = str(wait_s)
    return response, status


def relying_party() -> tuple[str, str] | None:
    """(RP id, origin) for this request, or None where passkeys cannot work (an address)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    rp_id = rp_id_for(host, _server_certificate())
    return None if rp_id is None else (rp_id, f"https://{request.host}")


@bp.app_context_processor
def _passkeys_here() -> dict[str, object]:
    """Pages offer passkeys only where they can work (``{% if passkeys_here() %}``)."""
    return {"passkeys_here": lambda: relying_party() is not None}


def _staff_login() -> tuple[str, str]:
    """(username, login id) of the staff login behind this request; API tokens are refused."""
    who = identity()
    if who.login is None or who.username is None:
        raise Forbidden("Passkeys belong to staff logins, not to API tokens.")
    return who.username, who.login.login_id


def _body() -> dict[str, object]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


# --- the account page ------------------------------------------------------------------------


@bp.route("/account/passkeys/options", methods=["POST"])
def add_options() -> Response | tuple[Response, int]:
    context = web_context()
    username, login_id = _staff_login()
    party = relying_party()
    if party is None:
        return _problem("unavailable", 400)
    body = _body()
    refusal = recheck(username, str(body.get("password", "")), str(body.get("code", "")))
    if refusal is not None:
        return _problem(refusal.error, 429 if refusal.error == "locked" else 403, refusal.wait_s)
    options, ceremony = context.passkeys.registration_options(username, *party)
    _ceremonies().put(ceremony, key=f"add:{login_id}")
    return Response(options, mimetype="application/json")


@bp.route("/account/passkeys", methods=["POST"])
def add() -> tuple[Response, int]:
    context = web_context()
    username, login_id = _staff_login()
    ceremony = _ceremonies().pop(f"add:{login_id}")
    if ceremony is None:
        return _problem("expired", 400)
    body = _body()
    try:
        passkey = context.passkeys.register(
            username, ceremony, parse_credential(body), str(body.get("name", ""))
        )
    except PasskeyError:
        return _problem("invalid", 400)
    context.services.audit.record("passkey.added", actor=identity().actor)
    return jsonify(id=passkey.credential_id, name=passkey.name), 201


@bp.route("/account/passkeys/<credential_id>/remove", methods=["POST"])
def remove(credential_id: str) -> Response | tuple[Response, int]:
    context = web_context()
    username, _ = _staff_login()
    refusal = recheck(username, request.form.get("password", ""), request.form.get("code", ""))
    if refusal is not None:
        return redirect(url_for("account.page", passkey_error=refusal.error))
    if context.passkeys.remove(username, credential_id):
        context.services.audit.record("passkey.removed", actor=identity().actor)
    return redirect(url_for("account.page"))


# --- logging in ------------------------------------------------------------------------------


@bp.route("/login/passkey/options", methods=["POST"])
@public  # the login itself: no one is logged in yet
def login_options() -> Response | tuple[Response, int]:
    party = relying_party()
    if party is None:
        return _problem("unavailable", 400)
    options, ceremony = web_context().passkeys.login_options(*party)
    ceremony_id = _ceremonies().put(ceremony)
    return Response(
        '{"ceremony": "%s", "options": %s}' % (ceremony_id, options),  # noqa: UP031 - JSON
        mimetype="application/json",
    )


@bp.route("/login/passkey", methods=["POST"])
@public
def login() -> Response | tuple[Response, int]:
    context = web_context()
    body = _body()
    client = client_login_keys()
    wait = context.passkey_limiter.retry_after(client)
    if wait > 0:
        return _problem("locked", 429, int(wait) + 1)
    ceremony = _ceremonies().pop(str(body.get("ceremony", "")))
    if ceremony is None:
        return _problem("expired", 400)
    try:
        credential = parse_credential(body)
        username = context.passkeys.owner(credential)
    except PasskeyError:
        username = None
    if username is None:  # malformed, or a passkey nobody registered: counted per client
        lockout = context.passkey_limiter.failure(client)
        return _problem("locked" if lockout else "invalid", 429 if lockout else 403, int(lockout))
    keys = login_keys(username)
    wait = context.limiter.retry_after(keys)
    if wait > 0:
        return _problem("locked", 429, int(wait) + 1)
    try:
        context.passkeys.authenticate(username, ceremony, credential)
    except PasskeyError:
        lockout = context.limiter.failure(keys)
        return _problem("locked" if lockout else "invalid", 429 if lockout else 403, int(lockout))
    user = context.services.users.user(username)
    if user is None:
        return _problem("invalid", 403)
    device = context.limiter.success(keys)
    response = start_login(context, user, safe_next(str(body.get("next", "/"))), strong=True)
    trust_device(response, device, context)
    # The script goes there itself; the login cookie rides on this answer.
    target = response.headers.pop("Location")
    response.status_code = 200
    response.mimetype = "application/json"
    response.set_data(json.dumps({"redirect": target}))
    return response
