"""The message catalogue: every text the pages and scripts show has its German translation, and
the language follows the switch, then the browser, then the configured default."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from web_helpers import OPERATOR, OPERATOR_PIN, Harness

from appliance.web.i18n import (
    CHECK_TEXTS,
    JS_MESSAGES,
    LANGUAGES,
    catalogue,
    negotiate,
    translate,
)
from appliance.web.ui import BACKGROUNDS, DEFAULT_CONSENT

TEMPLATES = Path(str(resources.files("appliance.web"))) / "templates"
_CALL = re.compile(r'_\("((?:[^"\\]|\\.)*)"')

pytest_plugins = ["web_fixtures"]  # fixtures: web, studio, web_pipeline, write_watch


def _message_ids() -> set[str]:
    ids = {m.group(1) for p in TEMPLATES.rglob("*.html") for m in _CALL.finditer(p.read_text())}
    return (
        ids
        | set(JS_MESSAGES)
        | set(CHECK_TEXTS)
        | {DEFAULT_CONSENT, "admin", "operator"}
        | {name for _, name in BACKGROUNDS}
    )


def test_every_message_is_translated() -> None:
    ids = _message_ids()
    assert len(ids) > 100
    for language in LANGUAGES:
        if language == "en":
            continue
        translations = catalogue(language)
        missing = sorted(ids - set(translations))
        assert not missing, f"{language}: {missing}"
        unused = sorted(set(translations) - ids)
        assert not unused, f"{language} has translations nothing uses: {unused}"
        for message, text in translations.items():
            placeholders = sorted(re.findall(r"%\((\w+)\)s", message))
            assert sorted(re.findall(r"%\((\w+)\)s", text)) == placeholders, message


def test_translate_and_negotiate() -> None:
    assert translate("de", "Log in") == "Anmelden"
    assert translate("de", "Print job %(id)s: %(state)s", id="7", state="ok") == (
        "Druckauftrag 7: ok"
    )
    assert translate("en", "Log in") == "Log in"
    assert translate("de", "not in the catalogue") == "not in the catalogue"
    assert negotiate("de", [("en-GB", 1.0)], "en") == "de"
    assert negotiate(None, [("fr", 1.0), ("de-AT", 0.8), ("en", 0.5)], "en") == "de"
    assert negotiate("xx", [("fr", 1.0)], "de") == "de"


def test_pages_follow_accept_language_and_the_switch(web: Harness) -> None:
    client = web.new_client()
    page = client.get("/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    assert "Anmelden" in page.get_data(as_text=True) and '<html lang="de">' in page.get_data(
        as_text=True
    )
    page = client.get("/login?lang=en", headers={"Accept-Language": "de"})
    assert ">Log in<" in page.get_data(as_text=True)
    cookie = next(c for c in page.headers.getlist("Set-Cookie") if c.startswith("lang="))
    assert "Secure" in cookie and "SameSite=Strict" in cookie
    page = client.get("/login", headers={"Accept-Language": "de"})  # the choice sticks
    assert ">Log in<" in page.get_data(as_text=True)
    web.login(OPERATOR, OPERATOR_PIN, client)
    page = client.get("/?lang=de")
    html = page.get_data(as_text=True)
    assert "Neuer Kunde" in html
    holder = re.search(r'data-messages="([^"]*)"', html)
    assert holder is not None
    messages = json.loads(holder.group(1).replace("&#34;", '"').replace("&amp;", "&"))
    assert messages["Uploading…"] == "Wird hochgeladen…"
    # The compliance checks' messages reach the operator page's script translated, templates
    # and all (operator.js fills in each check's values).
    assert messages["head is %(mm)s mm from chin to crown"] == (
        "Kopf %(mm)s mm vom Kinn bis zum Scheitel"
    )
    assert set(CHECK_TEXTS) <= set(messages)
