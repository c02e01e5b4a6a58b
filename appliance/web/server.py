"""The production servers, in process: HTTPS for everything, plain HTTP for the CA only.

Both run on :class:`~appliance.web.httpd.HttpServer` (an asyncio front, worker threads for
Flask; docs/web-server.md says why), HTTPS with an ``ssl.SSLContext`` whose minimum version is
TLS 1.3 (a TLS 1.2 client fails the handshake). Slow and idle clients hold no thread: requests
run only once complete, under a whole-request deadline, with connections capped per client
address and in total (:class:`~appliance.web.httpd.ServerLimits`). The server certificate is
checked every few minutes: when the LAN addresses change, a new one is issued and loaded into
the live context, so new connections get it without a restart.

The plain-HTTP port serves ``/ca.crt`` and the ``/ca`` install page (fingerprint included), the
customers' end-to-end sealed downloads (their phones do not trust the CA, and see only
ciphertext), and redirects everything else to HTTPS at the configured host.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
import threading
from typing import Any

from cryptography.hazmat.primitives import serialization
from flask import Flask, Response, g, redirect, render_template, request

from appliance.web import customer
from appliance.web.addresses import PublicAddress, choose_host
from appliance.web.app import create_app
from appliance.web.httpd import HttpServer, ServerLimits
from appliance.web.i18n import LANGUAGES, negotiate, translate
from appliance.web.public import ca_pem_response
from appliance.web.security import SECURITY_HEADERS
from appliance.web.services import WebServices
from appliance.web.settings import WebSettings
from appliance.web.tls import (
    IPAddress,
    ca_certificate,
    ensure_certificates,
    fingerprint,
    lan_addresses,
    server_context,
    tls_files,
)

logger = logging.getLogger(__name__)

CERT_CHECK_S = 600.0
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around an upload at the limit


def https_limits(settings: WebSettings) -> ServerLimits:
    """The HTTPS port's limits from the web settings (upload size, worker threads)."""
    return ServerLimits(
        max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        body_budget_bytes=3 * settings.max_upload_bytes,
        workers=settings.server_threads,
    )


def ca_port_limits(limits: ServerLimits) -> ServerLimits:
    """The CA port serves two small files: tiny bodies, two workers, fewer connections."""
    return dataclasses.replace(
        limits,
        max_body_bytes=4096,
        body_budget_bytes=256 * 1024,
        workers=2,
        max_connections=min(limits.max_connections, 64),
    )


def create_ca_app(services: WebServices, https_port: int) -> Flask:
    """The plain-HTTP app: the CA certificate, its install page, the customers' sealed
    downloads (appliance.web.customer), and redirects to HTTPS at the appliance's own address
    (``services.public_address``, set by the WebServer), never the request's Host header."""
    app = Flask("appliance.web.app", static_folder=None)
    state_dir = services.config.state_dir
    web = services.config.web

    def https_url(path: str) -> str:
        if services.public_address is not None:
            return services.public_address().https(path)
        host = choose_host(web.public_host, web.bind)
        return PublicAddress(host, https_port, web.http_port).https(path)

    @app.before_request
    def language() -> None:
        asked = request.args.get("lang")
        g.lang = negotiate(
            asked or request.cookies.get("lang"),
            request.accept_languages,
            services.settings.language,
        )

    @app.context_processor
    def template_globals() -> dict[str, Any]:
        language = g.get("lang", "en")
        return {
            "_": lambda message, **values: translate(language, message, **values),
            "lang": language,
            "languages": LANGUAGES,
        }

    @app.after_request
    def headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            if name != "Strict-Transport-Security":  # meaningless (and ignored) over HTTP
                response.headers.setdefault(name, value)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.route("/ca.crt")
    def ca_crt() -> Response:
        cert = ca_certificate(state_dir)
        if cert is None:
            return Response("no CA yet\n", status=404, mimetype="text/plain")
        return ca_pem_response(cert.public_bytes(serialization.Encoding.PEM))

    @app.route("/ca")
    def ca_page() -> Response | tuple[str, int]:
        cert = ca_certificate(state_dir)
        if cert is None:
            return Response("no CA yet\n", status=404, mimetype="text/plain")
        page = render_template(
            "ca.html",
            fingerprint=fingerprint(cert),
            subject=cert.subject.rfc4514_string(),
            download="/ca.crt",
            https_url=https_url("/"),
            stylesheet=False,
        )
        return page, 200

    customer.install(app, services)

    @app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "HEAD", "POST", "PUT", "DELETE"])
    def elsewhere(path: str) -> Response:
        return redirect(https_url("/" + path), code=308)  # type: ignore[return-value]

    return app


