"""What a refusal says: never the caller's own input, never a path or an errno (issue 15)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from web_helpers import FakePrinter, Harness, close_harness, make_harness

from appliance.config import Config
from appliance.idphoto.specs import UnknownSpecError, get_spec
from appliance.session.audit import AuditError
from appliance.session.workspace import WorkspaceFullError

pytest_plugins = ["web_fixtures"]  # fixtures: web

API = "/api/v1/sessions"


def _session(web: Harness, headers: dict[str, str]) -> str:
    response = web.client.post(API, headers=headers)
    assert response.status_code == 201
    return str(response.get_json()["id"])


def test_deeply_nested_json_is_a_400_not_a_500(web: Harness) -> None:
    headers = web.bearer()
    session_id = _session(web, headers)
    for nested in ("[" * 200_000, '{"a":' * 200_000):
        response = web.client.post(
            f"{API}/{session_id}/finish",
            data=nested,
            content_type="application/json",
            headers=headers,
        )
        assert response.status_code == 400, response.get_data(as_text=True)[:300]
        assert response.get_json()["error"] == "bad_request"
    # The session is untouched and the app still answers.
    assert web.client.get(f"{API}/{session_id}", headers=headers).status_code == 200


def test_refusals_do_not_echo_what_was_sent(web: Harness) -> None:
    headers = web.bearer()
    session_id = _session(web, headers)
    marker = "zq<b>x9</b>"
    response = web.client.post(f"{API}/{session_id}/finish", json={marker: 1}, headers=headers)
    assert response.status_code == 400
    message = response.get_json()["message"]
    assert "zq" not in message and "unknown field" in message
    response = web.client.get(f"{API}/ZQ{'B' * 22}", headers=headers)
    assert response.status_code == 404 and "ZQ" not in response.get_json()["message"]
    with pytest.raises(UnknownSpecError) as raised:
        get_spec("zq-icao-35x45")
    assert "zq" not in str(raised.value) and "icao-35x45" in str(raised.value)


def test_workspace_full_and_audit_failures_show_no_path_or_errno(
    config: Config, tmp_path: Path
) -> None:
    harness = make_harness(config, tmp_path, printer=FakePrinter())
    try:
        root = str(harness.workspace_root)
        failures = {
            "/api/v1/test-full": WorkspaceFullError(
                errno.ENOSPC, f"workspace {root} would exceed 536870912 bytes"
            ),
            "/api/v1/test-audit": AuditError(errno.EIO, f"cannot append to audit log {root}"),
        }
        for path, error in failures.items():

            def fail(error: Exception = error) -> None:
                raise error

            harness.app.add_url_rule(path, path, fail)
        headers = harness.bearer()
        for path, status in (("/api/v1/test-full", 507), ("/api/v1/test-audit", 503)):
            response = harness.client.get(path, headers=headers)
            assert response.status_code == status
            message = response.get_json()["message"]
            assert message and root not in message and "Errno" not in message, message
    finally:
        close_harness(harness)
