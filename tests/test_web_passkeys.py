"""Passkeys over HTTP: the relying-party id rules, what the option routes hand out, CSRF and the
lockout on the public login routes, and bad answers refused. The ceremonies themselves, with a
real authenticator, run in Chromium (tests/test_web_mfa_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

from web_helpers import ADMIN, ADMIN_PASSWORD, OPERATOR, OPERATOR_PIN, Harness

from appliance.web.passkeys import rp_id_for
from appliance.web.tls import ensure_certificates

pytest_plugins = ["web_fixtures"]  # the web fixture
JSON = {"Accept": "application/json"}


def test_the_rp_id_is_a_name_on_the_appliance_certificate(tmp_path: Path) -> None:
    from cryptography import x509

    from appliance.web.tls import tls_files

    ensure_certificates(tmp_path, hostname="studio", addresses=[])
    pem = tls_files(tmp_path).server_cert.read_bytes()
    certificate = x509.load_pem_x509_certificates(pem)[0]
    for name in ("studio", "studio.local", "localhost", "Studio.Local."):
        assert rp_id_for(name, certificate) == name.lower().rstrip(".")
    for name in ("127.0.0.1", "[::1]", "192.168.1.20", "evil.example", "local"):
        assert rp_id_for(name, certificate) is None, name
    assert rp_id_for("studio", None) is None


def test_without_a_usable_name_no_passkey_is_offered(web: Harness) -> None:
    client = web.new_client()  # the harness has no server certificate: nothing to bind to
    page = client.get("/login").get_data(as_text=True)
    assert "passkey-login" not in page
    csrf = web.csrf(client)
    response = client.post("/login/passkey/options", headers={"X-CSRF-Token": csrf, **JSON})
    assert response.status_code == 400 and response.get_json()["error"] == "unavailable"


def test_login_routes_need_csrf_count_failures_and_refuse_bad_answers(web: Harness) -> None:
    ensure_certificates(web.state_dir, hostname="studio", addresses=[])
    client = web.new_client()
    assert client.post("/login/passkey/options", headers=JSON).status_code == 403  # no CSRF
    csrf = web.csrf(client)
    headers = {"X-CSRF-Token": csrf, **JSON}
    assert 'id="passkey-login"' in client.get("/login").get_data(as_text=True)
    started = client.post("/login/passkey/options", headers=headers).get_json()
    assert started["options"]["rpId"] == "localhost"
    assert started["options"]["userVerification"] == "required"
    assert started["options"]["allowCredentials"] == []  # usernameless: the tablet picks
    bogus = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}
    answer = {"ceremony": started["ceremony"], "credential": bogus}
    response = client.post("/login/passkey", json=answer, headers=headers)
    assert response.status_code == 403 and response.get_json()["error"] == "invalid"
    # The ceremony was spent by that try.
    response = client.post("/login/passkey", json=answer, headers=headers)
    assert response.status_code == 400 and response.get_json()["error"] == "expired"
    # A passkey nobody registered counts per client only (no account to lock for everyone).
    limiter = web.app.extensions["appliance"].passkey_limiter
    for _ in range(limiter.max_client_failures - 2):
        ceremony = client.post("/login/passkey/options", headers=headers).get_json()["ceremony"]
        client.post("/login/passkey", json={**answer, "ceremony": ceremony}, headers=headers)
    ceremony = client.post("/login/passkey/options", headers=headers).get_json()["ceremony"]
    response = client.post("/login/passkey", json={**answer, "ceremony": ceremony}, headers=headers)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 30
    assert client.get("/").status_code == 302  # never logged in


def test_adding_a_passkey_needs_the_password(web: Harness) -> None:
    ensure_certificates(web.state_dir, hostname="studio", addresses=[])
    client = web.login(OPERATOR, OPERATOR_PIN, web.new_client())
    headers = {"X-CSRF-Token": web.csrf(client, "/account/"), **JSON}
    assert 'id="passkey-add"' in client.get("/account/").get_data(as_text=True)
    response = client.post("/account/passkeys/options", json={"password": "x"}, headers=headers)
    assert response.status_code == 403 and response.get_json()["error"] == "wrong_password"
    response = client.post("/account/passkeys", json={"credential": {}}, headers=headers)
    assert response.status_code == 400 and response.get_json()["error"] == "expired"
    options = client.post(
        "/account/passkeys/options", json={"password": OPERATOR_PIN}, headers=headers
    ).get_json()
    assert options["rp"]["id"] == "localhost"
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert OPERATOR not in options["user"]["id"]  # a random handle, not the name
    forged = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {"x": "y"}}
    response = client.post("/account/passkeys", json={"credential": forged}, headers=headers)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid"
    assert not web.app.extensions["appliance"].passkeys.passkeys(OPERATOR)


def test_an_admin_reset_removes_passkeys_too(web: Harness) -> None:
    # A stored record as registration leaves it (the ceremony itself runs in Chromium).
    with web.users.changing_user(OPERATOR) as record:
        record["passkeys"] = [
            {
                "id": "cred",
                "public_key": "pk",
                "sign_count": 0,
                "rp_id": "studio.local",
                "name": "Tablet",
                "created": 0,
            }
        ]
    admin = web.login(ADMIN, ADMIN_PASSWORD, web.new_client())
    csrf = web.csrf(admin, "/admin/users")
    assert f"/admin/users/{OPERATOR}/mfa-reset" in admin.get("/admin/users").get_data(as_text=True)
    admin.post(f"/admin/users/{OPERATOR}/mfa-reset", data={"csrf_token": csrf})
    assert not web.app.extensions["appliance"].passkeys.passkeys(OPERATOR)
    assert "mfa.reset" in [e["event"] for e in web.audit_events()]
    assert "cred" not in json.dumps(web.audit_events())


def test_api_tokens_cannot_add_passkeys(web: Harness) -> None:
    headers = {**web.bearer("admin"), **JSON}
    for url in ("/account/passkeys/options", "/account/passkeys", "/account/passkeys/x/remove"):
        assert web.new_client().post(url, json={}, headers=headers).status_code == 403, url
