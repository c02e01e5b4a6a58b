"""The REST API end to end on the real pipeline: flow, errors, limits, isolation, links, wipe."""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlsplit

import flask
from PIL import Image
from web_helpers import (
    FakePrinter,
    Harness,
    WriteWatch,
    close_harness,
    make_harness,
    multipart,
    open_link,
)

from appliance.config import Config
from appliance.session.rootlock import LOCK_NAME
from appliance.web.openapi import API_PREFIX, ROUTES, openapi_document

API = API_PREFIX + "/sessions"
MiB = 1024 * 1024

pytest_plugins = ["web_fixtures"]  # fixtures: web, studio, web_pipeline, write_watch


def _start(harness: Harness, headers: dict[str, str]) -> str:
    session_id = harness.client.post(API, headers=headers).get_json()["id"]
    response = harness.client.post(f"{API}/{session_id}/consent", headers=headers)
    assert response.get_json()["state"] == "capturing"
    return str(session_id)


def _upload(harness: Harness, session_id: str, data: bytes, headers: dict[str, str]) -> str:
    response = harness.client.post(
        f"{API}/{session_id}/photos", data=data, content_type="image/png", headers=headers
    )
    assert response.status_code == 201, response.get_json()
    return str(response.get_json()["photo_id"])


def test_full_flow_with_the_real_pipeline(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    client = studio.client
    session_id = client.post(API, headers=headers).get_json()["id"]
    astronaut = (sample_dir / "astronaut.png").read_bytes()
    # No photos before consent.
    response = client.post(
        f"{API}/{session_id}/photos", data=astronaut, content_type="image/png", headers=headers
    )
    assert response.status_code == 409 and response.get_json()["error"] == "session_state"
    client.post(f"{API}/{session_id}/consent", headers=headers)
    photo_id = _upload(studio, session_id, astronaut, headers)

    response = client.post(
        f"{API}/{session_id}/photos/{photo_id}/products",
        json={"spec": "icao-35x45", "sheet": "4x6"},
        headers=headers,
    )
    assert response.status_code == 201, response.get_json()
    made = response.get_json()
    product_id = made["product_id"]
    checks = made["report"]["checks"]
    assert checks and {c["status"] for c in checks} <= {"pass", "warn", "fail"}
    # The astronaut smiles: the failed check tells the operator what to do.
    mouth = next(c for c in checks if c["name"] == "mouth closed")
    assert mouth["status"] != "pass" and mouth["advice"].startswith("ask for a neutral")
    assert client.get(f"{API}/{session_id}", headers=headers).get_json()["state"] == "reviewing"

    for variant in ("digital", "sheet", "preview"):
        response = client.get(
            f"{API}/{session_id}/products/{product_id}/{variant}", headers=headers
        )
        assert response.status_code == 200 and response.data[:3] == b"\xff\xd8\xff"
        assert response.headers["Cache-Control"] == "no-store"
    report = client.get(f"{API}/{session_id}/products/{product_id}", headers=headers).get_json()
    assert report["report"]["checks"] == checks

    response = client.post(
        f"{API}/{session_id}/print", json={"product_id": product_id, "copies": 2}, headers=headers
    )
    assert response.status_code == 201
    job_id = response.get_json()["job_id"]
    assert studio.printer is not None and studio.printer.jobs[job_id].copies == 2
    assert studio.printer.jobs[job_id].media == "na_index-4x6_4x6in"
    assert studio.printer.sheets[job_id][:3] == b"\xff\xd8\xff"
    assert client.get(f"{API_PREFIX}/print-jobs/{job_id}", headers=headers).get_json()[
        "status"
    ] == {"job_id": job_id, "state": "completed", "reason": "job-completed-successfully"}
    assert client.get(f"{API_PREFIX}/print-jobs/nope", headers=headers).status_code == 404

    digital = client.get(f"{API}/{session_id}/products/{product_id}/digital", headers=headers)
    sheet = client.get(f"{API}/{session_id}/products/{product_id}/sheet", headers=headers)
    response = client.post(
        f"{API}/{session_id}/download-link", json={"product_id": product_id}, headers=headers
    )
    assert response.status_code == 201
    link = response.get_json()
    assert link["qr_svg"].startswith("<svg") and link["expires_at"].endswith("Z")
    assert link["uses"] == 1 and link["files"] == ["digital", "sheet"]
    response = client.post(f"{API}/{session_id}/finish", json={}, headers=headers)
    assert response.get_json()["state"] == "finished"  # waits for the customer's one use
    customer = studio.customer_client()
    files, _, path = open_link(customer, link["url"])
    assert files == {"digital": digital.data, "sheet": sheet.data}
    # One use, and the finished session then wiped itself: the link is dead, files gone.
    assert customer.get(path).status_code == 404
    assert customer.get(path + "/sealed").status_code == 404
    assert client.get(f"{API}/{session_id}", headers=headers).status_code == 404
    events = [e["event"] for e in studio.audit_events()]
    assert "print.submitted" in events and "link.redeemed" in events
    assert events[-1] == "session.wiped"
    assert studio.printer.purged == [job_id]  # the wipe purged the print job
    assert [p.name for p in studio.workspace_root.iterdir()] == [LOCK_NAME]  # only the lock


def test_finish_wipes_at_once_without_a_live_link(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    session_id = _start(studio, headers)
    _upload(studio, session_id, (sample_dir / "astronaut.png").read_bytes(), headers)
    response = studio.client.post(f"{API}/{session_id}/finish", json={}, headers=headers)
    assert response.get_json()["state"] == "wiped"
    assert studio.client.get(f"{API}/{session_id}", headers=headers).status_code == 404


def test_camera_capture_and_preview_stream(studio: Harness) -> None:
    headers = studio.bearer()
    session_id = _start(studio, headers)
    response = studio.client.post(f"{API}/{session_id}/capture", headers=headers)
    assert response.status_code == 201 and studio.camera is not None
    assert studio.camera.captures == 1  # type: ignore[attr-defined]
    client = studio.login("olga", "482913", studio.new_client())
    stream = client.get("/preview.mjpg")
    assert stream.mimetype == "multipart/x-mixed-replace"
    assert stream.data.count(b"--frame\r\nContent-Type: image/jpeg") == 3


def test_link_is_used_up_and_then_wipes(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    session_id = _start(studio, headers)
    photo_id = _upload(studio, session_id, (sample_dir / "astronaut.png").read_bytes(), headers)
    product_id = studio.client.post(
        f"{API}/{session_id}/photos/{photo_id}/products", json={}, headers=headers
    ).get_json()["product_id"]
    link = studio.client.post(
        f"{API}/{session_id}/download-link", json={"product_id": product_id}, headers=headers
    ).get_json()
    path = urlsplit(link["url"]).path + "/sealed"
    studio.client.post(f"{API}/{session_id}/finish", json={}, headers=headers)
    anonymous = studio.customer_client()
    assert studio.services.settings.link_uses == 1  # one-time means once (issue 15, item 7)
    assert anonymous.get(path).status_code == 200
    assert anonymous.get(path).status_code == 404  # used up: the session wiped itself
    assert studio.services.sessions.find(session_id) is None


def test_one_sessions_ids_do_not_reach_another_session(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    astronaut = (sample_dir / "astronaut.png").read_bytes()
    first, second = _start(studio, headers), _start(studio, headers)
    photo_a = _upload(studio, first, astronaut, headers)
    photo_b = _upload(studio, second, astronaut, headers)
    product_a = studio.client.post(
        f"{API}/{first}/photos/{photo_a}/products", json={}, headers=headers
    ).get_json()["product_id"]
    client = studio.client
    # The first session's product and photo ids, asked for under the second session.
    assert (
        client.get(f"{API}/{second}/products/{product_a}/digital", headers=headers).status_code
        == 404
    )
    assert client.get(f"{API}/{second}/products/{product_a}", headers=headers).status_code == 404
    response = client.post(f"{API}/{second}/photos/{photo_a}/products", json={}, headers=headers)
    assert response.status_code == 404
    response = client.post(
        f"{API}/{second}/download-link", json={"product_id": product_a}, headers=headers
    )
    assert response.status_code == 404
    response = client.post(f"{API}/{second}/print", json={"product_id": product_a}, headers=headers)
    assert response.status_code == 404
    # Its photo id is not a product id either, in its own session.
    assert (
        client.get(f"{API}/{second}/products/{photo_b}/digital", headers=headers).status_code == 404
    )
    # A download token of the first session says nothing about the second.
    link = client.post(
        f"{API}/{first}/download-link", json={"product_id": product_a}, headers=headers
    ).get_json()
    token = urlsplit(link["url"]).path.rsplit("/", 1)[1]
    assert (
        client.get(f"{API}/{second}/products/{token}/digital", headers=headers).status_code == 404
    )
    client.post(f"{API}/{first}/finish", json={"wipe": True}, headers=headers)
    assert studio.customer_client().get(f"/d/{token}").status_code == 404
    assert client.get(f"{API}/{second}", headers=headers).get_json()["photos"] == [photo_b]


def test_errors_map_to_status_codes(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    client = studio.client
    session_id = _start(studio, headers)
    # Not an image, declared as one (415), and an image declared as something else (415).
    response = client.post(
        f"{API}/{session_id}/photos", data=b"hello", content_type="image/jpeg", headers=headers
    )
    assert response.status_code == 415 and response.get_json()["error"] == "unsupported_media_type"
    png = (sample_dir / "coffee.png").read_bytes()
    response = client.post(
        f"{API}/{session_id}/photos", data=png, content_type="text/plain", headers=headers
    )
    assert response.status_code == 415
    # No face: 422 with the pipeline's own message.
    photo_id = _upload(studio, session_id, png, headers)
    response = client.post(
        f"{API}/{session_id}/photos/{photo_id}/products", json={}, headers=headers
    )
    assert response.status_code == 422 and response.get_json()["message"]
    # Bad body, unknown spec, unknown session.
    url = f"{API}/{session_id}/photos/{photo_id}/products"
    response = client.post(url, json={"sheet": "poster", "colour": "red"}, headers=headers)
    assert response.status_code == 400
    assert "poster" not in response.get_json()["message"]  # never echo input
    assert client.post(url, json={"spec": "mars-99"}, headers=headers).status_code == 400
    response = client.post(url, json={"religious_covering": "maybe"}, headers=headers)
    assert response.status_code == 400  # the operator's mark is a yes or no
    assert client.get(f"{API}/{'B' * 24}", headers=headers).status_code == 404
    # Devices: no camera in this harness? (the studio has one) -> use the access harness below.


def test_missing_devices_answer_503(web: Harness) -> None:
    headers = web.bearer()
    session_id = _start(web, headers)
    response = web.client.post(f"{API}/{session_id}/capture", headers=headers)
    assert response.status_code == 503 and response.get_json()["error"] == "device_unavailable"


def test_100_mb_body_is_refused_without_touching_disk(
    web: Harness, write_watch: WriteWatch
) -> None:
    headers = web.bearer()
    session_id = _start(web, headers)
    body = b"\xff\xd8\xff" + b"\x00" * (100 * MiB)
    write_watch.events.clear()
    response = web.client.post(
        f"{API}/{session_id}/photos", data=body, content_type="image/jpeg", headers=headers
    )
    assert response.status_code == 413
    assert response.get_json()["error"] == "request_entity_too_large"
    # multipart from a logged-in page, too
    client = web.login("olga", "482913", web.new_client())
    token = web.csrf(client, "/")
    data, content_type = multipart("photo", "big.jpg", "image/jpeg", body)
    write_watch.events.clear()
    response = client.post(
        f"{API}/{session_id}/photos",
        data=data,
        content_type=content_type,
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 413
    assert write_watch.outside(web.allowed_write_roots) == []


def _noise_png(side: int = 700) -> bytes:
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    stream = io.BytesIO()
    image.save(stream, "PNG")
    return stream.getvalue()


def test_multipart_upload_over_500_kb_stays_in_memory(
    web: Harness, write_watch: WriteWatch
) -> None:
    data = _noise_png()
    assert len(data) > 500 * 1024
    client = web.login("olga", "482913", web.new_client())
    token = web.csrf(client, "/")
    session_id = client.post(API, headers={"X-CSRF-Token": token}).get_json()["id"]
    client.post(f"{API}/{session_id}/consent", headers={"X-CSRF-Token": token})
    body, content_type = multipart("photo", "portrait.png", "image/png", data)
    write_watch.events.clear()
    response = client.post(
        f"{API}/{session_id}/photos",
        data=body,
        content_type=content_type,
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 201
    assert write_watch.outside(web.allowed_write_roots) == []
    assert any(path.startswith(str(web.workspace_root)) for _, path in write_watch.events)
    # The control: Werkzeug's stock request class spools the same upload to a temporary file,
    # and the watch sees it (so the empty list above means something).
    web.app.request_class = flask.Request
    write_watch.events.clear()
    client.post(
        f"{API}/{session_id}/photos",
        data=body,
        content_type=content_type,
        headers={"X-CSRF-Token": token},
    )
    assert write_watch.outside(web.allowed_write_roots) != []


def test_openapi_document_covers_every_api_route(web: Harness) -> None:
    headers = web.bearer()
    document = web.client.get(f"{API_PREFIX}/openapi.json", headers=headers).get_json()
    assert document["openapi"].startswith("3.")
    documented = {
        (method.upper(), API_PREFIX + path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    registered = set()
    for rule in web.app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX):
            path = rule.rule.replace("<any(digital, sheet, preview):variant>", "{variant}")
            path = path.replace("<", "{").replace(">", "}")
            for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
                registered.add((method, path))
    assert documented == registered
    assert len(ROUTES) == len(registered)
    assert openapi_document()["paths"]


def test_specs_and_status(web: Harness) -> None:
    headers = web.bearer()
    specs = web.client.get(f"{API_PREFIX}/specs", headers=headers).get_json()["specs"]
    assert "icao-35x45" in {spec["id"] for spec in specs}
    status = web.client.get(f"{API_PREFIX}/status", headers=headers).get_json()
    assert status["printer"] == {
        "configured": True,
        "queue": {"accepting": True, "paused": False, "reason": "", "jobs": 0},
    }
    assert status["camera"] == {"configured": False}
    assert status["workspace"]["max_bytes"] == 256 * MiB


def test_full_workspace_refuses_new_sessions_and_wipes_no_one(
    config: Config, tmp_path: Path
) -> None:
    # Room for two sessions' reserves (1 MiB each), 3 MiB per session at most.
    harness = make_harness(
        config, tmp_path, printer=FakePrinter(), workspace_bytes=(2 * MiB, 3 * MiB // 2, MiB)
    )
    try:
        harness.staff()
        headers = harness.bearer()
        filler, other = _start(harness, headers), _start(harness, headers)
        response = harness.client.post(API, headers=headers)
        assert response.status_code == 503, response.get_json()
        assert response.get_json()["error"] == "workspace_admission"
        assert "no room for another customer session" in response.get_json()["message"]
        assert str(harness.workspace_root) not in response.get_json()["message"]
        status = harness.client.get("/api/v1/status", headers=headers).get_json()["workspace"]
        assert status["room_for_a_new_session"] is False
        assert status["committed_bytes"] == 2 * MiB and status["session_reserve_bytes"] == MiB
        # Each open session can still use its reserve: an upload within it always fits.
        _upload(harness, other, _noise_png(300), headers)
        noise = _noise_png(600)  # over 1 MiB: past the reserve, into room the other was promised
        response = harness.client.post(
            f"{API}/{filler}/photos", data=noise, content_type="image/png", headers=headers
        )
        assert response.status_code == 507, response.get_json()
        for session_id in (filler, other):
            state = harness.client.get(f"{API}/{session_id}", headers=headers).get_json()
            assert state["state"] == "capturing"
        assert [e for e in harness.audit_events() if e["event"] == "session.wiped"] == []
    finally:
        close_harness(harness)


def test_a_decompression_bomb_is_refused_at_upload_before_it_is_stored(web: Harness) -> None:
    from test_decode_budget import solid_png

    headers = web.bearer()
    session_id = _start(web, headers)
    bomb = solid_png(8000, 8000)  # ~200 KB that would decode to 64 MP (256 MB in Pillow)
    response = web.client.post(
        f"{API}/{session_id}/photos", data=bomb, content_type="image/png", headers=headers
    )
    assert response.status_code == 413, response.get_json()
    assert response.get_json()["error"] == "image_too_large"
    assert "8000x8000" in response.get_json()["message"]
    assert web.services.sessions.workspace.usage() == 0  # never stored
    state = web.client.get(f"{API}/{session_id}", headers=headers).get_json()
    assert state["photos"] == [] and state["state"] == "capturing"  # and nobody was wiped
