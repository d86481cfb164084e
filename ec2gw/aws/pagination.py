"""Opaque, checksummed NextTokens over keyset queries.

A token holds the last key returned and a digest of the request's other parameters; a token
that was altered, or reused with other filters, is refused with InvalidParameterValue.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from ec2gw.errors import ServiceError

_SALT = b"ec2gw-pagination-v1"


def scope_digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(last_key: str, scope: str) -> str:
    payload = json.dumps({"k": last_key, "s": scope}, separators=(",", ":")).encode()
    mac = hmac.new(_SALT, payload, hashlib.sha256).digest()[:8]
    return base64.urlsafe_b64encode(mac + payload).decode().rstrip("=")


def decode_token(token: str, scope: str) -> str:
    bad = ServiceError(
        "InvalidParameterValue",
        "The NextToken is not valid for this request: pass back the token of the previous response unchanged, "
        "with the same filters.",
    )
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        mac, payload = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, hmac.new(_SALT, payload, hashlib.sha256).digest()[:8]):
            raise bad
        data = json.loads(payload)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or data.get("s") != scope or not isinstance(data.get("k"), str):
        raise bad
    return str(data["k"])


def check_max_results(value: int | None, low: int = 5, high: int = 1000) -> int | None:
    if value is None:
        return None
    if not low <= value <= high:
        raise ServiceError(
            "InvalidParameterValue",
            f"Value ({value}) for parameter MaxResults is invalid. Expecting a value between {low} and {high}.",
        )
    return value
