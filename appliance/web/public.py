"""The routes anyone may reach: health, the CA certificate, and a customer's download link.

This is the whole public surface besides login and first-boot setup (privacy invariant 6); the
access test in tests/test_web_access.py names the same list, so adding here fails it on purpose.
"""

from __future__ import annotations

import re

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, jsonify, render_template, url_for

from appliance.session.state import LinkInvalidError
from appliance.web.context import web_context
from appliance.web.security import public
from appliance.web.tls import ca_certificate, fingerprint

bp = Blueprint("public", __name__)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,64}")


@bp.route("/healthz")
@public
def healthz() -> Response:
    return jsonify(status="ok")


def ca_pem_response(pem: bytes) -> Response:
    response = Response(pem, mimetype="application/x-x509-ca-cert")
    response.headers["Content-Disposition"] = 'attachment; filename="studio-appliance-ca.crt"'
    return response


@bp.route("/ca.crt")
@public
def ca_crt() -> Response:
    cert = ca_certificate(web_context().services.config.state_dir)
    if cert is None:
        return Response("no CA yet\n", status=404, mimetype="text/plain")
    return ca_pem_response(cert.public_bytes(serialization.Encoding.PEM))


@bp.route("/ca")
@public
def ca_page() -> tuple[str, int]:
    cert = ca_certificate(web_context().services.config.state_dir)
    if cert is None:
        return render_template("error.html", status=404, message="No CA yet."), 404
    return render_template(
        "ca.html",
        fingerprint=fingerprint(cert),
        subject=cert.subject.rfc4514_string(),
        download=url_for("public.ca_crt"),
        https_url=None,
        stylesheet=True,
    ), 200


def _live_token(token: str) -> str:
    if not _TOKEN.fullmatch(token) or not web_context().services.sessions.link_is_valid(token):
        raise LinkInvalidError("this download link is not valid (used, expired or unknown)")
    return token


@bp.route("/d/<token>")
@public
def download_page(token: str) -> str:
    """A page with a button, so a link preview in a chat app does not use up a download."""
    file_url = url_for(".download_file", token=_live_token(token))
    return render_template("download.html", file_url=file_url)


@bp.route("/d/<token>/id-photo.jpg")
@public
def download_file(token: str) -> Response:
    download = web_context().services.sessions.redeem_link(_live_token(token))
    response = Response(download.data, mimetype="image/jpeg")
    response.headers["Content-Disposition"] = 'attachment; filename="id-photo.jpg"'
    response.headers["Cache-Control"] = "no-store"
    return response
