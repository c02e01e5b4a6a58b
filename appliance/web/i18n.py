"""Message catalogue: English message ids, one JSON file per other language, no build step.

Templates call ``_("English text", name=value)``; the text is looked up in
``i18n/<language>.json`` (``{"English text": "Übersetzung"}``) and falls back to the English id.
Placeholders use ``%(name)s`` so a translation may reorder them. The language is the ``lang``
cookie (set by ``?lang=xx``), else the best ``Accept-Language`` match, else the configured one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

from appliance.idphoto.checks import TEXTS

LANGUAGES: Mapping[str, str] = {"en": "English", "de": "Deutsch"}
# What the compliance checks say (templates with %(name)s values), shown on the operator page.
CHECK_TEXTS: tuple[str, ...] = tuple(TEXTS.values())
LANG_COOKIE = "lang"
# Texts the scripts in static/ show; the page hands them over translated (data-messages).
JS_MESSAGES: tuple[str, ...] = (
    "Camera",
    "Printer",
    "Workspace",
    "ready",
    "none",
    "not answering",
    "paused",
    "%(mib)s MiB in use",
    "%(jobs)s jobs waiting",
    "No customer session.",
    "Customer %(id)s: %(state)s",
    "started",
    "consented",
    "capturing",
    "reviewing",
    "delivering",
    "finished",
    "wiped",
    "Uploading…",
    "Taking the photo…",
    "Photo received. Choose the document.",
    "Making the photo…",
    "Done. Check the result.",
    "Sending to the printer…",
    "Print job %(id)s: %(state)s",
    "Scan with the customer's phone.",
    "Finished: every photo of this customer is wiped.",
    "Finished. The customer's link works until it is used or expires; then everything is wiped.",
    "pass",
    "warn",
    "fail",
    "Photo taken. The photographer checks it now.",
    "Logged out",
    # passkeys.js
    "Wrong password.",
    "Wrong code.",
    "That code was already used. Wait for the next one.",
    "Too many attempts. Try again in %(seconds)s seconds.",
    "The passkey was not accepted.",
    "That took too long. Try again.",
    "Passkeys work only when this page is opened by the appliance's name (for example "
    "https://studio.local:8443), not by its address.",
    "Cancelled.",
    "This browser cannot use passkeys here.",
)


@cache
def catalogue(language: str) -> Mapping[str, str]:
    """The translations for ``language`` (empty for English: the ids are English)."""
    if language == "en" or language not in LANGUAGES:
        return {}
    text = resources.files("appliance.web").joinpath(f"i18n/{language}.json").read_text("utf-8")
    data = json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"i18n/{language}.json must map message ids to strings")
    return data


def translate(language: str, message: str, **values: object) -> str:
    text = catalogue(language).get(message, message)
    return text % values if values else text


def js_messages(language: str) -> dict[str, str]:
    return {message: translate(language, message) for message in (*JS_MESSAGES, *CHECK_TEXTS)}


def negotiate(
    cookie: str | None, accept_language: Iterable[tuple[str, float]], default: str
) -> str:
    """Pick a language: explicit choice, then the browser's preference, then the default."""
    if cookie in LANGUAGES:
        return str(cookie)
    ranked = sorted(accept_language, key=lambda item: -item[1])
    for tag, _quality in ranked:
        primary = tag.split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return default if default in LANGUAGES else "en"
