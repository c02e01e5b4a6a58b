"""Who may reach what: every route refuses anonymous users except the public allow-list (privacy
invariant 6), CSRF on every state-changing call, lockout, sudo, inactivity logout, headers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from PIL import Image
from web_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    OPERATOR,
    OPERATOR_PIN,
    Harness,
    close_harness,
    make_harness,
)
from werkzeug.routing import Rule

from appliance.config import Config
from appliance.web.app import create_app
from appliance.web.kiosks import PAIR_FAILURES
from appliance.web.logins import Attempt, LoginLimiter, LoginSessions
from appliance.web.security import CONTENT_SECURITY_POLICY, safe_next
from appliance.web.services import WebServices

# The whole public surface. Adding a public route must be a deliberate change here too.
PUBLIC = {
    "static",
    "auth.login",
    "auth.login_code",  # the login's second step: the cookie a right password set is its key
    "passkeys.login_options",  # a passkey login: a challenge, then the signed answer
    "passkeys.login",
    "auth.setup",
    "public.healthz",
    "public.ca_crt",
    "public.ca_page",
    "kiosk.pair",
}
# What a paired kiosk may call: its own desk's screen, nothing else (issue 13, section 2).
KIOSK_ONLY = {
    "kiosk.kiosk",
    "kiosk.kiosk_state",
    "kiosk.kiosk_photo",
    "kiosk.kiosk_consent",
    "kiosk.kiosk_capture",
    "kiosk.kiosk_delete",
}
# The plain-HTTP port's app, all public by design: the CA and the customers' sealed downloads.
CA_PORT_ROUTES = {
    "ca_crt",
    "ca_page",
    "elsewhere",
    "customer.own_file",
    "customer.vendor_file",
    "customer.download_page",
    "customer.sealed_bundle",
    "customer.delete_now",
}
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}

pytest_plugins = ["web_fixtures"]  # fixtures: web, studio, web_pipeline, write_watch


def _probe_app() -> Flask:
    # Only the URL map is needed at collection time: the factory reads config and settings only.
    stand_in: Any = None
    return create_app(
        WebServices(
            config=Config(), sessions=stand_in, pipeline=stand_in, audit=stand_in, users=stand_in
        )
    )


def _routes() -> list[tuple[str, str, str]]:
    routes = []
    for rule in _probe_app().url_map.iter_rules():
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, rule.rule, method))
    return sorted(routes)


ROUTES = _routes()


def _url(app: Flask, endpoint: str, rule_text: str) -> str:
    rule: Rule = next(r for r in app.url_map.iter_rules() if r.rule == rule_text)
    values: dict[str, str] = {}
    for name in rule.arguments:
        converter = rule._converters[name]
        options = getattr(converter, "items", None)
        values[name] = sorted(options)[0] if options else "A" * 24
    built = rule.build(values)
    assert built is not None
    return built[1]


def _is_refusal(response: Any) -> bool:
    if response.status_code in (401, 403):
        return True
    location = response.headers.get("Location", "") if response.status_code in (302, 303) else ""
    return location.startswith("/login") or location == "/kiosk/pair"


def test_route_table_is_what_was_probed(web: Harness) -> None:
    assert _routes() == sorted(
        (rule.endpoint, rule.rule, method)
        for rule in web.app.url_map.iter_rules()
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    )
    assert {endpoint for endpoint, _, _ in ROUTES} >= PUBLIC


@pytest.mark.parametrize(
    ("endpoint", "rule", "method"), ROUTES, ids=[f"{m} {r}" for _, r, m in ROUTES]
)
def test_anonymous_is_refused_everywhere_but_the_public_list(
    web: Harness, endpoint: str, rule: str, method: str
) -> None:
    client = web.new_client()
    url = _url(web.app, endpoint, rule)
    response = client.open(url, method=method, data=b"x", content_type="application/octet-stream")
    if endpoint in PUBLIC:
        assert response.status_code != 401, url
        return
    assert _is_refusal(response), (url, response.status_code)
    # ... with a bogus bearer token too, and without leaking anything of the route's work.
    response = client.open(url, method=method, headers={"Authorization": "Bearer stk_nope"})
    assert _is_refusal(response), (url, response.status_code)


@pytest.mark.parametrize(
    ("endpoint", "rule", "method"),
    [r for r in ROUTES if r[0] not in PUBLIC | KIOSK_ONLY],
    ids=[f"{m} {r}" for e, r, m in ROUTES if e not in PUBLIC | KIOSK_ONLY],
)
def test_a_kiosk_credential_is_refused_by_every_staff_and_api_route(
    web: Harness, endpoint: str, rule: str, method: str
) -> None:
    kiosk, _ = web.pair_kiosk()
    token = web.kiosk_csrf(kiosk)
    url = _url(web.app, endpoint, rule)
    before = len(web.audit_events())
    response = kiosk.open(url, method=method, json={}, headers={"X-CSRF-Token": token})
    assert _is_refusal(response), (url, response.status_code)
    assert len(web.audit_events()) == before  # nothing happened


def test_the_kiosk_routes_are_exactly_the_kiosk_only_ones(web: Harness) -> None:
    marked = {
        endpoint
        for endpoint, view in web.app.view_functions.items()
        if getattr(view, "kiosk_only", False)
    }
    assert marked == KIOSK_ONLY


def test_the_plain_http_port_serves_only_the_ca_and_sealed_downloads(web: Harness) -> None:
    app = web.customer_client().application
    assert {rule.endpoint for rule in app.url_map.iter_rules()} == CA_PORT_ROUTES


def test_a_revoked_kiosk_is_refused_at_once(web: Harness) -> None:
    kiosk, kiosk_id = web.pair_kiosk()
    assert kiosk.get("/kiosk/state").status_code == 200
    assert kiosk.get("/kiosk").status_code == 200
    assert web.app.extensions["appliance"].kiosks.revoke(kiosk_id)
    assert kiosk.get("/kiosk/state").status_code == 401
    response = kiosk.get("/kiosk")
    assert response.status_code == 302 and response.headers["Location"] == "/kiosk/pair"


def test_a_kiosk_is_never_logged_out_for_idleness(web: Harness) -> None:
    now = [1000.0]
    context = web.app.extensions["appliance"]
    context.logins = LoginSessions(15 * 60, clock=lambda: now[0])
    kiosk, _ = web.pair_kiosk()
    now[0] += 24 * 3600  # a day without a click
    assert kiosk.get("/kiosk/state").status_code == 200


def test_kiosk_calls_need_the_kiosks_csrf_token(web: Harness) -> None:
    kiosk, _ = web.pair_kiosk()
    web.services.actions.start("system")  # a customer at the booth desk
    assert kiosk.post("/kiosk/consent").status_code == 403
    assert kiosk.post("/kiosk/consent", headers={"X-CSRF-Token": "forged"}).status_code == 403
    token = web.kiosk_csrf(kiosk)
    assert kiosk.post("/kiosk/consent", headers={"X-CSRF-Token": token}).status_code == 200


def test_pairing_codes_work_once_and_wrong_ones_lock_out(web: Harness) -> None:
    kiosks = web.app.extensions["appliance"].kiosks
    code = kiosks.new_pairing_code("Front desk", "booth")
    first, second = web.new_client(), web.new_client()
    for client in (first, second):
        token = web.csrf(client, "/kiosk/pair")
        response = client.post("/kiosk/pair", data={"code": code, "csrf_token": token})
        client.status = response.status_code  # type: ignore[attr-defined]
    assert (first.status, second.status) == (302, 403)  # type: ignore[attr-defined]
    token = web.csrf(second, "/kiosk/pair")
    # The spent code was its first failure; PAIR_FAILURES in all lock this address out.
    codes = [second.post("/kiosk/pair", data={"code": "AAAA-AAAA", "csrf_token": token})
             for _ in range(PAIR_FAILURES - 1)]  # fmt: skip
    assert [c.status_code for c in codes] == [403] * (PAIR_FAILURES - 1)
    assert second.post("/kiosk/pair", data={"code": "x", "csrf_token": token}).status_code == 429
    # Locked out: even a right code waits (from this address).
    fresh = kiosks.new_pairing_code("Back desk", "booth")
    response = second.post("/kiosk/pair", data={"code": fresh, "csrf_token": token})
    assert response.status_code == 429 and "Try again in" in response.get_data(as_text=True)
    assert [e["event"] for e in web.audit_events()] == ["kiosk.paired"]


@pytest.mark.parametrize(
    ("endpoint", "rule", "method"),
    [r for r in ROUTES if r[2] in STATE_CHANGING and r[0] not in PUBLIC | KIOSK_ONLY],
    ids=[f"{m} {r}" for e, r, m in ROUTES if m in STATE_CHANGING and e not in PUBLIC | KIOSK_ONLY],
)
def test_state_changing_calls_without_csrf_token_are_refused(
    web: Harness, endpoint: str, rule: str, method: str
) -> None:
    client = web.login(ADMIN, ADMIN_PASSWORD)  # admin, with a fresh sudo window
    url = _url(web.app, endpoint, rule)
    before = len(web.audit_events())
    response = client.open(url, method=method, json={})
    assert response.status_code == 403, (url, response.status_code)
    assert "CSRF" in response.get_data(as_text=True)
    response = client.open(url, method=method, json={}, headers={"X-CSRF-Token": "forged"})
    assert response.status_code == 403
    assert len(web.audit_events()) == before  # nothing happened


def test_public_forms_need_their_csrf_token(web: Harness) -> None:
    client = web.new_client()
    response = client.post("/login", data={"username": ADMIN, "password": ADMIN_PASSWORD})
    assert response.status_code == 403
    token = web.csrf(client)
    response = client.post(
        "/login", data={"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302


def test_csrf_token_lets_the_page_call_the_api_and_bearer_needs_none(web: Harness) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN)
    token = web.csrf(client, "/")
    assert client.post("/api/v1/sessions", headers={"X-CSRF-Token": token}).status_code == 201
    assert client.post("/api/v1/sessions").status_code == 403
    other = web.new_client()
    assert other.post("/api/v1/sessions", headers=web.bearer()).status_code == 201
    # a revoked token stops working at once
    record, token = web.users.create_token("operator", "soon revoked")
    headers = {"Authorization": f"Bearer {token}"}
    assert other.post("/api/v1/sessions", headers=headers).status_code == 201
    assert web.users.revoke_token(record.token_id)
    assert other.post("/api/v1/sessions", headers=headers).status_code == 401


def test_lockout_after_repeated_wrong_pins(web: Harness) -> None:
    client = web.new_client()
    token = web.csrf(client)
    limiter = web.app.extensions["appliance"].limiter
    for _ in range(limiter.max_failures - 1):
        response = client.post(
            "/login", data={"username": OPERATOR, "password": "000000", "csrf_token": token}
        )
        assert response.status_code == 401
    response = client.post(
        "/login", data={"username": OPERATOR, "password": "000000", "csrf_token": token}
    )
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 30
    # Locked: the right PIN does not get in now, from this client or another one.
    response = client.post(
        "/login", data={"username": OPERATOR, "password": OPERATOR_PIN, "csrf_token": token}
    )
    assert response.status_code == 429
    events = [e for e in web.audit_events() if e["event"] == "staff.login"]
    assert [e["reason"] for e in events] == ["bad_credentials"] * 4 + ["rate_limited"]
    assert all(e["actor"] == f"staff:{OPERATOR}" for e in events)
    assert "127.0.0.1" not in web.audit_path.read_text()  # no client addresses (invariant 4)


def test_lockout_backoff_doubles_and_ends() -> None:
    now = [0.0]
    limiter = LoginLimiter(
        max_failures=3, base_lockout_s=10, max_lockout_s=35, clock=lambda: now[0]
    )
    keys = Attempt("x", "127.0.0.5")
    assert limiter.failure(keys) == 0 and limiter.failure(keys) == 0
    assert limiter.failure(keys) == 10
    assert limiter.retry_after(keys) == 10
    now[0] = 10.0
    assert limiter.retry_after(keys) == 0
    assert limiter.failure(keys) == 20
    assert limiter.failure(keys) == 35  # capped
    limiter.success(keys)
    assert limiter.retry_after(keys) == 0


def test_unknown_usernames_are_not_audited(web: Harness) -> None:
    client = web.new_client()
    token = web.csrf(client)
    client.post("/login", data={"username": "mallory", "password": "x" * 8, "csrf_token": token})
    assert not [e for e in web.audit_events() if e["event"] == "staff.login"]


def test_inactivity_logs_out_and_background_polls_do_not_count(web: Harness) -> None:
    now = [1000.0]
    context = web.app.extensions["appliance"]
    context.logins = LoginSessions(15 * 60, clock=lambda: now[0])
    client = web.login(OPERATOR, OPERATOR_PIN)
    assert client.get("/").status_code == 200
    now[0] += 14 * 60
    assert client.get("/api/v1/status", headers={"X-Background": "1"}).status_code == 200
    now[0] += 2 * 60  # 16 minutes after the last real activity
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_admin_pages_need_the_admin_role_and_a_fresh_password(web: Harness) -> None:
    operator = web.login(OPERATOR, OPERATOR_PIN)
    assert operator.get("/admin/users").status_code == 403
    assert operator.get("/api/v1/status").status_code == 200
    now = [0.0]
    context = web.app.extensions["appliance"]
    context.logins = LoginSessions(3600, clock=lambda: now[0])
    admin = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    assert admin.get("/admin/users").status_code == 200  # login counts as a fresh password
    now[0] += 6 * 60
    response = admin.get("/admin/users")
    assert response.status_code == 302 and "/sudo" in response.headers["Location"]
    token = web.csrf(admin, "/sudo")
    response = admin.post("/sudo?next=/admin/users", data={"password": "nope", "csrf_token": token})
    assert response.status_code == 401
    response = admin.post(
        "/sudo?next=/admin/users", data={"password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/admin/users"
    assert admin.get("/admin/users").status_code == 200


def test_first_boot_setup_needs_the_one_time_code(config: Config, tmp_path: Path) -> None:
    harness = make_harness(config, tmp_path)
    try:
        client = harness.client
        assert client.get("/login").headers["Location"].endswith("/setup")
        code = harness.users.new_setup_code()
        token = harness.csrf(client, "/setup")
        form = {"username": "boss", "password": "a long password", "confirm": "a long password"}
        response = client.post(
            "/setup", data={**form, "code": "AAAA-BBBB-CCCC", "csrf_token": token}
        )
        assert response.status_code == 403
        response = client.post("/setup", data={**form, "code": code.lower(), "csrf_token": token})
        assert response.status_code == 302
        assert client.get("/admin/").status_code == 200  # logged in as the new admin
        assert harness.users.user("boss").role == "admin"  # type: ignore[union-attr]
        # The code is spent and setup is closed.
        response = harness.new_client().get("/setup")
        assert response.status_code == 302 and "/login" in response.headers["Location"]
        events = [e["event"] for e in harness.audit_events()]
        assert events == ["setup.completed", "staff.created", "staff.login"]
    finally:
        close_harness(harness)


def test_every_response_carries_the_security_headers(web: Harness) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN)
    for url in ("/", "/login", "/healthz", "/api/v1/status", "/nowhere", "/static/style.css"):
        response = client.get(url)
        headers = response.headers
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, url
        assert "default-src 'self'; script-src 'self'; style-src 'self'" in CONTENT_SECURITY_POLICY
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_login_cookie_is_secure_httponly_strict(web: Harness) -> None:
    client = web.new_client()
    token = web.csrf(client)
    response = client.post(
        "/login", data={"username": OPERATOR, "password": OPERATOR_PIN, "csrf_token": token}
    )
    cookies = response.headers.getlist("Set-Cookie")
    login = next(c for c in cookies if c.startswith("__Host-studio-login="))
    assert "Secure" in login and "HttpOnly" in login and "SameSite=Strict" in login
    assert "Path=/" in login and "Domain" not in login


def test_pages_have_no_inline_script_or_style(web: Harness) -> None:
    client = web.login(ADMIN, ADMIN_PASSWORD)
    kiosk, _ = web.pair_kiosk()
    pages = [(client, url) for url in ("/", "/kiosk/pair", "/account/", "/admin/", "/admin/users",
                                       "/admin/tokens", "/admin/defaults")]  # fmt: skip
    for who, url in [*pages, (kiosk, "/kiosk")]:
        html = who.get(url).get_data(as_text=True)
        assert "<script>" not in html and "style=" not in html and " on" + "click" not in html
        assert "<script src=" in html


def test_errors_never_show_exception_text(web: Harness) -> None:
    class Exploding:
        def process(self, data: bytes, request: object) -> object:
            raise RuntimeError("/home/jane/passport_JaneDoe.jpg secret detail")

    web.services.pipeline = Exploding()
    headers = web.bearer()
    client = web.client
    session_id = client.post("/api/v1/sessions", headers=headers).get_json()["id"]
    client.post(f"/api/v1/sessions/{session_id}/consent", headers=headers)
    stream = io.BytesIO()
    Image.new("RGB", (8, 8)).save(stream, "PNG")  # uploads are checked from their header
    png = stream.getvalue()
    photo = client.post(
        f"/api/v1/sessions/{session_id}/photos", data=png, content_type="image/png", headers=headers
    ).get_json()["photo_id"]
    response = client.post(
        f"/api/v1/sessions/{session_id}/photos/{photo}/products", json={}, headers=headers
    )
    assert response.status_code == 500
    assert response.get_json() == {
        "error": "internal",
        "message": "Something went wrong inside the appliance. It has been logged.",
    }
    assert b"JaneDoe" not in response.data and b"Traceback" not in response.data


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/users?x=1", "/admin/users?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x", "/"),
        (None, "/"),
    ],
)
def test_login_only_returns_to_local_pages(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
