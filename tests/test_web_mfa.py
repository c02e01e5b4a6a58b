"""Staff two-step login over HTTP (Flask's test client): enrolment, the code step, replay and
drift, recovery codes, the lockout shared with the password, [web] require_mfa, admin rules,
token creation with password and code, secrets kept out of the store, the log and the audit log.

Codes are computed with pyotp from the secret the enrolment page shows; the server's TOTP clock
is the test's own (``StaffMfa.clock``), so windows and replays need no sleeping.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest
from mfa_helpers import (
    SECRET_SHOWN,
    T0,
    Clock,
    code_at,
    code_step,
    enrol,
    enrol_with_code,
    install_clock,
    logged_in,
    not_the_code,
    password_step,
)
from web_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    OPERATOR,
    OPERATOR_PIN,
    Harness,
    close_harness,
    make_harness,
)

from appliance.config import Config, parse_config
from appliance.errors import ConfigError
from appliance.web.challenges import SECOND_FACTOR_S, Expiring
from appliance.web.logins import Attempt
from appliance.web.mfa import StaffMfa
from appliance.web.settings import WebSettings

pytest_plugins = ["web_fixtures"]  # the web fixture


@pytest.fixture
def clock(web: Harness) -> Clock:
    return install_clock(web)


def test_enrol_log_out_and_log_in_with_a_code(web: Harness, clock: Clock) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    assert "mfa-off" in client.get("/account/").get_data(as_text=True)
    secret, codes = enrol(web, client, OPERATOR_PIN, clock.now)
    assert len(secret) == 32
    account = client.get("/account/").get_data(as_text=True)
    assert "10 recovery codes left" in account and secret not in account  # shown only once
    client.post("/logout", data={"csrf_token": web.csrf(client, "/")})

    # The password alone no longer logs in: it leads to the code step.
    csrf = password_step(web, client, OPERATOR, OPERATOR_PIN)
    assert not logged_in(client)
    assert code_step(client, csrf, not_the_code(secret, T0)) == 401
    # The code that confirmed the enrolment is spent: same step, refused as a replay.
    page = client.post("/login/code", data={"code": code_at(secret, T0), "csrf_token": csrf})
    assert page.status_code == 401 and "already used" in page.get_data(as_text=True)
    clock.now += 30
    assert code_step(client, csrf, code_at(secret, clock.now)) == 302
    assert logged_in(client)

    events = [e for e in web.audit_events() if e["actor"] == f"staff:{OPERATOR}"]
    assert [e["event"] for e in events] == [
        "staff.login",
        "mfa.enrolled",
        "staff.logout",
        "staff.login",
        "staff.login",
        "staff.login",
    ]
    assert [e.get("reason") for e in events[3:]] == ["bad_code", "replayed_code", None]
    # Secrets stay out of the audit log and the store holds neither secret nor codes in clear.
    stored = web.users.path.read_text()
    for text in (web.audit_path.read_text(), stored):
        assert secret not in text
        assert not any(c in text or c.replace("-", "") in text for c in codes)
    assert '"secret": "aesgcm$' in stored
    key = web.users.directory / "mfa.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and len(key.read_bytes()) == 32


def test_drift_window_and_replay_of_an_earlier_step(web: Harness, clock: Clock) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    secret, _ = enrol(web, client, OPERATOR_PIN, clock.now)
    mfa = web.app.extensions["appliance"].mfa
    clock.now += 300
    assert mfa.check(OPERATOR, code_at(secret, clock.now + 60)) == "wrong"  # two steps ahead
    assert mfa.check(OPERATOR, code_at(secret, clock.now - 60)) == "wrong"  # two steps behind
    assert mfa.check(OPERATOR, code_at(secret, clock.now + 30)) == "totp"  # a fast phone
    # The current step is within the window but earlier than the one just used: a replay.
    assert mfa.check(OPERATOR, code_at(secret, clock.now)) == "replayed"
    assert mfa.check(OPERATOR, code_at(secret, clock.now + 30)) == "replayed"
    clock.now += 60
    spaced = code_at(secret, clock.now)
    assert mfa.check(OPERATOR, f" {spaced[:3]} {spaced[3:]} ") == "totp"  # as typed off a phone
    assert mfa.check(OPERATOR, "12345") == "wrong" and mfa.check("nobody", "123456") == "wrong"


def test_a_recovery_code_logs_in_once(web: Harness, clock: Clock) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    _, codes = enrol(web, client, OPERATOR_PIN, clock.now)
    client.post("/logout", data={"csrf_token": web.csrf(client, "/")})
    csrf = password_step(web, client, OPERATOR, OPERATOR_PIN)
    typed = codes[3].lower().replace("-", " ")  # as someone types it off the paper
    assert code_step(client, csrf, typed) == 302 and logged_in(client)
    assert "9 recovery codes left" in client.get("/account/").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": web.csrf(client, "/")})
    csrf = password_step(web, client, OPERATOR, OPERATOR_PIN)
    assert code_step(client, csrf, codes[3]) == 401 and not logged_in(client)
    assert code_step(client, csrf, codes[4]) == 302 and logged_in(client)
    assert [e["event"] for e in web.audit_events()].count("mfa.recovery_used") == 2


def test_password_and_code_share_one_lockout(web: Harness, clock: Clock) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    secret, _ = enrol(web, client, OPERATOR_PIN, clock.now)
    client.post("/logout", data={"csrf_token": web.csrf(client, "/")})
    limiter = web.app.extensions["appliance"].limiter
    csrf = web.csrf(client)
    for _ in range(2):
        response = client.post(
            "/login", data={"username": OPERATOR, "password": "999999", "csrf_token": csrf}
        )
        assert response.status_code == 401
    # A right password does not wipe the count while the code is due: retyping it cannot
    # buy fresh code guesses.
    for _ in range(limiter.max_failures - 3):
        password_step(web, client, OPERATOR, OPERATOR_PIN)
        assert code_step(client, csrf, not_the_code(secret, clock.now)) == 401
    password_step(web, client, OPERATOR, OPERATOR_PIN)
    wrong = not_the_code(secret, clock.now)
    response = client.post("/login/code", data={"code": wrong, "csrf_token": csrf})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 30
    # Locked everywhere: the code step is gone, and the right password is refused too.
    assert client.get("/login/code").status_code == 302
    response = client.post(
        "/login", data={"username": OPERATOR, "password": OPERATOR_PIN, "csrf_token": csrf}
    )
    assert response.status_code == 429
    reasons = [e.get("reason") for e in web.audit_events() if e["event"] == "staff.login"]
    assert reasons[-5:] == ["bad_credentials"] * 2 + ["bad_code"] * 2 + ["rate_limited"]
    # Once the lockout ends, password and a fresh code get in and clear the count.
    limiter._clock = lambda: 10_000_000.0  # its own monotonic clock: past the lockout
    clock.now += 30
    csrf = password_step(web, client, OPERATOR, OPERATOR_PIN)
    assert code_step(client, csrf, code_at(secret, clock.now)) == 302
    assert limiter.retry_after(Attempt(OPERATOR, "127.0.0.1")) == 0


def test_the_code_step_needs_its_cookie_csrf_and_expires(web: Harness, clock: Clock) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    secret, _ = enrol(web, client, OPERATOR_PIN, clock.now)
    stranger = web.new_client()
    csrf = web.csrf(stranger)
    response = stranger.post("/login/code", data={"code": "123456", "csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    stranger.set_cookie("__Host-studio-2fa", "forged", domain="localhost")
    assert stranger.get("/login/code").headers["Location"] == "/login"
    moments = [0.0]
    context = web.app.extensions["appliance"]
    context.second_factor_due = Expiring(SECOND_FACTOR_S, clock=lambda: moments[0])
    fresh = web.new_client()
    csrf = password_step(web, fresh, OPERATOR, OPERATOR_PIN)
    clock.now += 30
    response = fresh.post("/login/code", data={"code": code_at(secret, clock.now)})
    assert response.status_code == 403  # no CSRF token
    moments[0] += SECOND_FACTOR_S + 1
    assert code_step(fresh, csrf, code_at(secret, clock.now)) == 302
    assert not logged_in(fresh)  # the pending login expired: back to the password


def test_require_mfa_sends_staff_to_enrol_first(config: Config, tmp_path: Path) -> None:
    web = make_harness(config, tmp_path, settings=WebSettings(require_mfa=True))
    try:
        web.staff()
        clock = Clock()
        web.app.extensions["appliance"].mfa.clock = clock
        client = web.new_client()
        csrf = web.csrf(client)
        response = client.post(
            "/login", data={"username": ADMIN, "password": ADMIN_PASSWORD, "csrf_token": csrf}
        )
        assert response.headers["Location"] == "/account/"
        for url in ("/", "/admin/", "/admin/tokens"):  # (/kiosk takes a paired kiosk only)
            assert client.get(url).headers["Location"] == "/account/", url
        assert client.get("/api/v1/status").status_code == 403
        page = client.get("/account/").get_data(as_text=True)
        assert 'id="must-enrol"' in page and 'id="status-bar"' not in page
        enrol(web, client, ADMIN_PASSWORD, clock.now)
        assert client.get("/admin/").status_code == 200 and logged_in(client)
        # Nobody may switch it off while the studio requires it.
        csrf = web.csrf(client, "/account/")
        clock.now += 30
        form = {"password": ADMIN_PASSWORD, "code": "123456", "csrf_token": csrf}
        assert client.post("/account/mfa/disable", data=form).status_code == 403
        assert web.app.extensions["appliance"].mfa.enrolled(ADMIN)
    finally:
        close_harness(web)


def test_operators_switch_off_and_re_enrol_with_password_and_code(
    web: Harness, clock: Clock
) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    first, _ = enrol(web, client, OPERATOR_PIN, clock.now)
    csrf = web.csrf(client, "/account/")
    clock.now += 30
    # Re-enrolling needs the current code: the password alone is refused.
    form = {"password": OPERATOR_PIN, "code": "", "csrf_token": csrf}
    assert client.post("/account/mfa/start", data=form).status_code == 401
    form["code"] = not_the_code(first, clock.now)
    assert client.post("/account/mfa/start", data=form).status_code == 401
    second, _ = enrol_with_code(web, client, first, clock)
    assert second != first
    mfa = web.app.extensions["appliance"].mfa
    clock.now += 30
    assert mfa.check(OPERATOR, code_at(first, clock.now)) == "wrong"  # the old app is out
    form = {"password": "000000", "code": code_at(second, clock.now), "csrf_token": csrf}
    assert client.post("/account/mfa/disable", data=form).status_code == 401
    form["password"] = OPERATOR_PIN
    assert client.post("/account/mfa/disable", data=form).status_code == 302
    assert not mfa.enrolled(OPERATOR)
    events = [e["event"] for e in web.audit_events()]
    assert events.count("mfa.enrolled") == 2 and events.count("mfa.disabled") == 1


def test_an_enrolment_that_waited_too_long_starts_again(web: Harness, clock: Clock) -> None:
    moments = [0.0]
    context = web.app.extensions["appliance"]
    context.enrolment_drafts = Expiring(600.0, clock=lambda: moments[0])
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    csrf = web.csrf(client, "/account/")
    page = client.post("/account/mfa/start", data={"password": OPERATOR_PIN, "csrf_token": csrf})
    found = SECRET_SHOWN.search(page.get_data(as_text=True))
    assert found is not None
    secret = found.group(1).replace(" ", "")
    wrong = client.post(
        "/account/mfa/confirm", data={"code": not_the_code(secret, clock.now), "csrf_token": csrf}
    )
    assert wrong.status_code == 401 and not context.mfa.enrolled(OPERATOR)
    moments[0] += 601
    late = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, clock.now), "csrf_token": csrf}
    )
    assert late.status_code == 400 and "took too long" in late.get_data(as_text=True)
    assert not context.mfa.enrolled(OPERATOR)


def test_a_replaced_device_key_fails_closed_and_logs_no_secret(
    web: Harness, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    secret, codes = enrol(web, client, OPERATOR_PIN, clock.now)
    other = StaffMfa(web.users, clock=clock)
    (web.users.directory / "mfa.key").write_bytes(b"\x01" * 32)
    clock.now += 30
    assert other.check(OPERATOR, code_at(secret, clock.now)) == "wrong"
    assert other.check(OPERATOR, codes[0]) == "wrong"
    assert "cannot be read" in caplog.text and secret not in caplog.text


@pytest.mark.parametrize("value", ['"sometimes"', "2"])
def test_require_mfa_is_validated_with_its_key_path(value: str) -> None:
    assert parse_config({"web": {"require_mfa": True}}).web.require_mfa is True
    with pytest.raises(ConfigError) as info:
        parse_config(tomllib.loads(f"[web]\nrequire_mfa = {value}\n"))
    assert info.value.issues[0].path == "web.require_mfa"


def test_api_tokens_have_no_account_page(web: Harness) -> None:
    headers = web.bearer("admin")
    assert web.new_client().get("/account/", headers=headers).status_code == 403
    response = web.new_client().post("/account/mfa/start", headers=headers)
    assert response.status_code == 403
