"""Who is asking, may they, and the headers every response carries.

Access is deny-by-default: a ``before_request`` hook refuses every endpoint that is not marked
:func:`public` to anyone without a staff login or an API token (privacy invariant 6), checks the
role a view asks for with :func:`requires`, and, for state-changing methods, a CSRF token (form
field ``csrf_token`` or header ``X-CSRF-Token``). Bearer-token calls skip CSRF: a browser never
attaches that header on its own, so there is no ambient credential to forge with.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Flask, current_app, g, redirect, request, url_for
from werkzeug.exceptions import Forbidden, RequestEntityTooLarge, Unauthorized
from werkzeug.wrappers import Response

from appliance.web.context import web_context
from appliance.web.kiosks import Kiosk, csrf_for
from appliance.web.logins import Login

LOGIN_COOKIE = "__Host-studio-login"
PRE_COOKIE = "__Host-studio-pre"
SECOND_FACTOR_COOKIE = "__Host-studio-2fa"  # a right password, waiting for the code
KIOSK_COOKIE = "__Host-studio-kiosk"  # a paired kiosk's device credential (appliance.web.kiosks)
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
BACKGROUND_HEADER = "X-Background"  # polls that must not count as activity
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ROLE_RANK = {"operator": 1, "admin": 2}

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=31536000",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

View = TypeVar("View", bound=Callable[..., Any])


class CsrfError(Forbidden):
    description = "The form or request lacks its CSRF token: reload the page and try again."


class SudoRequired(Forbidden):
    description = "This admin action needs your password again."


class EnrolmentRequired(Forbidden):
    description = "Set up two-step login on your account page first."


class LoginRequired(Unauthorized):
    description = "Log in, or send an API token (Authorization: Bearer ...)."


@dataclass(frozen=True)
class Identity:
    actor: str  # audit actor: staff:<username>, api-token:<id> or kiosk:<id>
    role: str
    username: str | None
    login: Login | None  # None for API tokens and kiosks
    token_id: str | None = None
    kiosk: Kiosk | None = None  # role "kiosk": ranks below every staff role, so no staff route

    def at_least(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[role]


def public(view: View) -> View:
    """Mark a view reachable without a login (keep this list short: invariant 6)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def during_enrolment(view: View) -> View:
    """Mark a view a login that must enrol first (``[web] require_mfa``) may reach."""
    view.during_enrolment = True  # type: ignore[attr-defined]
    return view


def kiosk_only(view: View) -> View:
    """A view only a paired kiosk may call, for its own desk (no staff login, no token)."""
    view.kiosk_only = True  # type: ignore[attr-defined]
    return view


def requires(role: str, *, sudo: bool = False) -> Callable[[View], View]:
    """Require a role (operator is the default for every non-public view) and maybe sudo."""

    def mark(view: View) -> View:
        view.required_role = role  # type: ignore[attr-defined]
        view.requires_sudo = sudo  # type: ignore[attr-defined]
        return view

    return mark


def current_identity() -> Identity | None:
    identity: Identity | None = g.get("identity")
    return identity


def identity() -> Identity:
    """The caller of a protected view (the access hook guarantees there is one)."""
    found = current_identity()
    if found is None:
        raise LoginRequired()
    return found


def wants_json() -> bool:
    if request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def csrf_token() -> str:
    """The token forms and scripts must send back; anonymous visitors get a cookie for it."""
    found = current_identity()
    if found is not None and found.login is not None:
        return found.login.csrf
    kiosk_credential = g.get("kiosk_credential")
    if found is not None and found.kiosk is not None and kiosk_credential:
        return csrf_for(kiosk_credential)
    pre = request.cookies.get(PRE_COOKIE) or g.get("new_pre_cookie")
    if not pre:
        pre = g.new_pre_cookie = secrets.token_urlsafe(32)
    digest = hmac.new(web_context().csrf_key, pre.encode("ascii"), hashlib.sha256)
    return digest.hexdigest()


def _sent_csrf_token() -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.get(CSRF_FIELD, "")
    return ""


