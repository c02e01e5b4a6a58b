"""Two-step login in a real browser over real TLS (Debian's Chromium, Playwright): enrol from the
account page by the QR code, log out, log in with a code, a wrong code, a replayed code and a
recovery code; the admin's warning and reset. Screenshots of each new screen go to test-output/.

The server's TOTP clock is the test's (``StaffMfa.clock``), so the replay is certain to fall in
the same 30-second step however slow the machine is; codes come from pyotp and the secret the
page shows, and the QR code on the page is decoded (OpenCV) to the same otpauth:// URI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pyotp
import pytest
from test_web_browser import CHROMIUM, TIMEOUT_MS, launch_trusting
from web_helpers import (
    ADMIN,
    ADMIN_PASSWORD,
    OPERATOR,
    OPERATOR_PIN,
    FakePrinter,
    Harness,
    close_harness,
    make_harness,
)

from appliance.config import Config
from appliance.web.server import WebServer
from appliance.web.tls import tls_files

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)

T0 = 1_900_000_020.0
EXPECTED_REFUSALS = ("/login/code",)  # the wrong and the replayed code answer 401 on purpose


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def live(config: Config, tmp_path: Path) -> Iterator[tuple[WebServer, Harness, Clock]]:
    harness = make_harness(config, tmp_path, printer=FakePrinter())
    harness.staff()
    server = WebServer(
        harness.services, bind="127.0.0.1", port=0, http_port=0, hostname="studio", addresses=[]
    )
    clock = Clock()
    server.app.extensions["appliance"].mfa.clock = clock
    server.start()
    try:
        yield server, harness, clock
    finally:
        server.stop()
        close_harness(harness)


def decode_qr(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return str(text)


def test_two_step_login_in_chromium(
    live: tuple[WebServer, Harness, Clock], output_dir: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, harness, clock = live
    state = harness.services.config.state_dir
    from cryptography import x509

    chain = x509.load_pem_x509_certificates(tls_files(state).server_cert.read_bytes())
    base = f"https://localhost:{server.https_port}"
    problems: list[str] = []

    def shot(page: Any, name: str) -> None:
        page.screenshot(path=str(output_dir / f"{name}.png"), full_page=True)

    def watch(page: Any) -> None:
        # A failed resource shows up in the console too; the response hook below judges those.
        page.on(
            "console",
            lambda m: (
                problems.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource")
                else None
            ),
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on(
            "response",
            lambda r: (
                problems.append(f"{r.status} {r.url}")
                if r.status >= 400 and urlsplit(r.url).path not in EXPECTED_REFUSALS
                else None
            ),
        )

    def log_in(page: Any, username: str, password: str) -> None:
        page.goto(base + "/login")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("main button[type=submit]")

    def enter_code(page: Any, code: str) -> None:
        page.fill("#code", code)
        page.click("main button[type=submit]")

    with sync_playwright() as playwright:
        browser = launch_trusting(playwright, chain[0])
        try:
            tablet = browser.new_context(
                ignore_https_errors=False, viewport={"width": 1000, "height": 900}
            )
            tablet.set_default_timeout(TIMEOUT_MS)
            page = tablet.new_page()
            watch(page)

            # Enrol from the account page: password, QR code, first code, recovery codes.
            log_in(page, OPERATOR, OPERATOR_PIN)
            expect(page).to_have_url(base + "/")
            page.click("header nav a[href='/account/']")
            expect(page.locator("#mfa-off")).to_be_visible()
            shot(page, "01-account-mfa-off")
            page.fill("#enrol-password", OPERATOR_PIN)
            page.click("#enrol button[type=submit]")
            expect(page.locator("#mfa-qr")).to_be_visible()
            shot(page, "02-enrol-qr-code")
            secret = page.locator("#mfa-secret").inner_text().replace(" ", "")
            uri = decode_qr(page.locator("#mfa-qr").screenshot())
            assert uri.startswith("otpauth://totp/Studio:"), uri
            assert parse_qs(urlsplit(uri).query)["secret"] == [secret]
            totp = pyotp.TOTP(secret)
            page.fill("#confirm-code", totp.at(clock.now))
            page.click("main button[type=submit]")
            codes = page.locator("#recovery-codes code").all_inner_texts()
            assert len(codes) == 10
            shot(page, "03-recovery-codes")
            page.click("#codes-done")
            expect(page).to_have_url(base + "/")
            page.click("header form button")  # log out
            expect(page).to_have_url(base + "/login")

            # The password alone leads to the code step: wrong, replayed, then a fresh code.
            log_in(page, OPERATOR, OPERATOR_PIN)
            expect(page).to_have_url(base + "/login/code")
            shot(page, "04-login-code")
            window = {totp.at(clock.now + offset) for offset in (-30, 0, 30)}
            enter_code(page, next(c for c in ("000000", "111111", "222222") if c not in window))
            expect(page.locator("p.error")).to_have_text("Wrong code.")
            shot(page, "05-login-wrong-code")
            enter_code(page, totp.at(clock.now))  # the one that confirmed the enrolment
            expect(page.locator("p.error")).to_contain_text("already used")
            shot(page, "06-login-replayed-code")
            clock.now += 30
            enter_code(page, totp.at(clock.now))
            expect(page).to_have_url(base + "/")
            page.click("header form button")
            expect(page).to_have_url(base + "/login")

            # A recovery code instead of the phone, once.
            log_in(page, OPERATOR, OPERATOR_PIN)
            enter_code(page, codes[0])
            expect(page).to_have_url(base + "/")
            page.goto(base + "/account/")
            expect(page.locator("#mfa-on")).to_contain_text("9 recovery codes left")
            shot(page, "07-account-mfa-on")
            # New recovery codes need the password and a fresh code; the old ones stop working.
            clock.now += 30
            page.fill("#change-password", OPERATOR_PIN)
            page.fill("#change-code", totp.at(clock.now))
            page.click("#renew")
            renewed = page.locator("#recovery-codes code").all_inner_texts()
            assert len(renewed) == 10 and not set(renewed) & set(codes)
            page.click("header form button")
            log_in(page, OPERATOR, OPERATOR_PIN)
            enter_code(page, codes[0])
            expect(page.locator("p.error")).to_have_text("Wrong code.")
            expect(page).to_have_url(base + "/login/code")

            # The admin: warned while an admin has none, sees who has one, can reset it.
            office = browser.new_context(
                ignore_https_errors=False, viewport={"width": 1100, "height": 900}
            )
            office.set_default_timeout(TIMEOUT_MS)
            admin = office.new_page()
            watch(admin)
            log_in(admin, ADMIN, ADMIN_PASSWORD)
            admin.goto(base + "/admin/users")
            expect(admin.locator("#mfa-warning")).to_contain_text(ADMIN)
            row = admin.locator("tr", has_text=OPERATOR)
            expect(row.locator("td.mfa-state")).to_contain_text("on")
            shot(admin, "08-admin-staff-mfa")
            row.locator("form.mfa-reset button").click()
            expect(admin.locator("tr", has_text=OPERATOR).locator("td.mfa-state")).to_contain_text(
                "off"
            )
            admin.goto(base + "/admin/tokens")
            expect(admin.locator("#token-password")).to_be_visible()
            shot(admin, "09-admin-token-reauth")
        finally:
            browser.close()
    assert not problems, problems
    assert len(list(output_dir.glob("*.png"))) == 9
    events = [e["event"] for e in harness.audit_events()]
    assert {"mfa.enrolled", "mfa.recovery_used", "mfa.recovery_renewed", "mfa.reset"} <= set(events)


def test_passkey_on_the_tablet_in_chromium(
    live: tuple[WebServer, Harness, Clock], output_dir: Path
) -> None:
    """Chromium's virtual authenticator (DevTools WebAuthn domain) stands in for the tablet's
    platform authenticator: resident key, user verification, a real signature counter."""
    from cryptography import x509
    from playwright.sync_api import expect, sync_playwright

    server, harness, _ = live
    state = harness.services.config.state_dir
    chain = x509.load_pem_x509_certificates(tls_files(state).server_cert.read_bytes())
    base = f"https://localhost:{server.https_port}"
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_trusting(playwright, chain[0])
        try:
            tablet = browser.new_context(
                ignore_https_errors=False, viewport={"width": 1000, "height": 900}
            )
            tablet.set_default_timeout(TIMEOUT_MS)
            page = tablet.new_page()
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: (
                    problems.append(f"{r.status} {r.url}")
                    if r.status >= 400 and urlsplit(r.url).path != "/login/passkey"
                    else None
                ),
            )
            devtools = tablet.new_cdp_session(page)
            devtools.send("WebAuthn.enable")
            authenticator = devtools.send(
                "WebAuthn.addVirtualAuthenticator",
                {
                    "options": {
                        "protocol": "ctap2",
                        "transport": "internal",
                        "hasResidentKey": True,
                        "hasUserVerification": True,
                        "isUserVerified": True,
                        "automaticPresenceSimulation": True,
                    }
                },
            )["authenticatorId"]

            page.goto(base + "/login")
            expect(page.locator("#passkey-login-button")).to_be_visible()
            page.fill("input[name=username]", OPERATOR)
            page.fill("input[name=password]", OPERATOR_PIN)
            page.click("main form button[type=submit]")
            expect(page).to_have_url(base + "/")
            page.goto(base + "/account/")
            page.fill("#passkey-name", "Front desk tablet")
            page.fill("#passkey-password", OPERATOR_PIN)
            page.click("#passkey-add-button")
            expect(page.locator(".passkey-name")).to_have_text("Front desk tablet")
            shot_path = output_dir / "10-account-passkey.png"
            page.screenshot(path=str(shot_path), full_page=True)
            [stored] = harness.users.user_record(OPERATOR)["passkeys"]  # type: ignore[index]
            assert stored["rp_id"] == "localhost" and stored["name"] == "Front desk tablet"
            page.click("header form button")  # log out
            expect(page).to_have_url(base + "/login")
            page.screenshot(path=str(output_dir / "11-login-passkey.png"), full_page=True)

            # No username, no password: the tablet's passkey (with its screen lock) logs in.
            page.click("#passkey-login-button")
            expect(page).to_have_url(base + "/")
            [used] = harness.users.user_record(OPERATOR)["passkeys"]  # type: ignore[index]
            assert used["sign_count"] > stored["sign_count"]  # the counter moved on

            # Removed on the account page: the tablet still holds the key, the appliance no more.
            page.goto(base + "/account/")
            page.fill("#passkey-remove-1-password", OPERATOR_PIN)
            page.click("form.passkey button[type=submit]")
            expect(page.locator(".passkey-name")).to_have_count(0)
            page.click("header form button")
            page.click("#passkey-login-button")
            expect(page.locator("#passkey-message")).to_have_text("The passkey was not accepted.")
            expect(page).to_have_url(base + "/login")
            page.screenshot(path=str(output_dir / "12-login-passkey-refused.png"), full_page=True)
            credentials = devtools.send(
                "WebAuthn.getCredentials", {"authenticatorId": authenticator}
            )["credentials"]
            assert len(credentials) == 1  # it was the appliance that forgot it
        finally:
            browser.close()
    assert not problems, problems
    events = [e["event"] for e in harness.audit_events()]
    assert events.count("passkey.added") == 1 and events.count("passkey.removed") == 1
    assert events.count("staff.login") == 2
