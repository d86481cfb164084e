"""Opaque, authenticated NextTokens over keyset queries.

A token holds the last key returned, authenticated with HMAC-SHA256 under the installation's
token key (ec2gw.token_key: one per installation, shared by all its processes) over that key, the
caller it was issued to and a digest of the request's other parameters. A token that was altered,
made by another installation, reused with other filters or replayed by another caller is refused
with InvalidParameterValue. This module does no I/O: the key and the caller are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from ec2gw.errors import ServiceError

#: bytes of the HMAC-SHA256 kept in a token (128 bits)
MAC_BYTES = 16


def scope_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _mac(key: bytes, caller: str, scope: str, payload: bytes) -> bytes:
    signed = json.dumps(["ec2gw-pagination-v2", caller, scope], separators=(",", ":")).encode() + b"\n" + payload
    return hmac.new(key, signed, hashlib.sha256).digest()[:MAC_BYTES]


def encode_token(key: bytes, caller: str, last_key: str, scope: str) -> str:
    """A token for the page after ``last_key``, good only for ``caller`` and ``scope`` under ``key``."""
    payload = last_key.encode()
    return base64.urlsafe_b64encode(_mac(key, caller, scope, payload) + payload).decode().rstrip("=")


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
        mac, payload = raw[:MAC_BYTES], raw[MAC_BYTES:]
        if len(mac) != MAC_BYTES or not hmac.compare_digest(mac, _mac(key, caller, scope, payload)):
            raise bad
        return payload.decode()
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
