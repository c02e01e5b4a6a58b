"""Passkeys (WebAuthn) for staff on the studio's own tablet, checked with the ``webauthn``
package (py_webauthn).

A passkey is a key pair made and kept by the tablet's authenticator; the appliance stores only
its public key, its id and its signature counter, in the user's record in the staff store
(``"passkeys"``), with a random user handle (``"webauthn_user"``) instead of the username.
Registration and login both require *user verification* (the tablet's screen lock PIN or
biometric), so a passkey login is possession plus knowledge: it counts as two factors.

Relying-party id: the DNS name the tablet opened the appliance by (``studio.local``,
``studio``, ``localhost``), and only if it is one of the names on the appliance's own server
certificate. WebAuthn refuses IP addresses as RP ids, and the appliance owns no registrable
domain a parent RP id could name; binding to the certificate's names keeps passkeys on the
origins the appliance CA vouches for. A passkey made on one name works only on that name (see
docs/staff-mfa.md).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from appliance.errors import ApplianceError
from appliance.web.users import UserStore

RP_NAME = "Studio"
MAX_PASSKEYS = 10
TIMEOUT_MS = 120_000


class PasskeyError(ApplianceError, ValueError):
    """A passkey response that does not verify, or one this appliance does not know."""


@dataclass(frozen=True)
class Ceremony:
    """What a registration or login must answer: the challenge, for this RP id and origin."""

    challenge: bytes
    rp_id: str
    origin: str


@dataclass(frozen=True)
class Passkey:
    credential_id: str  # base64url
    name: str
    created: int


def rp_id_for(host: str, certificate: x509.Certificate | None) -> str | None:
    """The RP id for a request to ``host`` (no port), or None where passkeys cannot work."""
    name = host.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        return None  # WebAuthn never accepts an address as RP id
    if certificate is None:
        return None
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return None
    names = {n.lower() for n in sans.value.get_values_for_type(x509.DNSName)}
    return name if name in names else None


def _label(name: str) -> str:
    label = " ".join(name.split())[:40]
    return label or "passkey"


class PasskeyStore:
    """Register, list, check and remove staff passkeys in the staff store."""

    def __init__(self, users: UserStore, *, clock: Callable[[], float] = time.time) -> None:
        self.users = users
        self.clock = clock

    def _records(self, username: str) -> list[dict[str, Any]]:
        record = self.users.user_record(username)
        found = record.get("passkeys") if record else None
        return list(found) if isinstance(found, list) else []

    def passkeys(self, username: str) -> list[Passkey]:
        return [Passkey(p["id"], p["name"], p["created"]) for p in self._records(username)]

    # --- registration ----------------------------------------------------------------------

    def registration_options(self, username: str, rp_id: str, origin: str) -> tuple[str, Ceremony]:
        """The options JSON for ``navigator.credentials.create`` and what the answer must meet."""
        with self.users.changing_user(username) as record:
            handle = record.get("webauthn_user")
            if not isinstance(handle, str):
                handle = record["webauthn_user"] = bytes_to_base64url(secrets.token_bytes(16))
        options = generate_registration_options(
            rp_id=rp_id,
            rp_name=RP_NAME,
            user_name=username,
            user_id=base64url_to_bytes(handle),
            user_display_name=username,
            timeout=TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=base64url_to_bytes(p["id"]))
                for p in self._records(username)
            ],
        )
        return options_to_json(options), Ceremony(options.challenge, rp_id, origin)

    def register(self, username: str, ceremony: Ceremony, credential: Any, name: str) -> Passkey:
        try:
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=ceremony.challenge,
                expected_rp_id=ceremony.rp_id,
                expected_origin=ceremony.origin,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as error:
            raise PasskeyError("the passkey could not be verified") from error
        passkey = Passkey(
            bytes_to_base64url(verified.credential_id), _label(name), int(self.clock())
        )
        with self.users.changing_user(username) as record:
            stored = record.setdefault("passkeys", [])
            if len(stored) >= MAX_PASSKEYS:
                raise PasskeyError(f"at most {MAX_PASSKEYS} passkeys per person")
            stored.append(
                {
                    "id": passkey.credential_id,
                    "public_key": bytes_to_base64url(verified.credential_public_key),
                    "sign_count": verified.sign_count,
                    "rp_id": ceremony.rp_id,
                    "name": passkey.name,
                    "created": passkey.created,
                }
            )
        return passkey

    def remove(self, username: str, credential_id: str) -> bool:
        if not any(p["id"] == credential_id for p in self._records(username)):
            return False
        with self.users.changing_user(username) as record:
            before = record.get("passkeys", [])
            record["passkeys"] = [p for p in before if p["id"] != credential_id]
            return len(record["passkeys"]) < len(before)

    def remove_all(self, username: str) -> int:
        count = len(self._records(username))
        if count:
            with self.users.changing_user(username) as record:
                record.pop("passkeys", None)
        return count

    # --- login -----------------------------------------------------------------------------

    @staticmethod
    def login_options(rp_id: str, origin: str) -> tuple[str, Ceremony]:
        """Options for ``navigator.credentials.get``: any passkey of this RP id (usernameless)."""
        options = generate_authentication_options(
            rp_id=rp_id,
            timeout=TIMEOUT_MS,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        return options_to_json(options), Ceremony(options.challenge, rp_id, origin)

    def owner(self, credential: Any) -> str | None:
        """Whose passkey answered (by credential id and user handle), or None."""
        try:
            credential_id = str(credential["rawId"])
            handle = credential["response"].get("userHandle")
        except (KeyError, TypeError, AttributeError):
            return None
        for username, record in self.users.user_records().items():
            for passkey in record.get("passkeys", []):
                if secrets.compare_digest(passkey["id"], credential_id):
                    if handle and handle != record.get("webauthn_user"):
                        return None
                    return username
        return None

    def authenticate(self, username: str, ceremony: Ceremony, credential: Any) -> None:
        """Verify the signature and advance the counter; PasskeyError when it does not hold."""
        credential_id = str(credential.get("rawId", ""))
        stored = next((p for p in self._records(username) if p["id"] == credential_id), None)
        if stored is None or stored["rp_id"] != ceremony.rp_id:
            raise PasskeyError("unknown passkey")
        try:
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=ceremony.challenge,
                expected_rp_id=ceremony.rp_id,
                expected_origin=ceremony.origin,
                credential_public_key=base64url_to_bytes(stored["public_key"]),
                credential_current_sign_count=int(stored["sign_count"]),
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError) as error:
            raise PasskeyError("the passkey's signature does not verify") from error
        with self.users.changing_user(username) as record:
            for passkey in record.get("passkeys", []):
                if passkey["id"] == credential_id:
                    passkey["sign_count"] = verified.new_sign_count
                    passkey["used"] = int(self.clock())


def parse_credential(body: Any) -> dict[str, Any]:
    """The credential a page sent (a ``PublicKeyCredential`` as JSON), checked for shape."""
    credential = body.get("credential") if isinstance(body, dict) else None
    if not isinstance(credential, dict) or not isinstance(credential.get("response"), dict):
        raise PasskeyError("the request carries no passkey credential")
    json.dumps(credential)  # plain JSON values only
    return credential
