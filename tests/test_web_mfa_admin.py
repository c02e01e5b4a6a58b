"""Two-step login and the admin: the warning, admins keeping theirs, API tokens minted only
with password and code, the reset of a locked-out colleague, and `appliance mfa-reset`."""

from __future__ import annotations

import re

import pytest
from mfa_helpers import Clock, code_at, enrol, install_clock, logged_in
from web_helpers import ADMIN, ADMIN_PASSWORD, OPERATOR, OPERATOR_PIN, Harness

from appliance.web.logins import Attempt

pytest_plugins = ["web_fixtures"]  # the web fixture


@pytest.fixture
def clock(web: Harness) -> Clock:
    return install_clock(web)


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
    assert limiter.retry_after(Attempt(ADMIN, "127.0.0.1")) > 0
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
