"""The routes anyone may reach on the HTTPS port: health and the CA certificate.

This is the public surface there besides login, first-boot setup and kiosk pairing (privacy
invariant 6); the access test in tests/test_web_access.py names the same list, so adding here
fails it on purpose. A customer's own download link lives on the plain-HTTP port
(appliance.web.customer), end-to-end sealed, because the customer's phone does not trust the CA.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, jsonify, render_template, url_for

from appliance.web.context import web_context
from appliance.web.security import public
from appliance.web.tls import ca_certificate, fingerprint

bp = Blueprint("public", __name__)


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
