"""Admin pages: staff users and PINs, API tokens, defaults, printer queue, audit log, devices.

Every view needs the admin role and a fresh password (the sudo window): an unattended tablet
left logged in must not be enough to add users, mint tokens or export the log.
"""

from __future__ import annotations

import io
import json
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from pydantic import ValidationError
from werkzeug.wrappers import Response

from appliance.idphoto.specs import get_spec, list_specs
from appliance.web.api import status_json
from appliance.web.auth import recheck
from appliance.web.context import Defaults, web_context
from appliance.web.security import identity, requires
from appliance.web.services import DeviceUnavailableError
from appliance.web.tls import ca_certificate, fingerprint
from appliance.web.ui import PAPERS
from appliance.web.users import CredentialError

bp = Blueprint("admin", __name__, url_prefix="/admin")

AUDIT_LINES_SHOWN = 200


@bp.context_processor
def _admins_without_mfa() -> dict[str, Any]:
    """Every admin page warns while an admin can still log in with a password alone."""
    return {"admins_without_mfa": web_context().mfa.without_mfa("admin")}


def _page(template: str, code: int = 200, **values: Any) -> tuple[str, int]:
    return render_template(template, **values), code


@bp.route("/")
@requires("admin", sudo=True)
def overview() -> tuple[str, int]:
    context = web_context()
    cert = ca_certificate(context.services.config.state_dir)
    return _page(
        "admin/overview.html",
        status=status_json(),
        ca_fingerprint=fingerprint(cert) if cert else None,
    )


@bp.route("/printer/resume", methods=["POST"])
@requires("admin", sudo=True)
def resume_printer() -> Response:
    printer = web_context().services.printer
    if printer is None:
        raise DeviceUnavailableError("No printer is configured.")
    printer.resume()
    return redirect(url_for(".overview"))


# --- users ---------------------------------------------------------------------------------


def _users_page(code: int = 200, **values: Any) -> tuple[str, int]:
    context = web_context()
    users = context.services.users.users()
    enrolled = {user.username for user in users if context.mfa.enrolled(user.username)}
    with_passkeys = {user.username for user in users if context.passkeys.passkeys(user.username)}
    return _page(
        "admin/users.html",
        code,
        users=users,
        enrolled=enrolled,
        with_passkeys=with_passkeys,
        **values,
    )


@bp.route("/users")
@requires("admin", sudo=True)
def users() -> tuple[str, int]:
    return _users_page()


@bp.route("/users", methods=["POST"])
@requires("admin", sudo=True)
def add_user() -> Response | tuple[str, int]:
    context = web_context()
    try:
        context.services.users.add_user(
            request.form.get("username", "").strip().lower(),
            request.form.get("role", "operator"),
            request.form.get("secret", ""),
        )
    except CredentialError as error:
        return _users_page(400, error=str(error))
    context.services.audit.record("staff.created", actor=identity().actor)
    return redirect(url_for(".users"))


@bp.route("/users/<username>/secret", methods=["POST"])
@requires("admin", sudo=True)
def reset_secret(username: str) -> Response | tuple[str, int]:
    context = web_context()
    try:
        context.services.users.set_secret(username, request.form.get("secret", ""))
    except CredentialError as error:
        return _users_page(400, error=str(error))
    context.logins.drop_user(username)
    context.limiter.forget_account(username)
    context.services.audit.record("config.changed", actor=identity().actor)
    return redirect(url_for(".users"))


@bp.route("/users/<username>/remove", methods=["POST"])
@requires("admin", sudo=True)
def remove_user(username: str) -> Response | tuple[str, int]:
    context = web_context()
    if username == identity().username:
        return _users_page(400, error="You cannot remove yourself.")
    try:
        context.services.users.remove_user(username)
    except CredentialError as error:
        return _users_page(400, error=str(error))
    context.logins.drop_user(username)
    context.limiter.forget_account(username)
    context.services.audit.record("config.changed", actor=identity().actor)
    return redirect(url_for(".users"))


