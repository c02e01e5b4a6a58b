"""The appliance CA, the server certificate, and the real servers over real TLS on loopback."""

from __future__ import annotations

import http.client
import ipaddress
import logging
import os
import re
import socket
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from web_helpers import FakePrinter, Harness, close_harness, make_harness

from appliance.config import Config
from appliance.web.server import WebServer
from appliance.web.tls import ca_certificate, ensure_certificates, fingerprint, tls_files

LAN = ipaddress.ip_address("192.168.7.20")


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        set(san.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
    )


def test_ca_and_server_certificate(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert ensure_certificates(state, hostname="studio", addresses=[LAN]) is True
    files = tls_files(state)
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(files.directory).st_mode) == 0o700
    ca = ca_certificate(state)
    assert ca is not None
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca is True
    chain = x509.load_pem_x509_certificates(files.server_cert.read_bytes())
    server = chain[0]
    server.verify_directly_issued_by(ca)
    assert chain[1] == ca
    assert _sans(server) == (
        {"studio", "studio.local", "localhost"},
        {"127.0.0.1", "::1", "192.168.7.20"},
    )
    # Same names: nothing to do. A new address: a new server certificate from the same CA.
    assert ensure_certificates(state, hostname="studio", addresses=[LAN]) is False
    moved = ipaddress.ip_address("10.0.0.9")
    assert ensure_certificates(state, hostname="studio", addresses=[moved]) is True
    assert fingerprint(ca_certificate(state)) == fingerprint(ca)  # type: ignore[arg-type]
    renewed = x509.load_pem_x509_certificates(files.server_cert.read_bytes())[0]
    assert "10.0.0.9" in _sans(renewed)[1] and "192.168.7.20" not in _sans(renewed)[1]


@pytest.fixture
def served(
    config: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[tuple[WebServer, Harness]]:
    harness = make_harness(config, tmp_path, printer=FakePrinter())
    server = WebServer(
        harness.services, bind="127.0.0.1", port=0, http_port=0, hostname="studio", addresses=[]
    )
    with caplog.at_level(logging.WARNING, logger="appliance.web.server"):
        server.start()
    try:
        yield server, harness
    finally:
        server.stop()
        close_harness(harness)


def _client_context(state: Path, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls_files(state).ca_cert))
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = maximum
    return context


def test_tls_1_2_is_refused_and_tls_1_3_chains_to_the_appliance_ca(
    served: tuple[WebServer, Harness],
) -> None:
    server, harness = served
    state = harness.services.config.state_dir
    old = _client_context(state, ssl.TLSVersion.TLSv1_2)
    with (
        socket.create_connection(("127.0.0.1", server.https_port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        old.wrap_socket(raw, server_hostname="localhost")
    modern = _client_context(state)  # verifies the chain to our CA and the host name
    with (
        socket.create_connection(("127.0.0.1", server.https_port), timeout=5) as raw,
        modern.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() == "TLSv1.3"
        peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    peer.verify_directly_issued_by(ca_certificate(state))  # type: ignore[arg-type]
    assert {"studio", "studio.local", "localhost"} <= _sans(peer)[0]
    connection = http.client.HTTPSConnection(
        "localhost", server.https_port, context=modern, timeout=5
    )
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert response.status == 200 and response.read() == b'{"status":"ok"}\n'
    assert response.getheader("Strict-Transport-Security")
    # An anonymous API call over the real server is refused too.
    connection.request("POST", "/api/v1/sessions")
    response = connection.getresponse()
    response.read()
    assert response.status == 401
    # A body over the limit is refused from its Content-Length, before it is sent.
    connection.putrequest("POST", "/api/v1/sessions/x/photos")
    connection.putheader("Content-Type", "image/jpeg")
    connection.putheader("Content-Length", str(100 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


def test_plain_http_serves_only_the_ca(served: tuple[WebServer, Harness]) -> None:
    server, harness = served
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=5)
    connection.request("GET", "/ca.crt")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == tls_files(harness.services.config.state_dir).ca_cert.read_bytes()
    connection.request("GET", "/ca")
    response = connection.getresponse()
    page = response.read().decode()
    ca = ca_certificate(harness.services.config.state_dir)
    assert response.status == 200 and fingerprint(ca) in page  # type: ignore[arg-type]
    for path in ("/", "/login", "/api/v1/status", "/static/style.css"):
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        assert response.status == 308
        assert response.getheader("Location") == f"https://127.0.0.1:{server.https_port}{path}"
    connection.close()


def test_first_start_logs_a_working_setup_code(
    served: tuple[WebServer, Harness], caplog: pytest.LogCaptureFixture
) -> None:
    _, harness = served
    text = "\n".join(record.getMessage() for record in caplog.get_records("setup"))
    found = re.search(r"setup code ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})", text)
    assert found, text
    harness.users.complete_setup(found.group(1), "boss", "a long password")
    assert not harness.users.needs_setup()
