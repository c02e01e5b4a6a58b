"""Login (password, then the code for those with a second factor), logout, first-boot setup
(with the one-time code), the sudo re-check and the password-and-code re-check.

Audit: successful logins, lockouts and failed passwords or codes of *existing* users are
recorded with the username as actor; attempts on unknown usernames are not (guessing must not be
able to flood the log), and client addresses never are (invariant 4). Password and code count
against the same limiter keys (:func:`login_keys`), and a right password does not clear them
while the code is still due: guessing codes cannot restart its count by retyping the password.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from appliance.web.challenges import SecondFactorDue
from appliance.web.context import WebContext, web_context
from appliance.web.logins import DEVICE_COOKIE, Attempt, Login
from appliance.web.security import (
    LOGIN_COOKIE,
    PRE_COOKIE,
    SECOND_FACTOR_COOKIE,
    during_enrolment,
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


def login_keys(username: str) -> Attempt:
    """The attempt a staff member's password and code count against: one shared lockout."""
    return _attempt(username)


def client_login_keys() -> Attempt:
    """An attempt whose user is not known yet (a passkey nobody registered): it is counted by
    ``context.passkey_limiter``, per client only, so no client can lock passkeys for all."""
    return _attempt("passkey")


def trust_device(response: Response, device: str, context: WebContext) -> None:
    """Public for the passkey login: the same device cookie a password login sets."""
    _trust_device(response, device, context)


def _page(template: str, code: int = 200, **values: object) -> tuple[str, int]:
    return render_template(template, **values), code


def start_login(
    context: WebContext, user: StaffUser, target: str, *, strong: bool = False
) -> Response:
    """Log ``user`` in; ``strong`` when the method was two factors in one (a passkey)."""
    return _start_login(context, user, target, strong=strong)


def _start_login(
    context: WebContext, user: StaffUser, target: str, *, strong: bool = False
) -> Response:
    # Without a second factor where one is required, the login reaches only the enrolment.
    must_enrol = (
        context.settings.require_mfa and not strong and not context.mfa.enrolled(user.username)
    )
    # Typing the password just now counts for the sudo window too.
    login = context.logins.create(
        user.username,
        user.role,
        sudo_s=context.settings.sudo_minutes * 60.0,
        must_enrol=must_enrol,
    )
    context.services.audit.record("staff.login", actor=f"staff:{user.username}")
    response = redirect(url_for("account.page") if must_enrol else safe_next(target))
    set_cookie(response, LOGIN_COOKIE, login.login_id)
    response.delete_cookie(PRE_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")
    response.delete_cookie(
        SECOND_FACTOR_COOKIE, path="/", secure=True, httponly=True, samesite="Strict"
    )
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
    attempt = login_keys(username)
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
    if context.mfa.enrolled(user.username):
        # Not limiter.success yet: the failures count on until the code is right too.
        due = SecondFactorDue(user.username, user.role, safe_next(target))
        response = redirect(url_for("auth.login_code"))
        set_cookie(response, SECOND_FACTOR_COOKIE, context.second_factor_due.put(due))
        return response
    response = _start_login(context, user, target)
    _trust_device(response, context.limiter.success(attempt), context)
    return response


@bp.route("/login/code", methods=["GET", "POST"])
@public  # the second half of the login: the cookie from a right password is its credential
def login_code() -> Response | tuple[str, int]:
    context = web_context()
    due_id = request.cookies.get(SECOND_FACTOR_COOKIE)
    due = context.second_factor_due.get(due_id)
    if due is None:
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return _page("login_code.html")
    keys = login_keys(due.username)
    wait = context.limiter.retry_after(keys)
    if wait > 0:
        return _locked_out("login_code.html", wait)
    result = context.mfa.check(due.username, request.form.get("code", ""))
    if result in ("wrong", "replayed"):
        lockout = context.limiter.failure(keys)
        reason = "replayed_code" if result == "replayed" else "bad_code"
        _audit_refusal(context, due.username, "rate_limited" if lockout else reason)
        if lockout:
            context.second_factor_due.pop(due_id)  # after the lockout: the password again
            return _locked_out("login_code.html", lockout)
        return _page("login_code.html", 401, error=result)
    context.second_factor_due.pop(due_id)
    device = context.limiter.success(keys)
    if result == "recovery":
        context.services.audit.record("mfa.recovery_used", actor=f"staff:{due.username}")
    user = context.services.users.user(due.username)
    if user is None:  # removed meanwhile
        return redirect(url_for("auth.login"))
    response = _start_login(context, user, due.target)
    _trust_device(response, device, context)
    return response


@dataclass(frozen=True)
class Refusal:
    """Why a re-check failed: the page shows ``error`` with HTTP ``status``."""

    error: str  # wrong_password | wrong_code | replayed | locked
    status: int
    wait_s: int = 0


def recheck(username: str, password: str, code: str) -> Refusal | None:
    """The password again and, for an enrolled user, a fresh code: asked before an API token
    is made or a second factor changes. Counts against the login's own lockout."""
    context = web_context()
    keys = login_keys(username)
    wait = context.limiter.retry_after(keys)
    if wait > 0:
        return Refusal("locked", 429, int(wait) + 1)
    error = ""
    if context.services.users.verify_login(username, password) is None:
        error = "wrong_password"
    elif context.mfa.enrolled(username):
        result = context.mfa.check(username, code)
        if result == "recovery":
            context.services.audit.record("mfa.recovery_used", actor=f"staff:{username}")
        elif result != "totp":
            error = "replayed" if result == "replayed" else "wrong_code"
    if not error:
        context.limiter.success(keys)
        return None
    lockout = context.limiter.failure(keys)
    reason = {"wrong_password": "bad_credentials", "replayed": "replayed_code"}.get(
        error, "bad_code"
    )
    _audit_refusal(context, username, "rate_limited" if lockout else reason)
    if lockout:
        return Refusal("locked", 429, int(lockout) + 1)
    return Refusal(error, 401)


def _locked_out(template: str, seconds: float, **values: object) -> Response:
    page = render_template(template, error="locked", wait_s=int(seconds) + 1, **values)
    response = Response(page, status=429, mimetype="text/html")
    response.headers["Retry-After"] = str(int(seconds) + 1)
    return response


@bp.route("/logout", methods=["POST"])
@during_enrolment
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
    attempt = login_keys(who.username)
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