@bp.route("/users/<username>/mfa-reset", methods=["POST"])
@requires("admin", sudo=True)
def reset_mfa(username: str) -> Response | tuple[str, int]:
    """For a staff member who lost their phone and their recovery codes."""
    context = web_context()
    if username == identity().username:
        return _users_page(400, mfa_error="self")
    if context.services.users.user(username) is None:
        return _users_page(404, mfa_error="unknown")
    # A lost phone or a stolen tablet: the TOTP factor and the passkeys go together.
    removed = context.mfa.remove(username)
    removed = context.passkeys.remove_all(username) > 0 or removed
    if removed:
        context.logins.drop_user(username)
        context.services.audit.record("mfa.reset", actor=identity().actor)
    return redirect(url_for(".users"))


# --- API tokens ----------------------------------------------------------------------------


def _tokens_page(code: int = 200, **values: Any) -> tuple[str, int]:
    context = web_context()
    return _page(
        "admin/tokens.html",
        code,
        tokens=context.services.users.tokens(),
        needs_code=context.mfa.enrolled(identity().username or ""),
        kiosks=context.kiosks.kiosks(),
        **values,
    )


@bp.route("/tokens")
@requires("admin", sudo=True)
def tokens() -> tuple[str, int]:
    return _tokens_page()


@bp.route("/tokens", methods=["POST"])
@requires("admin", sudo=True)
def create_token() -> tuple[str, int]:
    """A token is a standing credential: minting one needs the password and code again."""
    context = web_context()
    username = identity().username or ""
    refusal = recheck(username, request.form.get("password", ""), request.form.get("code", ""))
    if refusal is not None:
        return _tokens_page(refusal.status, refusal=refusal)
    try:
        record, token = context.services.users.create_token(
            request.form.get("role", "operator"), request.form.get("name", "")
        )
    except CredentialError as error:
        return _tokens_page(400, error=str(error))
    context.services.audit.record("api_token.created", actor=identity().actor)
    return _tokens_page(201, new_token=token, new_token_id=record.token_id)


@bp.route("/tokens/<token_id>/revoke", methods=["POST"])
@requires("admin", sudo=True)
def revoke_token(token_id: str) -> Response:
    context = web_context()
    if context.services.users.revoke_token(token_id):
        context.services.audit.record("api_token.revoked", actor=identity().actor)
    return redirect(url_for(".tokens"))


# --- defaults ------------------------------------------------------------------------------


@bp.route("/defaults", methods=["GET", "POST"])
@requires("admin", sudo=True)
def defaults() -> Response | tuple[str, int]:
    context = web_context()
    values: dict[str, Any] = {"specs": list_specs(), "papers": PAPERS}
    if request.method == "GET":
        return _page("admin/defaults.html", defaults=context.defaults.load(), **values)
    try:
        chosen = Defaults(
            spec=request.form.get("spec", ""),
            paper=request.form.get("paper", ""),
            copies=int(request.form.get("copies", "1") or 1),
        )
        get_spec(chosen.spec)
    except (ValidationError, ValueError, KeyError):
        return _page(
            "admin/defaults.html", 400, defaults=context.defaults.load(), error=True, **values
        )
    context.defaults.save(chosen)
    context.services.audit.record("config.changed", actor=identity().actor)
    return redirect(url_for(".defaults"))


# --- audit log -----------------------------------------------------------------------------


@bp.route("/audit")
@requires("admin", sudo=True)
def audit() -> tuple[str, int]:
    log = web_context().services.audit
    stream = io.BytesIO()
    verification = log.export(stream)
    lines = stream.getvalue().splitlines()[-AUDIT_LINES_SHOWN:]
    records = [json.loads(line) for line in reversed(lines)]
    return _page("admin/audit.html", records=records, verification=str(verification))


@bp.route("/audit/export")
@requires("admin", sudo=True)
def export_audit() -> Response:
    context = web_context()
    stream = io.BytesIO()
    verification = context.services.audit.export(stream)
    context.services.audit.record(
        "audit.exported",
        actor=identity().actor,
        outcome="ok" if verification.ok else "partial",
        lines=verification.good_lines,
    )
    response = Response(stream.getvalue(), mimetype="application/x-ndjson")
    response.headers["Content-Disposition"] = 'attachment; filename="audit-log.jsonl"'
    return response
