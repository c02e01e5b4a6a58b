"""A real browser over real TLS: Debian's Chromium, driven by Playwright, through the whole
studio flow (first-boot setup, login, upload, ID photo, checks, print, customer link, finish).

Chromium trusts exactly our server key (``--ignore-certificate-errors-spki-list``) with HTTPS
errors *not* ignored; that the certificate chains to the appliance CA is checked in Python.
Screenshots of every screen go to test-output/.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from web_helpers import (
    FakePrinter,
    Harness,
    close_harness,
    jpeg_of,
    make_harness,
    studio_camera,
    three_preview_frames,
)

from appliance.config import Config
from appliance.web.server import WebServer
from appliance.web.tls import ca_certificate, spki_sha256, tls_files

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 20_000

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"
)

pytest_plugins = ["web_fixtures"]  # fixtures: web, studio, web_pipeline, write_watch


@pytest.fixture
def live(
    config: Config, tmp_path: Path, web_pipeline: Any, sample_dir: Path
) -> Iterator[tuple[WebServer, Harness]]:
    camera = studio_camera(jpeg_of(sample_dir / "astronaut.png"))
    harness = make_harness(
        config,
        tmp_path,
        pipeline=web_pipeline,
        camera=camera,
        printer=FakePrinter(),
        preview=three_preview_frames(camera),
    )
    server = WebServer(
        harness.services, bind="127.0.0.1", port=0, http_port=0, hostname="studio", addresses=[]
    )
    server.start()
    try:
        yield server, harness
    finally:
        server.stop()
        close_harness(harness)


def test_studio_flow_in_chromium(
    live: tuple[WebServer, Harness], sample_dir: Path, output_dir: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, harness = live
    state = harness.services.config.state_dir
    chain = x509.load_pem_x509_certificates(tls_files(state).server_cert.read_bytes())
    chain[0].verify_directly_issued_by(ca_certificate(state))  # type: ignore[arg-type]
    base = f"https://localhost:{server.https_port}"
    code = harness.users.new_setup_code()  # as `appliance setup-code` prints it
    problems: list[str] = []

    import time

    t0 = time.monotonic()

    def shot(page: Any, name: str) -> None:
        print(f"{time.monotonic() - t0:6.2f} {name}")
        page.screenshot(path=str(output_dir / f"{name}.png"), full_page=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_sha256(chain[0])}"],
        )
        try:
            staff = browser.new_context(
                ignore_https_errors=False, viewport={"width": 1100, "height": 900}
            )
            staff.set_default_timeout(TIMEOUT_MS)
            page = staff.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            # First boot: the login page sends us to setup; the code makes the first admin.
            page.goto(base + "/login")
            expect(page).to_have_url(base + "/setup")
            page.fill("input[name=code]", code)
            page.fill("input[name=username]", "boss")
            page.fill("input[name=password]", "a long admin password")
            page.fill("input[name=confirm]", "a long admin password")
            shot(page, "01-setup")
            page.click("button[type=submit]")
            expect(page).to_have_url(base + "/admin/")
            expect(page.locator("#status-bar")).to_contain_text("Printer: ready")
            shot(page, "02-admin-devices")

            page.goto(base + "/admin/users")
            page.fill("form.grid input[name=username]", "olga")
            page.fill("form.grid input[name=secret]", "482913")
            page.click("form.grid button[type=submit]")
            expect(page.locator("table.list")).to_contain_text("olga")
            shot(page, "03-admin-staff")
            page.click("header form button")  # log out
            expect(page).to_have_url(base + "/login")

            page.fill("input[name=username]", "olga")
            page.fill("input[name=password]", "482913")
            shot(page, "04-login")
            page.click("button[type=submit]")
            expect(page).to_have_url(base + "/")
            shot(page, "05-operator")

            page.click("#new-session")
            expect(page.locator("#step-consent")).to_be_visible()
            kiosk = staff.new_page()
            kiosk.on("pageerror", lambda e: problems.append(str(e)))
            kiosk.goto(base + "/kiosk")
            expect(kiosk.locator("#k-consent")).to_be_visible()
            shot(kiosk, "06-customer-consent")
            kiosk.click("#k-agree")
            expect(kiosk.locator("#k-capture")).to_be_visible()
            shot(kiosk, "07-customer-capture")

            expect(page.locator("#step-photo")).to_be_visible()  # followed the kiosk's consent
            page.set_input_files("#upload", str(sample_dir / "astronaut.png"))
            expect(page.locator("#step-product")).to_be_visible()
            page.select_option("#spec", "icao-35x45")
            shot(page, "08-operator-document")
            page.click("#make")
            expect(page.locator("#checks li").first).to_be_visible()
            expect(page.locator("#step-deliver")).to_be_visible()
            assert page.locator("#checks li.pass").count() >= 3
            # Each check's template is filled in by the page (no placeholder left over).
            listed = page.locator("#checks").inner_text()
            assert "mm from chin to crown" in listed and "%(" not in listed
            # A check that does not pass says what to do (the astronaut smiles).
            assert "ask for a neutral expression with the mouth closed" in listed
            expect(page.locator("#religious-covering")).not_to_be_checked()
            page.wait_for_function(
                "document.getElementById('result-preview').naturalWidth > 0", timeout=TIMEOUT_MS
            )
            shot(page, "09-operator-result")
            expect(kiosk.locator("#k-result")).to_be_visible()
            shot(kiosk, "10-customer-result")

            page.fill("#copies", "2")
            page.click("#print")
            expect(page.locator("#print-line")).to_contain_text("completed")
            printer = harness.printer
            assert printer is not None and [j.copies for j in printer.jobs.values()] == [2]
            assert next(iter(printer.sheets.values()))[:3] == b"\xff\xd8\xff"
            page.click("#link")
            expect(page.locator("#qr-box")).to_be_visible()
            shot(page, "11-operator-deliver")
            link = page.locator("#link-url").inner_text()
            assert link.startswith(base + "/d/")
            expect(kiosk.locator("#k-qr")).to_be_visible()
            shot(kiosk, "12-customer-qr")

            # The customer's phone: no login, its own browser context.
            phone = browser.new_context(
                ignore_https_errors=False, viewport={"width": 400, "height": 800}
            )
            phone.set_default_timeout(TIMEOUT_MS)
            mobile = phone.new_page()
            mobile.goto(link)
            expect(mobile.locator("#download")).to_be_visible()
            shot(mobile, "13-customer-download")
            href = mobile.locator("#download").get_attribute("href")
            fetched = mobile.evaluate(
                """async (url) => {
                    const response = await fetch(url);
                    const bytes = new Uint8Array(await response.arrayBuffer());
                    return [response.status, bytes.length, bytes[0], bytes[1]];
                }""",
                href,
            )
            assert fetched[0] == 200 and fetched[1] > 10_000 and fetched[2:] == [0xFF, 0xD8]

            page.click("#finish")
            expect(page.locator("#confirm-finish")).to_be_visible()
            shot(page, "14-operator-confirm-finish")
            page.click("#finish-yes")
            expect(page.locator("#message")).to_contain_text("Finished")
            expect(page.locator("#step-finish")).to_be_hidden()
            shot(page, "15-operator-finished")
            sessions = harness.services.sessions.sessions()
            assert all(s.state == "finished" for s in sessions)  # waits for the link only
            for session in sessions:
                harness.services.sessions.wipe(session.session_id, "operator")
            mobile.goto(link)
            assert "404" in mobile.content()
            shot(mobile, "16-customer-link-dead")
            kiosk.goto(base + "/kiosk?lang=de")
            expect(kiosk.locator("#k-idle")).to_contain_text("Willkommen")
            shot(kiosk, "17-customer-idle-german")
        finally:
            browser.close()
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
    assert not problems, problems
    assert len(list(output_dir.glob("*.png"))) == 17
    shutil.rmtree(harness.workspace_root, ignore_errors=True)
