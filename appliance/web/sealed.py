"""End-to-end sealed download links: the phone decrypts, the LAN sees only ciphertext.

A link's files (the digital ID photo and the print sheet) are put in one bundle and encrypted
with ChaCha20-Poly1305 (RFC 8439) under a fresh 256-bit key. The server stores the ciphertext;
the key goes only into the URL's fragment (``#...``), which browsers never send to a server,
so it travels from the QR code to the phone's page script without crossing the network. The
additional data binds the ciphertext to its link token. Inside the bundle is a random deletion
secret, so "Delete my photos now" proves the caller could decrypt (the token itself is visible
to anyone on the LAN).

Bundle (plaintext): ``MAGIC | u32 header length (big-endian) | header JSON | file bytes...``;
blob (stored and served): ``nonce (12) | ciphertext with tag``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

MAGIC = b"SAL1"
NONCE_BYTES = 12
KEY_BYTES = 32
DELETE_SECRET_BYTES = 32


@dataclass(frozen=True)
class SealedFile:
    kind: str  # "digital" | "sheet"
    name: str  # the file name the phone saves it as
    data: bytes
    mime: str = "image/jpeg"


@dataclass(frozen=True)
class Sealed:
    key: bytes
    blob: bytes
    delete_digest: bytes  # sha256 of the deletion secret inside the bundle

    @property
    def fragment(self) -> str:
        return b64url(self.key)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def associated_data(token: str) -> bytes:
    return b"studio-link-v1:" + token.encode("ascii")


def seal(token: str, files: Sequence[SealedFile]) -> Sealed:
    key = ChaCha20Poly1305.generate_key()
    delete_secret = os.urandom(DELETE_SECRET_BYTES)
    header = json.dumps(
        {
            "files": [
                {"kind": f.kind, "name": f.name, "type": f.mime, "size": len(f.data)} for f in files
            ],
            "delete": b64url(delete_secret),
        },
        separators=(",", ":"),
    ).encode("utf-8")
    bundle = b"".join([MAGIC, struct.pack(">I", len(header)), header, *(f.data for f in files)])
    nonce = os.urandom(NONCE_BYTES)
    blob = nonce + ChaCha20Poly1305(key).encrypt(nonce, bundle, associated_data(token))
    return Sealed(key, blob, hashlib.sha256(delete_secret).digest())


def unseal(token: str, key: bytes, blob: bytes) -> tuple[dict[str, bytes], bytes]:
    """What the phone does, in Python (tests and tools): the files by kind, and the secret."""
    bundle = ChaCha20Poly1305(key).decrypt(
        blob[:NONCE_BYTES], blob[NONCE_BYTES:], associated_data(token)
    )
    if bundle[:4] != MAGIC:
        raise ValueError("not a sealed link bundle")
    (length,) = struct.unpack(">I", bundle[4:8])
    header = json.loads(bundle[8 : 8 + length])
    offset = 8 + length
    files: dict[str, bytes] = {}
    for entry in header["files"]:
        files[entry["kind"]] = bundle[offset : offset + entry["size"]]
        offset += entry["size"]
    return files, b64url_decode(header["delete"])
