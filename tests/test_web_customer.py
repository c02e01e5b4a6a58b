"""The customer's side at the HTTP level: sealed links, the host they name, desks and kiosks,
"Delete my photos now" and the privacy notice (issue 13 sections 1-3, issue 15 item 7)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from web_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    Harness,
    close_harness,
    make_harness,
    open_link,
    session_entries,
)

from appliance.config import Config
from appliance.session import WipeReason
from appliance.web.sealed import b64url
from appliance.web.settings import WebSettings

API = "/api/v1/sessions"
EVIL = {"Host": "evil.example"}
# The same, set after the test client picked the cookies for its own host.
EVIL_ENVIRON = {"HTTP_HOST": "evil.example"}

pytest_plugins = ["web_fixtures"]  # fixtures: web, studio, web_pipeline, write_watch


def _product(
    studio: Harness, headers: dict[str, str], photo: bytes, desk: str = "booth"
) -> tuple[str, str]:
    client = studio.client
    session_id = client.post(API, json={"desk": desk}, headers=headers).get_json()["id"]
    client.post(f"{API}/{session_id}/consent", headers=headers)
    photo_id = client.post(
        f"{API}/{session_id}/photos", data=photo, content_type="image/png", headers=headers
    ).get_json()["photo_id"]
    product_id = client.post(
        f"{API}/{session_id}/photos/{photo_id}/products", json={}, headers=headers
    ).get_json()["product_id"]
    return session_id, product_id


def _link(studio: Harness, headers: dict[str, str], session_id: str, product_id: str) -> str:
    response = studio.client.post(
        f"{API}/{session_id}/download-link", json={"product_id": product_id},
        headers=headers, environ_overrides=EVIL_ENVIRON,
    )  # fmt: skip
    assert response.status_code == 201
    return str(response.get_json()["url"])


def test_links_name_the_configured_host_never_the_host_header(
    studio: Harness, sample_dir: Path
) -> None:
    headers = studio.bearer()
    session_id, product_id = _product(studio, headers, (sample_dir / "astronaut.png").read_bytes())
    url = _link(studio, headers, session_id, product_id)
    address = studio.app.extensions["appliance"].address
    parts = urlsplit(url)
    assert "evil" not in url and parts.hostname == address.host
    assert parts.scheme == "http" and parts.port == address.http_port
    # The kiosk's QR code carries the same URL.
    kiosk, _ = studio.pair_kiosk()
    state = kiosk.get("/kiosk/state").get_json()
    assert state["qr"].startswith("data:image/svg+xml;base64,")
    desk = studio.services.actions.desk_for("booth")
    assert desk.link_url == url
    # The plain-HTTP port's redirect and the pairing page's URL do not reflect Host either.
    response = studio.customer_client().get("/somewhere", headers=EVIL)
    assert response.status_code == 308 and "evil" not in response.headers["Location"]
    assert response.headers["Location"] == address.https("/somewhere")
    admin = studio.login(ADMIN, ADMIN_PASSWORD, studio.new_client())
    token = studio.csrf(admin, "/admin/tokens")
    page = admin.post(
        "/admin/kiosks",
        data={"name": "Front", "desk": "booth", "csrf_token": token},
    )
    assert page.status_code == 201
    text = page.get_data(as_text=True)
    # The test client's Host is localhost; the page names the appliance's own address.
    assert address.host != "localhost" and address.https("/kiosk/pair") in text


def test_the_sealed_link_is_ciphertext_one_use_and_dies_at_the_wipe(
    studio: Harness, sample_dir: Path
) -> None:
    headers = studio.bearer()
    session_id, product_id = _product(studio, headers, (sample_dir / "astronaut.png").read_bytes())
    digital = studio.services.actions.read_item(session_id, product_id, "digital")
    url = _link(studio, headers, session_id, product_id)
    customer = studio.customer_client()
    path = urlsplit(url).path
    page = customer.get(path)
    assert page.status_code == 200 and b"\xff\xd8\xff" not in page.data
    assert 'src="/customer/download.js"' in page.get_data(as_text=True)
    for name in ("chacha.js", "_arx.js", "_poly1305.js", "utils.js"):
        assert customer.get(f"/customer/noble/{name}").status_code == 200
    files, secret, _ = open_link(customer, url)
    assert files["digital"] == digital and files["sheet"][:3] == b"\xff\xd8\xff"
    # The second use is refused (one-time means one), the page says the link is gone.
    assert customer.get(path + "/sealed").status_code == 404
    assert customer.get(path).status_code == 404
    # A wrong deletion secret does nothing; the session is still there.
    wrong = customer.post(path + "/delete", data=b64url(b"\x00" * 32))
    assert wrong.status_code == 404 and studio.services.sessions.find(session_id) is not None
    studio.services.sessions.wipe(session_id, WipeReason.OPERATOR)
    assert customer.post(path + "/delete", data=b64url(secret)).status_code == 404


def test_delete_my_photos_now_from_the_link(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    session_id, product_id = _product(studio, headers, (sample_dir / "astronaut.png").read_bytes())
    job = studio.client.post(
        f"{API}/{session_id}/print", json={"product_id": product_id}, headers=headers
    ).get_json()["job_id"]
    url = _link(studio, headers, session_id, product_id)
    customer = studio.customer_client()
    _, secret, path = open_link(customer, url)
    before = len(studio.audit_events())
    response = customer.post(path + "/delete", data=b64url(secret))
    assert response.status_code == 200 and response.get_json() == {"deleted": True}
    assert studio.services.sessions.find(session_id) is None
    assert session_entries(studio.workspace_root) == []  # files gone (key dropped with them)
    assert studio.printer is not None and studio.printer.purged == [job]
    assert studio.services.actions.desk_for("booth").session_id is None
    events = studio.audit_events()[before:]
    assert [e["event"] for e in events] == ["session.wiped"]
    assert events[0]["reason"] == "customer_request" and events[0]["actor"] == "customer"
    allowed = {"time", "event", "session", "actor", "outcome", "prev", "reason", "from_state"}
    assert set(events[0]) <= allowed | {"photos", "products", "links", "print_jobs"}


def test_delete_my_photos_now_from_the_kiosk(studio: Harness, sample_dir: Path) -> None:
    headers = studio.bearer()
    kiosk, kiosk_id = studio.pair_kiosk()
    session_id, _ = _product(studio, headers, (sample_dir / "astronaut.png").read_bytes())
    assert kiosk.get("/kiosk/state").get_json()["session"]["id"] == session_id
    before = len(studio.audit_events())
    token = studio.kiosk_csrf(kiosk)
    assert kiosk.post("/kiosk/delete", headers={"X-CSRF-Token": token}).status_code == 200
    assert studio.services.sessions.find(session_id) is None
    assert kiosk.get("/kiosk/state").get_json() == {"session": None}
    events = studio.audit_events()[before:]
    assert [e["event"] for e in events] == ["session.wiped"]
    assert events[0]["reason"] == "customer_request" and events[0]["actor"] == f"kiosk:{kiosk_id}"
    # Nothing left to delete now: a clear refusal, not a wipe of anything else.
    assert kiosk.post("/kiosk/delete", headers={"X-CSRF-Token": token}).status_code == 409


def test_each_kiosk_shows_only_its_own_desks_customer(studio: Harness, sample_dir: Path) -> None:
    """Two operators, two desks: a product made later at desk b never reaches desk a's kiosk
    (with one global desk it did: issue 15, item 7)."""
    headers = studio.bearer()
    photo = (sample_dir / "astronaut.png").read_bytes()
    kiosk_a, _ = studio.pair_kiosk("desk-a")
    kiosk_b, _ = studio.pair_kiosk("desk-b")
    session_a, product_a = _product(studio, headers, photo, desk="desk-a")
    session_b, product_b = _product(studio, headers, photo, desk="desk-b")
    state_a = kiosk_a.get("/kiosk/state").get_json()
    state_b = kiosk_b.get("/kiosk/state").get_json()
    assert (state_a["session"]["id"], state_a["product_id"]) == (session_a, product_a)
    assert (state_b["session"]["id"], state_b["product_id"]) == (session_b, product_b)
    shown = kiosk_a.get("/kiosk/photo.jpg")
    assert shown.data == studio.services.actions.read_item(session_a, product_a, "digital")
    # Consent and deletion at kiosk a act on desk a's session only.
    token = studio.kiosk_csrf(kiosk_a)
    kiosk_a.post("/kiosk/delete", headers={"X-CSRF-Token": token})
    assert studio.services.sessions.find(session_a) is None
    assert studio.services.sessions.find(session_b) is not None
    assert kiosk_b.get("/kiosk/state").get_json()["product_id"] == product_b


def test_the_privacy_notice_follows_the_live_config(web: Harness) -> None:
    from appliance.session import RetentionPolicy

    web.services.sessions.retention = RetentionPolicy(
        idle_timeout_s=300, max_lifetime_s=1800, download_window_s=240
    )
    kiosk, _ = web.pair_kiosk()
    english = kiosk.get("/kiosk?lang=en").get_data(as_text=True)
    for text in ("after 5 minutes without activity", "at the latest 30 minutes",
                 "works once, for 4 minutes", "never used to train models",
                 "Nothing is sent to a cloud", "Delete my photos now"):  # fmt: skip
        assert text in english, text
    german = kiosk.get("/kiosk?lang=de").get_data(as_text=True)
    expected = (
        "nach 5 Minuten ohne Aktivität",
        "spätestens 30 Minuten",
        "einmal, 4 Minuten lang",
        "nie zum Trainieren",
        "Meine Fotos jetzt löschen",
    )
    for text in expected:
        assert text in german, text


def test_the_pages_say_the_configured_number_of_uses(config: Config, tmp_path: Path) -> None:
    harness = make_harness(config, tmp_path, settings=WebSettings(link_uses=2))
    try:
        kiosk, _ = harness.pair_kiosk()
        page = kiosk.get("/kiosk?lang=en").get_data(as_text=True)
        assert "works 2 times, for 10 minutes" in page and "works once" not in page
    finally:
        close_harness(harness)


def test_the_kiosk_consents_and_captures_for_its_own_desk_only(studio: Harness) -> None:
    kiosk, kiosk_id = studio.pair_kiosk("desk-a")
    token = studio.kiosk_csrf(kiosk)
    headers = {"X-CSRF-Token": token}
    assert kiosk.post("/kiosk/consent", headers=headers).status_code == 409  # no customer yet
    studio.services.actions.start("system", "desk-b")  # another desk's customer
    assert kiosk.post("/kiosk/consent", headers=headers).status_code == 409
    session = studio.services.actions.start("system", "desk-a")
    assert kiosk.post("/kiosk/consent", headers=headers).get_json() == {"state": "capturing"}
    response = kiosk.post("/kiosk/capture", headers=headers)
    assert response.status_code == 201
    assert list(studio.services.sessions.get(session.session_id).photos) == [
        response.get_json()["photo_id"]
    ]
    assert studio.camera is not None and studio.camera.captures == 1  # type: ignore[attr-defined]
    actors = {e["actor"] for e in studio.audit_events() if e["event"] == "session.state"}
    assert f"kiosk:{kiosk_id}" in actors
