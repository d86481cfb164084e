"""Opaque, authenticated and encrypted NextTokens over keyset queries.

A token holds the last key returned, encrypted (AES-256-CTR under a fresh nonce) and authenticated
with HMAC-SHA256 (encrypt-then-MAC) over the caller it was issued to, a digest of the request's
other parameters, the nonce and the ciphertext. Both keys derive from the installation's token key
(ec2gw.token_key: one per installation, shared by all its processes). A token that was altered,
made by another installation, reused with other filters or replayed by another caller is refused
with InvalidParameterValue, and a token shows nothing of the ids or keys it holds. This module
does no I/O: the key and the caller are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ec2gw.errors import ServiceError

#: bytes of the HMAC-SHA256 kept in a token (128 bits)
MAC_BYTES = 16
#: bytes of the random nonce (the CTR counter block is the nonce and a 32-bit block counter)
NONCE_BYTES = 12


def scope_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _subkey(key: bytes, purpose: bytes) -> bytes:
    return hmac.new(key, b"ec2gw-pagination-v2 " + purpose, hashlib.sha256).digest()


def _crypt(key: bytes, nonce: bytes, data: bytes) -> bytes:
    """AES-256-CTR both ways (the same operation encrypts and decrypts)."""
    cipher = Cipher(algorithms.AES(_subkey(key, b"encrypt")), modes.CTR(nonce + b"\0\0\0\0"))
    ctx = cipher.encryptor()
    return ctx.update(data) + ctx.finalize()


def _mac(key: bytes, caller: str, scope: str, body: bytes) -> bytes:
    bound = json.dumps([caller, scope], separators=(",", ":")).encode() + b"\n" + body
    return hmac.new(_subkey(key, b"authenticate"), bound, hashlib.sha256).digest()[:MAC_BYTES]


def encode_token(key: bytes, caller: str, last_key: str, scope: str) -> str:
    """A token for the page after ``last_key``, good only for ``caller`` and ``scope`` under ``key``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    body = nonce + _crypt(key, nonce, last_key.encode())
    return base64.urlsafe_b64encode(_mac(key, caller, scope, body) + body).decode().rstrip("=")


def decode_token(key: bytes, caller: str, token: str, scope: str) -> str:
    """The last key a token holds, or InvalidParameterValue when it was not issued under ``key`` to
    ``caller`` for ``scope``, or was altered."""
    bad = ServiceError(
        "InvalidParameterValue",
        "The NextToken is not valid for this request: pass back the token of the previous response unchanged, "
        "with the same filters and the same credentials.",
    )
    if not key:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, body = raw[:MAC_BYTES], raw[MAC_BYTES:]
        if len(body) < NONCE_BYTES or not hmac.compare_digest(mac, _mac(key, caller, scope, body)):
            raise bad
        return _crypt(key, body[:NONCE_BYTES], body[NONCE_BYTES:]).decode()
    except (ValueError, TypeError, UnicodeDecodeError):
        raise bad from None


@dataclass(frozen=True)
class Tokens:
    """Tokens for one caller under one installation's key (what providers use)."""

    key: bytes
    caller: str

    def encode(self, last_key: str, scope: str) -> str:
        return encode_token(self.key, self.caller, last_key, scope)

    def decode(self, token: str, scope: str) -> str:
        return decode_token(self.key, self.caller, token, scope)


def check_max_results(value: int | None, low: int = 5, high: int = 1000) -> int | None:
    if value is None:
        return None
    if not low <= value <= high:
        raise ServiceError(
            "InvalidParameterValue",
            f"Value ({value}) for parameter MaxResults is invalid. Expecting a value between {low} and {high}.",
        )
    return value
