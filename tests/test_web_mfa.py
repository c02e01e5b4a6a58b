"""Staff two-step login over HTTP (Flask's test client): enrolment, the code step, replay and
drift, recovery codes, the lockout shared with the password, [web] require_mfa, admin rules,
token creation with password and code, secrets kept out of the store, the log and the audit log.

Codes are computed with pyotp from the secret the enrolment page shows; the server's TOTP clock
is the test's own (``StaffMfa.clock``), so windows and replays need no sleeping.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from pathlib import Path

import pyotp
import pytest
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

from appliance.config import Config, parse_config
from appliance.errors import ConfigError
from appliance.web.challenges import SECOND_FACTOR_S, Expiring
from appliance.web.mfa import StaffMfa
from appliance.web.settings import WebSettings

pytest_plugins = ["web_fixtures"]  # the web fixture

T0 = 1_900_000_020.0  # the start of a 30-second step
_SECRET = re.compile(r'id="mfa-secret"[^>]*>([A-Z2-7 ]+)<')
_CODES = re.compile(r'<code class="token">([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})</code>')


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(web: Harness) -> Clock:
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
    found = _SECRET.search(text)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    done = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, now), "csrf_token": csrf}
    )
    assert done.status_code == 201
    codes = _CODES.findall(done.get_data(as_text=True))
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
    assert limiter.retry_after([f"user:{OPERATOR}"]) == 0


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
        for url in ("/", "/admin/", "/admin/tokens", "/kiosk"):
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


def test_admins_keep_theirs_and_the_admin_pages_warn(web: Harness, clock: Clock) -> None:
    admin = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    warning = admin.get("/admin/users").get_data(as_text=True)
    assert 'id="mfa-warning"' in warning and "password alone: admin." in warning
    secret, _ = enrol(web, admin, ADMIN_PASSWORD, clock.now)
    assert 'id="mfa-warning"' not in admin.get("/admin/").get_data(as_text=True)
    page = admin.get("/account/").get_data(as_text=True)
    assert 'id="reenrol"' in page and 'id="disable"' not in page
    clock.now += 30
    form = {"password": ADMIN_PASSWORD, "code": code_at(secret, clock.now), "csrf_token": ""}
    form["csrf_token"] = web.csrf(admin, "/account/")
    assert admin.post("/account/mfa/disable", data=form).status_code == 403
    web.users.add_user("second", "admin", "another long password")
    assert "password alone: second." in admin.get("/admin/").get_data(as_text=True)


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


def enrol_with_code(
    web: Harness, client: FlaskClient, current: str, clock: Clock
) -> tuple[str, list[str]]:
    """Re-enrol an enrolled user: password + current code, then the new app's first code."""
    clock.now += 30
    csrf = web.csrf(client, "/account/")
    form = {"password": OPERATOR_PIN, "code": code_at(current, clock.now), "csrf_token": csrf}
    page = client.post("/account/mfa/start", data=form).get_data(as_text=True)
    found = _SECRET.search(page)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    clock.now += 30
    done = client.post(
        "/account/mfa/confirm", data={"code": code_at(secret, clock.now), "csrf_token": csrf}
    )
    assert done.status_code == 201
    return secret, _CODES.findall(done.get_data(as_text=True))


