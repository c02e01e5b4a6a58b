"""Helpers for the two-step login tests: a clock for the server's TOTP checks, codes from
pyotp, and the enrolment and login steps as a browser would take them through the test client."""

from __future__ import annotations

import re

import pyotp
from flask.testing import FlaskClient
from web_helpers import OPERATOR_PIN, Harness

T0 = 1_900_000_020.0  # the start of a 30-second step
SECRET_SHOWN = re.compile(r'id="mfa-secret"[^>]*>([A-Z2-7 ]+)<')
RECOVERY_SHOWN = re.compile(r'<code class="token">([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})</code>')


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def install_clock(web: Harness) -> Clock:
    """The test's clock for the server's TOTP checks."""
    clock = Clock()
    web.app.extensions["appliance"].mfa.clock = clock
    return clock


def code_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(when)


def not_the_code(secret: str, when: float) -> str:
    """Six digits that no step of the drift window gives."""
    window = {code_at(secret, when + offset) for offset in (-30, 0, 30)}
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in window)


def enrol(web: Harness, client: FlaskClient, password: str, now: float) -> tuple[str, list[str]]:
    """Set up TOTP from the account page; returns the secret shown and the recovery codes."""
    csrf = web.csrf(client, "/account/")
    page = client.post("/account/mfa/start", data={"password": password, "csrf_token": csrf})
    assert page.status_code == 200, page.get_data(as_text=True)[:400]
    text = page.get_data(as_text=True)
    assert 'id="mfa-qr"' in text and "data:image/svg+xml;base64," in text
    found = SECRET_SHOWN.search(text)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    done = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, now), "csrf_token": csrf}
    )
    assert done.status_code == 201
    codes = RECOVERY_SHOWN.findall(done.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes


def password_step(web: Harness, client: FlaskClient, username: str, password: str) -> str:
    """Log in with the password; returns the CSRF token for the code form."""
    csrf = web.csrf(client, "/login")
    response = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": csrf}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/login/code"
    assert not any("studio-login=" in c for c in response.headers.getlist("Set-Cookie"))
    return csrf


def code_step(client: FlaskClient, csrf: str, code: str) -> int:
    return client.post("/login/code", data={"code": code, "csrf_token": csrf}).status_code


def logged_in(client: FlaskClient) -> bool:
    return client.get("/").status_code == 200


def enrol_with_code(
    web: Harness, client: FlaskClient, current: str, clock: Clock
) -> tuple[str, list[str]]:
    """Re-enrol an enrolled user: password + current code, then the new app's first code."""
    clock.now += 30
    csrf = web.csrf(client, "/account/")
    form = {"password": OPERATOR_PIN, "code": code_at(current, clock.now), "csrf_token": csrf}
    page = client.post("/account/mfa/start", data=form).get_data(as_text=True)
    found = SECRET_SHOWN.search(page)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    clock.now += 30
    done = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, clock.now), "csrf_token": csrf}
    )
    assert done.status_code == 201
    return secret, RECOVERY_SHOWN.findall(done.get_data(as_text=True))
