"""Admin pages through the test client: staff, API tokens, defaults, audit log, printer."""

from __future__ import annotations

import json
import re

from flask.testing import FlaskClient
from web_helpers import ADMIN, ADMIN_PASSWORD, OPERATOR, OPERATOR_PIN, Harness

pytest_plugins = ["web_fixtures"]  # the web fixture


def _admin(web: Harness) -> tuple[FlaskClient, str]:
    client = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    return client, web.csrf(client, "/admin/")


def test_api_tokens_are_shown_once_and_can_be_revoked(web: Harness) -> None:
    client, csrf = _admin(web)
    page = client.post(
        "/admin/tokens",
        data={
            "name": "lab script",
            "role": "operator",
            "password": ADMIN_PASSWORD,  # minting a token re-asks it (MFA: tests/test_web_mfa)
            "csrf_token": csrf,
        },
    )
    assert page.status_code == 201
    found = re.search(r'id="new-token"[^>]*>(stk_[^<]+)<', page.get_data(as_text=True))
    assert found is not None
    token = found.group(1)
    assert (
        web.new_client()
        .get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        .status_code
        == 200
    )
    listing = client.get("/admin/tokens").get_data(as_text=True)
    assert "lab script" in listing and token not in listing
    [record] = web.users.tokens()
    client.post(f"/admin/tokens/{record.token_id}/revoke", data={"csrf_token": csrf})
    assert (
        web.new_client()
        .get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        .status_code
        == 401
    )
    events = [e["event"] for e in web.audit_events()]
    assert "api_token.created" in events and "api_token.revoked" in events
    assert "lab script" not in web.audit_path.read_text()  # names typed by staff stay out


def test_staff_pins_reset_logs_the_user_out(web: Harness) -> None:
    operator = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    client, csrf = _admin(web)
    response = client.post(
        f"/admin/users/{OPERATOR}/secret", data={"secret": "123", "csrf_token": csrf}
    )
    assert response.status_code == 400  # too short
    client.post(f"/admin/users/{OPERATOR}/secret", data={"secret": "777777", "csrf_token": csrf})
    assert operator.get("/").status_code == 302  # logged out everywhere
    web.login(OPERATOR, "777777", web.new_client())
    client.post(
        "/admin/users",
        data={"username": "kim", "role": "operator", "secret": "555555", "csrf_token": csrf},
    )
    assert web.users.user("kim") is not None
    client.post("/admin/users/kim/remove", data={"csrf_token": csrf})
    assert web.users.user("kim") is None
    response = client.post(f"/admin/users/{ADMIN}/remove", data={"csrf_token": csrf})
    assert response.status_code == 400 and web.users.user(ADMIN) is not None


def test_defaults_reach_the_operator_page(web: Harness) -> None:
    client, csrf = _admin(web)
    response = client.post(
        "/admin/defaults",
        data={"spec": "schengen-visa-35x45", "paper": "5x7", "copies": "3", "csrf_token": csrf},
    )
    assert response.status_code == 302
    html = client.get("/").get_data(as_text=True)
    assert '<option value="5x7" selected>' in html and 'data-copies="3"' in html
    assert '<option value="schengen-visa-35x45" selected>' in html
    bad = client.post(
        "/admin/defaults",
        data={"spec": "mars-1", "paper": "5x7", "copies": "3", "csrf_token": csrf},
    )
    assert bad.status_code == 400


def test_audit_view_and_export(web: Harness) -> None:
    client, _ = _admin(web)
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "audit chain ok" in page and "staff.login" in page
    export = client.get("/admin/audit/export")
    lines = [json.loads(line) for line in export.data.splitlines()]
    assert lines and lines[0]["event"] == "staff.login"
    assert web.audit_events()[-1]["event"] == "audit.exported"
    assert web.audit_events()[-1]["lines"] == len(lines)


def test_resume_printer_is_for_admins(web: Harness) -> None:
    printer = web.printer
    assert printer is not None
    printer.pause("out of paper")
    operator = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    response = operator.post("/admin/printer/resume", data={"csrf_token": web.csrf(operator, "/")})
    assert response.status_code == 403 and printer.paused
    client, csrf = _admin(web)
    status = client.get("/api/v1/status").get_json()
    assert status["printer"]["queue"]["paused"] is True
    client.post("/admin/printer/resume", data={"csrf_token": csrf})
    assert not printer.paused
