"""The staff member's own account page: setting up, replacing and switching off the second
factor (TOTP), and new recovery codes.

Every change asks for the password again and, once a second factor exists, a code from it
(:func:`appliance.web.auth.recheck`, the login's own lockout), so a tablet left logged in is not
enough to take over or strip someone's second factor. A new TOTP secret lives only in memory
(:class:`~appliance.web.challenges.Expiring`, keyed by the login) until the first code from the
app confirms it; recovery codes are shown once, on the page that made them.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.exceptions import Forbidden
from werkzeug.wrappers import Response

from appliance.web.api import qr_svg
from appliance.web.auth import Refusal, recheck
from appliance.web.context import web_context
from appliance.web.mfa import grouped, new_secret, provisioning_uri
from appliance.web.security import during_enrolment, identity

bp = Blueprint("account", __name__, url_prefix="/account")

ISSUER = "Studio"
FEW_RECOVERY_CODES = 3
# Refusals the passkey removal sends back here (a redirect, so as a query value).
PASSKEY_REFUSALS = ("wrong_password", "wrong_code", "replayed", "locked")


@bp.before_request
def _staff_logins_only() -> None:
    # After the access gate (so someone is logged in): an API token has no account page.
    if identity().login is None:
        raise Forbidden("The account page needs a staff login, not an API token.")


def _may_disable(role: str) -> bool:
    # Admins keep theirs once enrolled; with [web] require_mfa nobody may go without.
    return role != "admin" and not web_context().settings.require_mfa


def _page(code: int = 200, refusal: Refusal | None = None, **values: Any) -> tuple[str, int]:
    context = web_context()
    who = identity()
    assert who.username is not None and who.login is not None
    status = context.mfa.status(who.username)
    since = time.strftime("%Y-%m-%d", time.gmtime(status.since)) if status.since else ""
    passkey_error = request.args.get("passkey_error")
    if refusal is None and passkey_error in PASSKEY_REFUSALS:
        refusal = Refusal(passkey_error, 400)
    html = render_template(
        "account.html",
        status=status,
        since=since,
        few_left=status.enrolled and status.recovery_left <= FEW_RECOVERY_CODES,
        may_disable=status.enrolled and _may_disable(who.role),
        must_enrol=who.login.must_enrol,
        passkeys=context.passkeys.passkeys(who.username),
        refusal=refusal,
        **values,
    )
    return html, code


def _fields() -> tuple[str, str]:
    return request.form.get("password", ""), request.form.get("code", "")


def _username() -> str:
    username = identity().username
    if username is None:  # the access gate lets only staff logins reach these views
        raise PermissionError("the account page needs a staff login")
    return username


@bp.route("/")
@during_enrolment
def page() -> tuple[str, int]:
    return _page()


def _enrol_page(secret: str, code: int = 200, **values: Any) -> tuple[str, int]:
    host = (request.host or "studio").split(":")[0]
    uri = provisioning_uri(secret, f"{_username()}@{host}", ISSUER)
    svg = qr_svg(uri).encode("utf-8")
    qr = "data:image/svg+xml;base64," + base64.b64encode(svg).decode("ascii")
    return render_template("account_enrol.html", qr=qr, secret=grouped(secret), **values), code


@bp.route("/mfa/start", methods=["POST"])
@during_enrolment
def start_enrolment() -> tuple[str, int]:
    """Password (and the current code, when replacing the app): a new secret as a QR code."""
    context = web_context()
    who = identity()
    refusal = recheck(_username(), *_fields())
    if refusal is not None:
        return _page(refusal.status, refusal)
    assert who.login is not None
    secret = new_secret()
    context.enrolment_drafts.put(secret, key=who.login.login_id)
    return _enrol_page(secret)


@bp.route("/mfa/confirm", methods=["POST"])
@during_enrolment
def confirm_enrolment() -> Response | tuple[str, int]:
    """The first code from the app proves it holds the secret: store it, show recovery codes."""
    context = web_context()
    who = identity()
    assert who.login is not None
    secret = context.enrolment_drafts.get(who.login.login_id)
    if secret is None:
        return _page(400, Refusal("expired", 400))
    codes = context.mfa.enrol(_username(), secret, request.form.get("code", ""))
    if codes is None:
        return _enrol_page(secret, 401, error="wrong_code")
    context.enrolment_drafts.pop(who.login.login_id)
    context.logins.enrolled(who.login)
    context.services.audit.record("mfa.enrolled", actor=who.actor)
    return render_template("account_codes.html", codes=codes), 201


@bp.route("/mfa/recovery", methods=["POST"])
def renew_recovery() -> tuple[str, int]:
    context = web_context()
    username = _username()
    if not context.mfa.enrolled(username):
        return _page(400)
    refusal = recheck(username, *_fields())
    if refusal is not None:
        return _page(refusal.status, refusal)
    codes = context.mfa.renew_recovery(username)
    context.services.audit.record("mfa.recovery_renewed", actor=identity().actor)
    return render_template("account_codes.html", codes=codes), 201


@bp.route("/mfa/disable", methods=["POST"])
def disable() -> Response | tuple[str, int]:
    context = web_context()
    who = identity()
    username = _username()
    if not _may_disable(who.role):
        return _page(403, Refusal("keep", 403))
    refusal = recheck(username, *_fields())
    if refusal is not None:
        return _page(refusal.status, refusal)
    if context.mfa.remove(username):
        context.services.audit.record("mfa.disabled", actor=who.actor)
    return redirect(url_for(".page"))
