"""The Flask application factory.

``create_app(services, overrides)`` builds one app around the services the daemon made; the
factory reads nothing global and writes nothing, so tests build as many apps as they like.

Uploads never touch the disk (privacy invariant 1): Werkzeug's default stream factory spools
multipart files over 500 KB to a temporary file. :class:`InMemoryRequest` replaces both the
stream factory and the form parser's, so every part stays in a BytesIO, and the body limit
(``MAX_CONTENT_LENGTH``) refuses a larger body with 413 before it is read.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import IO, Any, cast

from flask import Flask, Request, Response, g, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.formparser import FormDataParser

from appliance.web import (
    account,
    admin,
    api,
    auth,
    kiosk,
    passkey_routes,
    problems,
    public,
    security,
    ui,
)
from appliance.web.context import Defaults, DefaultsStore, WebContext
from appliance.web.i18n import LANG_COOKIE, LANGUAGES, js_messages, negotiate, translate
from appliance.web.logins import LoginLimiter, LoginSessions
from appliance.web.mfa import StaffMfa
from appliance.web.passkeys import PasskeyStore
from appliance.web.services import WebServices

# Non-file form fields; Werkzeug also applies it to its 64 KiB read buffer, so keep it above.
MAX_FORM_FIELDS_BYTES = 256 * 1024
MAX_FORM_PARTS = 64


def memory_stream_factory(
    total_content_length: int | None,
    content_type: str | None,
    filename: str | None,
    content_length: int | None = None,
) -> IO[bytes]:
    """Where Werkzeug puts an uploaded file while parsing: RAM, never a temporary file."""
    return io.BytesIO()


class MemoryFormDataParser(FormDataParser):
    """A form parser that ignores any other stream factory it is handed."""

    def __init__(self, stream_factory: Any = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(memory_stream_factory, *args, **kwargs)


class InMemoryRequest(Request):
    form_data_parser_class = MemoryFormDataParser

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        return memory_stream_factory(total_content_length, content_type, filename)


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply for the parser is a ValueError (so a
    400 like any other bad JSON) instead of a RecursionError (a 500)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def _choose_language() -> None:
    settings = _context().settings
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        g.set_lang = asked
    g.lang = negotiate(
        asked or request.cookies.get(LANG_COOKIE), request.accept_languages, settings.language
    )


def _remember_language(response: Response) -> Response:
    chosen = g.get("set_lang")
    if chosen:
        security.set_cookie(response, LANG_COOKIE, chosen, max_age=365 * 24 * 3600)
    return response


def _context() -> WebContext:
    from appliance.web.context import web_context

    return web_context()


def _template_globals() -> dict[str, Any]:
    language = g.get("lang", "en")
    return {
        "_": lambda message, **values: translate(language, message, **values),
        "js_messages": lambda: js_messages(language),
        "lang": language,
        "languages": LANGUAGES,
        "who": security.current_identity(),
        "settings": _context().settings,
    }


def create_app(services: WebServices, overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the web app. ``overrides`` update Flask's config (tests: ``{"TESTING": True}``)."""
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.json = BoundedJSONProvider(app)
    settings = services.settings
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_FIELDS_BYTES,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
        PREFERRED_URL_SCHEME="https",
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        JSON_SORT_KEYS=False,
    )
    if overrides:
        app.config.update(overrides)
    product = services.config.product
    app.extensions["appliance"] = WebContext(
        services=services,
        settings=settings,
        logins=LoginSessions(settings.inactivity_logout_min * 60.0),
        limiter=LoginLimiter(),
        defaults=DefaultsStore(
            services.config.state_dir,
            Defaults(spec=product.default_spec, paper=product.default_paper),
        ),
        mfa=StaffMfa(services.users),
        passkeys=PasskeyStore(services.users),
    )
    store = app.extensions["appliance"].defaults

    def defaults() -> tuple[str, str]:
        current = store.load()
        return current.spec, current.paper

    services.actions.defaults = defaults
    app.before_request(_choose_language)
    security.install(app)
    app.after_request(_remember_language)
    app.context_processor(_template_globals)
    problems.install(app)
    blueprints = [public.bp, auth.bp, ui.bp, kiosk.bp, admin.bp, api.bp, account.bp]
    for blueprint in [*blueprints, passkey_routes.bp]:
        app.register_blueprint(blueprint)
    _public_static(app)
    return app


def _public_static(app: Flask) -> None:
    """The login page needs its stylesheet and scripts: static files are public (no data)."""
    send = app.view_functions["static"]

    @security.public
    def static(filename: str) -> Response:
        return cast(Response, send(filename=filename))

    app.view_functions["static"] = static
