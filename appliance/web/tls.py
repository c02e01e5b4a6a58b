"""The appliance's own certificate authority and its server certificate.

At first start the appliance makes a CA (EC P-256, ten years) and a server certificate signed by
it whose SANs are the hostname, ``<hostname>.local``, ``localhost`` and every current LAN
address. The tablet trusts the CA once (the plain-HTTP page on the second port serves it with
its SHA-256 fingerprint); after that, a changed address only needs a new server certificate,
issued automatically. Private keys are 0600 in ``state_dir/tls``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.statefiles import write_private

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a leaf certificate
RENEW_BEFORE_DAYS = 30
_IP_COMMANDS = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def server_cert(self) -> Path:
        """The server certificate followed by the CA certificate (the chain to send)."""
        return self.directory / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.directory / "server.key"


def tls_files(state_dir: Path) -> TlsFiles:
    return TlsFiles(state_dir.absolute() / "tls")


# --- what the certificate must name --------------------------------------------------------


def _ip_command() -> str | None:
    for candidate in _IP_COMMANDS:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("ip")


def lan_addresses(timeout_s: float = 2.0) -> list[IPAddress]:
    """Global and site addresses of this machine's interfaces (``ip -j addr``), else DNS."""
    found: list[IPAddress] = []
    command = _ip_command()
    if command is not None:
        try:
            result = subprocess.run(
                [command, "-j", "addr", "show"],
                check=True,
                capture_output=True,
                timeout=timeout_s,
            )
            for interface in json.loads(result.stdout or b"[]"):
                for info in interface.get("addr_info", []):
                    if info.get("scope") in ("host", "link"):
                        continue
                    with contextlib.suppress(ValueError, TypeError):
                        found.append(ipaddress.ip_address(info.get("local")))
        except (OSError, subprocess.SubprocessError, ValueError) as error:
            logger.warning("cannot list interface addresses (%s)", type(error).__name__)
    if not found:
        with contextlib.suppress(OSError):
            for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None):
                with contextlib.suppress(ValueError):
                    address = ipaddress.ip_address(sockaddr[0])
                    if not address.is_loopback and not address.is_link_local:
                        found.append(address)
    return sorted(set(found), key=lambda a: (a.version, int(a)))


def wanted_names(
    hostname: str | None = None, addresses: list[IPAddress] | None = None
) -> tuple[list[str], list[IPAddress]]:
    """(DNS names, IP addresses) the server certificate must carry."""
    host = (hostname or socket.gethostname()).split(".")[0].lower() or "appliance"
    names = sorted({host, f"{host}.local", "localhost"})
    loopback: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    extra = lan_addresses() if addresses is None else addresses
    ips = sorted(set(loopback + list(extra)), key=lambda a: (a.version, int(a)))
    return names, ips


# --- files -----------------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> None:
    write_private(path, data, mode)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _load_ca(files: TlsFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc < _now():
        return None
    return cert, key


def _make_ca(files: TlsFiles, hostname: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Studio appliance"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Studio appliance CA ({hostname})"),
        ]
    )
    now = _now()
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(files.ca_key, _key_pem(key), 0o600)
    _write(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    logger.info("created the appliance CA, fingerprint %s", fingerprint(cert))
    return cert, key


def _issue_server(
    files: TlsFiles,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    names: list[str],
    ips: list[IPAddress],
) -> None:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ip) for ip in ips]
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM)
    chain += ca_cert.public_bytes(serialization.Encoding.PEM)
    _write(files.server_key, _key_pem(key), 0o600)
    _write(files.server_cert, chain, 0o644)
    logger.info("issued a server certificate for %s", ", ".join([*names, *map(str, ips)]))


def server_certificate(files: TlsFiles) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificates(files.server_cert.read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None


def _server_ok(
    files: TlsFiles, ca_cert: x509.Certificate, names: list[str], ips: list[IPAddress]
) -> bool:
    cert = server_certificate(files)
    if cert is None or not files.server_key.exists():
        return False
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    dns = set(san.get_values_for_type(x509.DNSName))
    have = (dns, set(san.get_values_for_type(x509.IPAddress)))
    renew_at = cert.not_valid_after_utc - dt.timedelta(days=RENEW_BEFORE_DAYS)
    return have == (set(names), set(ips)) and _now() < renew_at


def ensure_certificates(
    state_dir: Path, *, hostname: str | None = None, addresses: list[IPAddress] | None = None
) -> bool:
    """Create the CA if missing; (re)issue the server certificate if missing, stale or naming
    other addresses. Returns True when a new server certificate was written."""
    files = tls_files(state_dir)
    files.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(files.directory, 0o700)
    names, ips = wanted_names(hostname, addresses)
    ca = _load_ca(files) or _make_ca(files, names[0])
    if _server_ok(files, ca[0], names, ips):
        return False
    _issue_server(files, ca, names, ips)
    return True


def ca_certificate(state_dir: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(tls_files(state_dir).ca_cert.read_bytes())
    except (OSError, ValueError):
        return None


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as browsers show it: AB:CD:..."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def spki_sha256(cert: x509.Certificate) -> str:
    """Base64 SHA-256 of the public key info (what Chromium's SPKI pin list takes)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode("ascii")


def server_context(state_dir: Path) -> ssl.SSLContext:
    """Server-side TLS: 1.3 only (a TLS 1.2 client fails the handshake)."""
    files = tls_files(state_dir)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(files.server_cert, files.server_key)
    return context
