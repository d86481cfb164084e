"""EC2-style resource ids: a prefix, a dash and 17 lowercase hex digits (8 accepted on input)."""

from __future__ import annotations

import re
import secrets

from ec2gw.errors import malformed_id

_ID_RE = re.compile(r"^(?P<prefix>[a-z]+)-(?P<hex>[0-9a-f]{8}|[0-9a-f]{17})\Z")

#: the error family EC2 uses for a malformed id of each prefix
MALFORMED_KIND = {
    "i": "InvalidInstanceID",
    "r": "InvalidReservationID",
    "ami": "InvalidAMIID",
    "aki": "InvalidAMIID",
    "ari": "InvalidAMIID",
    "key": "InvalidKeyPair",
    "sg": "InvalidGroupId",
    "vol": "InvalidVolumeID",
    "eipalloc": "InvalidAllocationID",
    "snap": "InvalidSnapshotID",
}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(9)[:17]}"


def is_valid(value: str, prefixes: tuple[str, ...]) -> bool:
    m = _ID_RE.match(value)
    return bool(m and m.group("prefix") in prefixes)


def check_id(value: str, *prefixes: str) -> str:
    """Return `value` if it is an id with one of `prefixes`, else raise the family's .Malformed error."""
    if not isinstance(value, str) or not is_valid(value, prefixes):
        raise malformed_id(MALFORMED_KIND.get(prefixes[0], "InvalidID"), str(value))
    return value


def new_account_id() -> str:
    return f"{secrets.randbelow(9 * 10**11) + 10**11:012d}"


def new_access_key() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return "AKEC" + "".join(secrets.choice(alphabet) for _ in range(16))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]
