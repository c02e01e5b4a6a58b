"""Login lockout that stops guessing without letting a stranger lock others out (issue 15).

Before: one failure count per client address locked every account on that address (the admin
at the same tablet too), and setup had one global key that any client could lock.
"""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from web_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    OPERATOR,
    OPERATOR_PIN,
    Harness,
    close_harness,
    make_harness,
)

from appliance.config import Config
from appliance.web.logins import DEVICE_COOKIE, Attempt, LoginLimiter

pytest_plugins = ["web_fixtures"]  # fixtures: web


def _client(web: Harness, address: str) -> FlaskClient:
    client = web.new_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _login(web: Harness, client: FlaskClient, username: str, password: str) -> int:
    token = web.csrf(client)
    response = client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )
    return response.status_code


def _fail_until_locked(web: Harness, client: FlaskClient, username: str) -> None:
    statuses = [_login(web, client, username, "wrong guess 1") for _ in range(5)]
    assert statuses == [401] * 4 + [429]


def test_wrong_pins_for_one_account_do_not_lock_out_others_on_the_same_address(
    web: Harness,
) -> None:
    stranger = _client(web, "127.0.0.5")
    _fail_until_locked(web, stranger, OPERATOR)
    # That account is locked, from this client and any other that it does not trust...
    assert _login(web, stranger, OPERATOR, OPERATOR_PIN) == 429
    assert _login(web, _client(web, "127.0.0.6"), OPERATOR, OPERATOR_PIN) == 429
    # ...but the admin at the same tablet (same address) logs in.
    assert _login(web, _client(web, "127.0.0.5"), ADMIN, ADMIN_PASSWORD) == 302


def test_a_trusted_browser_gets_in_while_a_stranger_has_its_account_locked(
    web: Harness,
) -> None:
    admin = _client(web, "127.0.0.7")
    assert _login(web, admin, ADMIN, ADMIN_PASSWORD) == 302
    device = admin.get_cookie(DEVICE_COOKIE)
    assert device is not None and device.secure and device.http_only
    admin.post("/logout", data={"csrf_token": web.csrf(admin, "/")})
    _fail_until_locked(web, _client(web, "127.0.0.8"), ADMIN)
    # A new browser with the right password: still locked (guessing stays bounded).
    assert _login(web, _client(web, "127.0.0.8"), ADMIN, ADMIN_PASSWORD) == 429
    # The admin's own browser, where they logged in before: in.
    assert _login(web, admin, ADMIN, ADMIN_PASSWORD) == 302
    # A device cookie is good for its own account only.
    other = _client(web, "127.0.0.9")
    other.set_cookie(DEVICE_COOKIE, device.value, domain="localhost")
    _fail_until_locked(web, _client(web, "127.0.0.9"), OPERATOR)
    assert _login(web, other, OPERATOR, OPERATOR_PIN) == 429


def test_an_address_over_its_budget_cannot_spray_but_a_colleague_can_log_in() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=5, max_client_failures=3, clock=lambda: now[0])
    for account in ("anna", "ben", "carl"):
        limiter.failure(Attempt(account, "127.0.0.5"))
    # Over budget: no more tries at the accounts it failed on, from that address...
    assert limiter.retry_after(Attempt("anna", "127.0.0.5")) == 30
    # ...while a first try at another account, or the same account elsewhere, goes ahead.
    assert limiter.retry_after(Attempt("dora", "127.0.0.5")) == 0
    assert limiter.retry_after(Attempt("anna", "127.0.0.6")) == 0
    # A sprayer trying ever new names runs out of those too.
    for n in range(80):
        limiter.failure(Attempt(f"name{n}", "127.0.0.5"))
    assert limiter.retry_after(Attempt("dora", "127.0.0.5")) > 0
    now[0] = 1e6  # the lockout ends
    assert limiter.retry_after(Attempt("dora", "127.0.0.5")) == 0


def test_one_client_cannot_lock_setup_for_everyone(config: Config, tmp_path: Path) -> None:
    harness = make_harness(config, tmp_path)
    try:
        code = harness.users.new_setup_code()
        form = {"username": "boss", "password": "a long password", "confirm": "a long password"}

        def setup(client: FlaskClient, typed: str) -> int:
            token = harness.csrf(client, "/setup")
            data = {**form, "code": typed, "csrf_token": token}
            return client.post("/setup", data=data).status_code

        hostile = _client(harness, "127.0.0.5")
        assert [setup(hostile, "AAAA-BBBB-CCCC") for _ in range(6)] == [403] * 5 + [429]
        assert setup(hostile, code) == 429  # that client is locked out...
        owner = _client(harness, "127.0.0.6")
        assert setup(owner, code) == 302  # ...the owner, at another address, is not
        assert harness.users.user("boss") is not None
    finally:
        close_harness(harness)