def test_creating_an_api_token_needs_password_and_code(web: Harness, clock: Clock) -> None:
    admin = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    secret, _ = enrol(web, admin, ADMIN_PASSWORD, clock.now)
    page = admin.get("/admin/tokens").get_data(as_text=True)
    assert 'id="token-password"' in page and 'id="token-code"' in page
    csrf = web.csrf(admin, "/admin/tokens")
    form = {"name": "booking", "role": "operator", "csrf_token": csrf}
    clock.now += 30
    fresh = code_at(secret, clock.now)
    assert admin.post("/admin/tokens", data=form).status_code == 401  # neither
    assert admin.post("/admin/tokens", data={**form, "code": fresh}).status_code == 401
    wrong_password = {**form, "password": "not the password", "code": fresh}
    assert admin.post("/admin/tokens", data=wrong_password).status_code == 401
    no_code = {**form, "password": ADMIN_PASSWORD}
    assert admin.post("/admin/tokens", data=no_code).status_code == 401
    made = admin.post("/admin/tokens", data={**no_code, "code": fresh})
    assert made.status_code == 201 and 'id="new-token"' in made.get_data(as_text=True)
    replayed = admin.post("/admin/tokens", data={**no_code, "code": fresh})
    assert replayed.status_code == 401 and "already used" in replayed.get_data(as_text=True)
    assert [t.name for t in web.users.tokens()] == ["booking"]
    # The failures count against the login's lockout (the success above cleared it).
    limiter = web.app.extensions["appliance"].limiter
    for _ in range(limiter.max_failures - 2):
        assert admin.post("/admin/tokens", data=form).status_code == 401
    assert admin.post("/admin/tokens", data=form).status_code == 429
    assert limiter.retry_after([f"user:{ADMIN}"]) > 0
    # The token itself is a credential as before: no code with it.
    token = re.search(r'id="new-token"[^>]*>(stk_[^<]+)<', made.get_data(as_text=True))
    assert token is not None
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    assert web.new_client().get("/api/v1/status", headers=bearer).status_code == 200


def test_an_admin_resets_a_locked_out_operator(web: Harness, clock: Clock) -> None:
    operator = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    enrol(web, operator, OPERATOR_PIN, clock.now)
    admin = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    listing = admin.get("/admin/users").get_data(as_text=True)
    assert f'/admin/users/{OPERATOR}/mfa-reset"' in listing
    assert f'/admin/users/{ADMIN}/mfa-reset"' not in listing  # not enrolled
    csrf = web.csrf(admin, "/admin/users")
    assert (
        admin.post(f"/admin/users/{OPERATOR}/mfa-reset", data={"csrf_token": csrf}).status_code
        == 302
    )
    assert not logged_in(operator)  # logged out everywhere
    assert "mfa.reset" in [e["event"] for e in web.audit_events()]
    web.login(OPERATOR, OPERATOR_PIN, operator)  # the password alone again, until re-enrolled
    assert logged_in(operator)
    # An admin cannot strip their own second factor this way; unknown users are named so.
    enrol(web, admin, ADMIN_PASSWORD, clock.now + 30)
    response = admin.post(f"/admin/users/{ADMIN}/mfa-reset", data={"csrf_token": csrf})
    assert response.status_code == 400 and web.app.extensions["appliance"].mfa.enrolled(ADMIN)
    response = admin.post("/admin/users/ghost/mfa-reset", data={"csrf_token": csrf})
    assert response.status_code == 404


def test_an_enrolment_that_waited_too_long_starts_again(web: Harness, clock: Clock) -> None:
    moments = [0.0]
    context = web.app.extensions["appliance"]
    context.enrolment_drafts = Expiring(600.0, clock=lambda: moments[0])
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    csrf = web.csrf(client, "/account/")
    page = client.post("/account/mfa/start", data={"password": OPERATOR_PIN, "csrf_token": csrf})
    found = _SECRET.search(page.get_data(as_text=True))
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


def test_the_cli_resets_the_last_admin(
    web: Harness, clock: Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    from appliance.cli import main

    admin = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    enrol(web, admin, ADMIN_PASSWORD, clock.now)
    state = ["--state-dir", str(web.state_dir)]
    assert main(["mfa-reset", ADMIN, *state]) == 0
    assert "removed" in capsys.readouterr().out
    assert not web.app.extensions["appliance"].mfa.enrolled(ADMIN)
    assert main(["mfa-reset", ADMIN, *state]) == 0
    assert "nothing to reset" in capsys.readouterr().out
    assert main(["mfa-reset", "ghost", *state]) != 0
    reset = [e for e in web.audit_events() if e["event"] == "mfa.reset"]
    assert [e["actor"] for e in reset] == ["system"]