class WebServer:
    """Both servers, each on its own thread; ``start`` returns once they listen."""

    def __init__(
        self,
        services: WebServices,
        *,
        app: Flask | None = None,
        bind: str | None = None,
        port: int | None = None,
        http_port: int | None = None,
        hostname: str | None = None,
        addresses: list[IPAddress] | None = None,
        cert_check_s: float = CERT_CHECK_S,
        limits: ServerLimits | None = None,
    ) -> None:
        web = services.config.web
        self.services = services
        self.app = app if app is not None else create_app(services)
        self.bind = bind if bind is not None else web.bind
        self._port = web.port if port is None else port
        self._http_port = web.http_port if http_port is None else http_port
        self.hostname = hostname
        self.addresses = addresses
        self.cert_check_s = cert_check_s
        self.limits = limits if limits is not None else https_limits(services.settings)
        self._https: HttpServer | None = None
        self._http: HttpServer | None = None
        self._context: ssl.SSLContext | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._public_host: str | None = None
        # Links, QR codes and redirects name this server's own address (appliance.web.addresses).
        services.public_address = self.public_address

    @property
    def https_port(self) -> int:
        return self._https.port if self._https else self._port

    @property
    def http_port(self) -> int:
        return self._http.port if self._http else self._http_port

    def public_address(self) -> PublicAddress:
        """Where phones and kiosks are sent: config, else the bound address, else the LAN's
        first (chosen once), with the ports this server listens on."""
        if self._public_host is None:
            public_host = self.services.config.web.public_host
            self._public_host = choose_host(
                public_host, self.bind, lambda: self.addresses or lan_addresses()
            )
        return PublicAddress(self._public_host, self.https_port, self.http_port)

    def _refresh_certificate(self) -> bool:
        state_dir = self.services.config.state_dir
        renewed = ensure_certificates(state_dir, hostname=self.hostname, addresses=self.addresses)
        if renewed and self._context is not None:
            files = tls_files(state_dir)
            self._context.load_cert_chain(files.server_cert, files.server_key)
        return renewed

    def _announce_setup(self) -> None:
        users = self.services.users
        if users.needs_setup():
            code = users.new_setup_code()
            logger.warning(
                "first start: open https://<this device>:%d/setup and enter the one-time setup "
                "code %s (a new one: `appliance setup-code`)",
                self.https_port,
                code,
            )

    def start(self) -> None:
        state_dir = self.services.config.state_dir
        self._refresh_certificate()
        self._context = server_context(state_dir)
        self._https = HttpServer(
            self.app,
            bind=self.bind,
            port=self._port,
            limits=self.limits,
            tls=self._context,
            name="https",
        )
        self._http = HttpServer(
            create_ca_app(self.services, self.https_port),
            bind=self.bind,
            port=self._http_port,
            limits=ca_port_limits(self.limits),
            tls=None,
            name="http-ca",
        )
        self._https.start()
        self._http.start()
        thread = threading.Thread(
            target=self._watch_certificate, name="web-cert-check", daemon=True
        )
        thread.start()
        self._threads.append(thread)
        logger.info("web: https on %d, CA page on http %d", self.https_port, self.http_port)
        self._announce_setup()

    def _watch_certificate(self) -> None:
        while not self._stop.wait(self.cert_check_s):
            try:
                if self._refresh_certificate():
                    logger.info("web: addresses changed, new server certificate in use")
            except Exception as error:
                logger.error("web: certificate check failed (%s)", type(error).__name__)

    def stop(self) -> None:
        self._stop.set()
        for server in (self._https, self._http):
            if server is not None:
                server.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def __enter__(self) -> WebServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
