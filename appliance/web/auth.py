"""Login, logout, first-boot setup (with the one-time code) and the sudo re-check.

Audit: successful logins, lockouts and failed passwords of *existing* users are recorded with
the username as actor; attempts on unknown usernames are not (guessing must not be able to flood
the log), and client addresses never are (invariant 4).
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from appliance.web.context import WebContext, web_context
from appliance.web.logins import DEVICE_COOKIE, Attempt, Login
from appliance.web.security import (
    LOGIN_COOKIE,
    PRE_COOKIE,
    identity,
    public,
    safe_next,
    set_cookie,
)
from appliance.web.users import CredentialError, SetupError, StaffUser

bp = Blueprint("auth", __name__)


def _attempt(account: str) -> Attempt:
    """This request's try at ``account``: the client address and the trusted-device cookie."""
    return Attempt(account, request.remote_addr or "unknown", request.cookies.get(DEVICE_COOKIE))


def _trust_device(response: Response, device: str, context: WebContext) -> None:
    max_age = int(context.limiter.device_trust_s)
    set_cookie(response, DEVICE_COOKIE, device, max_age=max_age)


def _page(template: str, code: int = 200, **values: object) -> tuple[str, int]:
    return render_template(template, **values), code


def _start_login(context: WebContext, user: StaffUser, target: str) -> Response:
    # Typing the password just now counts for the sudo window too.
    login = context.logins.create(
        user.username, user.role, sudo_s=context.settings.sudo_minutes * 60.0
    )
    context.services.audit.record("staff.login", actor=f"staff:{user.username}")
    response = redirect(safe_next(target))
    set_cookie(response, LOGIN_COOKIE, login.login_id)
    response.delete_cookie(PRE_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


def _audit_refusal(context: WebContext, username: str, reason: str) -> None:
    if context.services.users.user(username) is not None:
        context.services.audit.record(
            "staff.login", actor=f"staff:{username}", outcome="refused", reason=reason
        )


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Response | tuple[str, int]:
    context = web_context()
    target = request.values.get("next", "/")
    if request.method == "GET":
        if context.services.users.needs_setup():
            return redirect(url_for("auth.setup"))
        return _page("login.html", next=safe_next(target))
    username = request.form.get("username", "").strip().lower()[:64]
    secret = request.form.get("password", "")
    attempt = _attempt(username)
    wait = context.limiter.retry_after(attempt)
    if wait > 0:
        return _locked_out("login.html", wait, next=safe_next(target))
    user = context.services.users.verify_login(username, secret)
    if user is None:
        lockout = context.limiter.failure(attempt)
        _audit_refusal(context, username, "rate_limited" if lockout else "bad_credentials")
        if lockout:
            return _locked_out("login.html", lockout, next=safe_next(target))
        return _page("login.html", 401, error="wrong", next=safe_next(target))
    response = _start_login(context, user, target)
    _trust_device(response, context.limiter.success(attempt), context)
    return response


def _locked_out(template: str, seconds: float, **values: object) -> Response:
    page = render_template(template, error="locked", wait_s=int(seconds) + 1, **values)
    response = Response(page, status=429, mimetype="text/html")
    response.headers["Retry-After"] = str(int(seconds) + 1)
    return response


@bp.route("/logout", methods=["POST"])
def logout() -> Response:
    context = web_context()
    who = identity()
    if who.login is not None:
        context.logins.drop(who.login.login_id)
        context.services.audit.record("staff.logout", actor=who.actor)
    response = redirect(url_for("auth.login"))
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    return response


@bp.route("/setup", methods=["GET", "POST"])
@public
def setup() -> Response | tuple[str, int]:
    context = web_context()
    users = context.services.users
    if not users.needs_setup():
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return _page("setup.html")
    # Per client only: one client's wrong codes must not lock setup for everyone (the code has
    # 60 bits, so a per-client limit is plenty against guessing).
    attempt = _attempt("setup")
    wait = context.setup_limiter.retry_after(attempt)
    if wait > 0:
        return _locked_out("setup.html", wait)
    username = request.form.get("username", "").strip().lower()
    password = request.form.get("password", "")
    if password != request.form.get("confirm", ""):
        return _page("setup.html", 400, error="mismatch", username=username)
    try:
        user = users.complete_setup(request.form.get("code", ""), username, password)
    except SetupError:
        context.setup_limiter.failure(attempt)
        return _page("setup.html", 403, error="code", username=username)
    except CredentialError as error:
        return _page("setup.html", 400, error="credentials", detail=str(error), username=username)
    context.setup_limiter.success(attempt)
    context.services.audit.record("setup.completed", actor=f"staff:{user.username}")
    context.services.audit.record("staff.created", actor=f"staff:{user.username}")
    response = _start_login(context, user, "/admin/")
    _trust_device(response, context.limiter.success(_attempt(user.username)), context)
    return response


@bp.route("/sudo", methods=["GET", "POST"])
def sudo() -> Response | tuple[str, int]:
    context = web_context()
    who = identity()
    target = safe_next(request.values.get("next"), "/admin/")
    login: Login | None = who.login
    if login is None or who.username is None:
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return _page("sudo.html", next=target)
    attempt = _attempt(who.username)
    wait = context.limiter.retry_after(attempt)
    if wait > 0:
        return _locked_out("sudo.html", wait, next=target)
    if context.services.users.verify_login(who.username, request.form.get("password", "")):
        context.logins.grant_sudo(login, context.settings.sudo_minutes * 60.0)
        response = redirect(target)
        _trust_device(response, context.limiter.success(attempt), context)
        return response
    lockout = context.limiter.failure(attempt)
    _audit_refusal(context, who.username, "rate_limited" if lockout else "bad_credentials")
    return _page("sudo.html", 401, error="wrong", next=target)