def check_csrf() -> None:
    if request.method in SAFE_METHODS:
        return
    found = current_identity()
    if found is not None and found.login is None and found.kiosk is None:
        return  # API token: no ambient credential
    if found is None and not request.cookies.get(PRE_COOKIE):
        raise CsrfError()
    expected = csrf_token()
    if not hmac.compare_digest(_sent_csrf_token().encode(), expected.encode()):
        raise CsrfError()


def _resolve_identity() -> Identity | None:
    context = web_context()
    authorization = request.headers.get("Authorization", "")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        token = context.services.users.token_for(value.strip()) if scheme == "Bearer" else None
        if token is None:
            return None
        return Identity(f"api-token:{token.token_id}", token.role, None, None, token.token_id)
    login_id = request.cookies.get(LOGIN_COOKIE)
    if login_id:
        background = request.headers.get(BACKGROUND_HEADER) == "1"
        login = context.logins.get(login_id, touch=not background)
        if login is not None:
            return Identity(f"staff:{login.username}", login.role, login.username, login)
    return _kiosk_identity()


def _kiosk_identity() -> Identity | None:
    credential = request.cookies.get(KIOSK_COOKIE)
    kiosk = web_context().kiosks.kiosk_for(credential) if credential else None
    if kiosk is None:
        return None
    g.kiosk_credential = credential
    return Identity(f"kiosk:{kiosk.kiosk_id}", "kiosk", None, None, kiosk=kiosk)


def safe_next(target: str | None, fallback: str = "/") -> str:
    """A local path to go back to after login; anything else becomes ``fallback``."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target or any(ord(c) < 32 for c in target):  # browsers read /\x as //x
        return fallback
    return target


def _refuse_anonymous() -> Response:
    if wants_json():
        raise LoginRequired()
    if request.method not in SAFE_METHODS:
        return redirect(url_for("auth.login"))
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def enforce_access() -> Response | None:
    """The deny-by-default gate, run before every request."""
    context = web_context()
    length = request.content_length
    if length is not None and length > context.settings.max_upload_bytes:
        raise RequestEntityTooLarge()
    g.identity = _resolve_identity()
    view = current_app_view()
    if view is None:
        return None  # no such route or method: let the 404/405 through
    if getattr(view, "public", False):
        check_csrf()
        return None
    found = current_identity()
    if getattr(view, "kiosk_only", False):
        if found is None or found.kiosk is None:
            found = g.identity = _kiosk_identity()  # a staff login on the kiosk's browser
        if found is None:
            if request.endpoint == "kiosk.kiosk":  # the screen itself: to the pairing form
                return redirect(url_for("kiosk.pair"))
            raise LoginRequired("This is the customer screen's own call: pair the kiosk first.")
        check_csrf()
        return None
    if found is None:
        return _refuse_anonymous()
    login = found.login
    if login is not None and login.must_enrol and not getattr(view, "during_enrolment", False):
        if wants_json():
            raise EnrolmentRequired()
        return redirect(url_for("account.page"))
    role = getattr(view, "required_role", "operator")
    if not found.at_least(role):
        raise Forbidden("Your role may not do this: ask an admin.")
    if getattr(view, "requires_sudo", False):
        if found.login is None:
            raise Forbidden("Admin pages need a staff login, not an API token.")
        if not context.logins.has_sudo(found.login):
            if wants_json():
                raise SudoRequired()
            back = request.full_path.rstrip("?") if request.method == "GET" else request.referrer
            return redirect(url_for("auth.sudo", next=safe_next(back, "/admin/")))
    check_csrf()
    return None


def current_app_view() -> Callable[..., Any] | None:
    if request.endpoint is None:
        return None
    return current_app.view_functions.get(request.endpoint)


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict"
    )


def add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    new_pre = g.get("new_pre_cookie")
    if new_pre and not request.cookies.get(PRE_COOKIE):
        set_cookie(response, PRE_COOKIE, new_pre)
    return response


def install(app: Flask) -> None:
    app.before_request(enforce_access)
    app.after_request(add_security_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
