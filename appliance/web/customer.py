"""The customer's download, on the plain-HTTP port: a page, its scripts, one sealed bundle.

The phone does not trust the appliance's CA, so the customer's link is plain HTTP (no
certificate warning) and carries no photo in the clear: the server holds only the link's
ciphertext, the key is in the URL fragment, and the page decrypts on the phone with the pinned
@noble/ciphers (see appliance.web.sealed and docs/customer-download.md for what this does and
does not protect against). Using the link once fetches the photo and the print sheet together.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from importlib import resources

from flask import Blueprint, Response, current_app, render_template, request

from appliance.config import Config
from appliance.session.state import LinkInvalidError
from appliance.web.privacy import privacy_notice
from appliance.web.sealed import b64url_decode
from appliance.web.services import WebServices
from appliance.web.vendor_js import FIX_COMMAND, VendorJsError, js_dir, load_files

logger = logging.getLogger(__name__)

bp = Blueprint("customer", __name__)

TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")
_OWN_FILES = ("download.js", "download-check.js", "style.css")
_TYPES = {".js": "text/javascript", ".css": "text/css"}


def link_path(token: str) -> str:
    return f"/d/{token}"


@dataclass
class CustomerFiles:
    """The page's own script and stylesheet and the verified vendor files, read once."""

    own: dict[str, bytes] = field(default_factory=dict)
    vendor: dict[str, bytes] = field(default_factory=dict)
    problem: str = ""

    @classmethod
    def load(cls, config: Config) -> CustomerFiles:
        static = resources.files("appliance.web").joinpath("static")
        own = {name: static.joinpath(name).read_bytes() for name in _OWN_FILES}
        try:
            vendor = load_files(js_dir(config))
        except VendorJsError as error:
            logger.error("customer downloads cannot decrypt on phones: %s", error)
            return cls(own, {}, f"run `{FIX_COMMAND}` on the appliance")
        return cls(own, {k: v for k, v in vendor.items() if k.endswith(".js")})


def _services() -> WebServices:
    services: WebServices = current_app.extensions["customer_services"]
    return services


def _files() -> CustomerFiles:
    files: CustomerFiles = current_app.extensions["customer_files"]
    return files


def _static(data: bytes, name: str) -> Response:
    response = Response(data, mimetype=_TYPES[name[name.rindex(".") :]])
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.route("/customer/<name>")
def own_file(name: str) -> Response:
    data = _files().own.get(name)
    if data is None:
        return Response("not found\n", status=404, mimetype="text/plain")
    return _static(data, name)


@bp.route("/customer/noble/<name>")
def vendor_file(name: str) -> Response:
    files = _files()
    data = files.vendor.get(name)
    if data is None:
        status = 503 if files.problem else 404
        return Response(f"{files.problem or 'not found'}\n", status=status, mimetype="text/plain")
    return _static(data, name)


def _gone() -> tuple[str, int]:
    return render_template("customer_gone.html"), 404


@bp.route("/d/<token>")
def download_page(token: str) -> tuple[str, int]:
    """A page with no secret in it; its script fetches the sealed bundle (a link preview in a
    chat app, which runs no script, does not use the link up)."""
    services = _services()
    if not TOKEN.fullmatch(token) or not services.sessions.link_is_valid(token):
        return _gone()
    return render_template(
        "customer_download.html", token=token, notice=privacy_notice(services)
    ), 200


@bp.route("/d/<token>/sealed")
def sealed_bundle(token: str) -> Response | tuple[str, int]:
    """Ciphertext only (one use of the link): nonce, then ChaCha20-Poly1305 output."""
    if not TOKEN.fullmatch(token):
        return _gone()
    try:
        download = _services().sessions.redeem_link(token, actor="customer")
    except LinkInvalidError:
        return _gone()
    response = Response(download.data, mimetype="application/octet-stream")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/d/<token>/delete", methods=["POST"])
def delete_now(token: str) -> Response | tuple[str, int]:
    """ "Delete my photos now": the secret sealed in the bundle, sent back, wipes the session
    through the one wipe (files, key, links, print jobs) and one audit event."""
    secret_text = request.get_data(cache=False, as_text=True)[:128].strip()
    try:
        secret = b64url_decode(secret_text)
        if not TOKEN.fullmatch(token):
            raise LinkInvalidError("bad token")
        outcome = _services().sessions.wipe_by_link(token, secret)
    except (ValueError, LinkInvalidError):
        return _gone()
    _services().actions.clear_desk(outcome.session_id)
    return Response('{"deleted": true}\n', mimetype="application/json")


def install(app: object, services: WebServices) -> None:
    """Register on the plain-HTTP app (``create_ca_app``)."""
    from flask import Flask

    assert isinstance(app, Flask)
    app.extensions["customer_services"] = services
    app.extensions["customer_files"] = CustomerFiles.load(services.config)
    app.register_blueprint(bp)
