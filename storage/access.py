"""Who may do what in Cumulus, bucket and key name rules, owners as S3 shows them, and quotas.

Rules: a bucket belongs to its creator, who may do everything in it; administrators may do
everything everywhere. Everyone else (and anonymous callers) only gets what a canned ACL grants:
`public-read` on a bucket lets anyone list it, on an object lets anyone read it;
`authenticated-read` does the same for any signed-in user. The image repository bucket
(settings.image_bucket, Nimbus's "Repo") is shared: each user owns the prefix
`<image_prefix>/<user name>/` there (read, write, list) and every signed-in user may read and list
`<image_prefix>/common/`, where administrators publish shared images.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import TYPE_CHECKING, Any, Protocol

from ec2gw.errors import ServiceError
from storage import usage
from storage.context import access_denied
from storage.host import Host


class BucketLike(Protocol):
    """A bucket as the rules see it (an ORM row or a records.BucketRef)."""

    @property
    def name(self) -> str: ...

    @property
    def owner_id(self) -> int: ...

    @property
    def acl(self) -> str: ...


if TYPE_CHECKING:
    from ec2gw.aws.gateway import Principal
    from ec2gw.config import Settings

CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read")
PUBLIC = ("public-read", "public-read-write")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

_STRICT_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_LEGACY_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
MAX_KEY_BYTES = 1024


# --------------------------------------------------------------------------- names


def check_new_bucket_name(name: str) -> None:
    """S3's rules for new buckets (general purpose buckets), else InvalidBucketName."""
    bad = (
        not _STRICT_BUCKET.match(name)
        or ".." in name
        or name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        or name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
        or _is_ip(name)
    )
    if bad:
        raise invalid_bucket_name(name)


def check_bucket_name(name: str) -> None:
    """Names we can look up at all (S3's legacy rules, which the image bucket "Repo" follows)."""
    if not _LEGACY_BUCKET.match(name) or name in (".", ".."):
        raise invalid_bucket_name(name)


def invalid_bucket_name(name: str) -> ServiceError:
    return ServiceError(
        "InvalidBucketName",
        "The specified bucket is not valid: use 3-63 lowercase letters, digits, dots and hyphens, starting and "
        "ending with a letter or digit.",
        400,
        BucketName=name,
    )


def check_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise ServiceError("KeyTooLongError", "Your key is too long.", 400, MaxSizeAllowed=str(MAX_KEY_BYTES))


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
        return True
    except ValueError:
        return False


def check_canned_acl(acl: str | None) -> str | None:
    if acl is None:
        return None
    if acl not in CANNED_ACLS:
        raise ServiceError("InvalidArgument", f"The canned ACL {acl!r} is not supported here; use one of "
                           f"{', '.join(CANNED_ACLS)}.", 400, ArgumentName="x-amz-acl", ArgumentValue=acl)
    return acl


_PERMISSIONS = ("FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP")
_GRANTEE_TYPES = ("CanonicalUser", "AmazonCustomerByEmail", "Group")
#: x-amz-grant-* (as operation parameters) -> the permission they grant
GRANT_HEADERS = {"grant_read": "READ", "grant_write": "WRITE", "grant_read_acp": "READ_ACP",
                 "grant_write_acp": "WRITE_ACP", "grant_full_control": "FULL_CONTROL"}
_GRANTEE_KEYS = {"id": ("CanonicalUser", "ID"), "uri": ("Group", "URI"),
                 "emailaddress": ("AmazonCustomerByEmail", "EmailAddress")}


def acl_from_grants(grants: list[dict[str, Any]]) -> str:
    """The canned ACL a list of grants amounts to: 400 MalformedACLError for what is no grant at all,
    501 NotImplemented for grants that no canned ACL expresses."""
    public_read = auth_read = public_write = False
    for grant in grants:
        grantee, perm = grant.get("Grantee") or {}, grant.get("Permission")
        if perm not in _PERMISSIONS or grantee.get("Type") not in _GRANTEE_TYPES:
            raise ServiceError("MalformedACLError", "The XML you provided was not well-formed or did not validate "
                               "against our published schema", 400)
        if grantee.get("Type") == "CanonicalUser" and perm == "FULL_CONTROL":
            continue
        if grantee.get("URI") == ALL_USERS and perm == "READ":
            public_read = True
        elif grantee.get("URI") == ALL_USERS and perm == "WRITE":
            public_write = True
        elif grantee.get("URI") == AUTH_USERS and perm == "READ":
            auth_read = True
        else:
            raise ServiceError("NotImplemented", "Only ACLs that a canned ACL (private, public-read, "
                               "public-read-write, authenticated-read) expresses are supported.", 501)
    if public_write:
        return "public-read-write"
    return "public-read" if public_read else "authenticated-read" if auth_read else "private"


def header_grants(p: dict[str, Any]) -> list[dict[str, Any]]:
    """The grants of x-amz-grant-read/-write/-read-acp/-write-acp/-full-control
    (`uri="http://acs.amazonaws.com/groups/global/AllUsers", id="..."`)."""
    grants = []
    for param, perm in GRANT_HEADERS.items():
        value = p.get(param)
        if value is None:
            continue
        for item in str(value).split(","):
            kind, eq, who = item.strip().partition("=")
            found = _GRANTEE_KEYS.get(kind.strip().lower())
            who = who.strip().strip('"')
            if not eq or found is None or not who:
                raise ServiceError("InvalidArgument", f"Invalid grant {item.strip()[:100]!r}: use id=\"...\", "
                                   "uri=\"...\" or emailAddress=\"...\".", 400,
                                   ArgumentName="x-amz-" + param.replace("_", "-"), ArgumentValue=str(value)[:1024])
            grants.append({"Grantee": {"Type": found[0], found[1]: who}, "Permission": perm})
    return grants


def requested_acl(canned: str | None, p: dict[str, Any], principal: Principal | None) -> str:
    """The ACL a write asks for: x-amz-acl or x-amz-grant-* (as a canned ACL), never both. A grant
    to a user (id="...") other than the caller has no canned equivalent (501)."""
    grants = header_grants(p)
    if grants and canned is not None:
        raise ServiceError("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed", 400)
    if not grants:
        return check_canned_acl(canned) or "private"
    me = canonical_id(principal.account_id) if principal is not None else None
    for grant in grants:
        if grant["Grantee"]["Type"] != "Group" and grant["Grantee"].get("ID") != me:
            raise ServiceError("NotImplemented", "Only grants that a canned ACL (private, public-read, "
                               "public-read-write, authenticated-read) expresses are supported.", 501)
    return acl_from_grants(grants)


# --------------------------------------------------------------------------- owners


def canonical_id(account_id: str) -> str:
    """The 64-hex canonical user id S3 shows for an account."""
    return hashlib.sha256(f"ec2gw-canonical:{account_id}".encode()).hexdigest()


def owner_dict(account_id: str, name: str) -> dict[str, str]:
    return {"ID": canonical_id(account_id), "DisplayName": name}


# --------------------------------------------------------------------------- decisions


def _repo_prefixes(settings: Settings, principal: Principal) -> tuple[str, str]:
    own = f"{settings.image_prefix}/{principal.name}/"
    common = f"{settings.image_prefix}/common/"
    return own, common


def is_owner(principal: Principal | None, bucket: BucketLike) -> bool:
    return principal is not None and (principal.is_admin or principal.user_id == bucket.owner_id)


def can_read_object(settings: Settings, principal: Principal | None, bucket: BucketLike, key: str,
                    object_acl: str) -> bool:
    if is_owner(principal, bucket) or object_acl in PUBLIC:
        return True
    if principal is None:
        return False
    if object_acl == "authenticated-read":
        return True
    if bucket.name == settings.image_bucket:
        own, common = _repo_prefixes(settings, principal)
        return key.startswith((own, common))
    return False


def can_write_object(settings: Settings, principal: Principal | None, bucket: BucketLike, key: str) -> bool:
    if is_owner(principal, bucket):
        return True
    if principal is None:
        return False
    if bucket.acl == "public-read-write":
        return True
    if bucket.name == settings.image_bucket:
        own, _ = _repo_prefixes(settings, principal)
        return key.startswith(own)
    return False


def can_list(settings: Settings, principal: Principal | None, bucket: BucketLike, prefix: str | None) -> bool:
    if is_owner(principal, bucket) or bucket.acl in PUBLIC:
        return True
    if principal is None:
        return False
    if bucket.acl == "authenticated-read":
        return True
    if bucket.name == settings.image_bucket and prefix:
        own, common = _repo_prefixes(settings, principal)
        return prefix.startswith((own, common))
    return False


def can_see_bucket(settings: Settings, principal: Principal | None, bucket: BucketLike) -> bool:
    """HeadBucket / GetBucketLocation: anyone with some access to the bucket."""
    if can_list(settings, principal, bucket, None):
        return True
    return principal is not None and bucket.name == settings.image_bucket


def require(allowed: bool) -> None:
    if not allowed:
        raise access_denied()


def require_bucket_owner(principal: Principal | None, bucket: BucketLike) -> None:
    if not is_owner(principal, bucket):
        raise access_denied()


# --------------------------------------------------------------------------- quotas


def check_storage_quota(host: Host, user_id: int, extra_bytes: int) -> None:
    """Raise if storing `extra_bytes` more for `user_id` would pass the user's storage quota.

    The one place Cumulus asks about quotas before a body is accepted (with its announced size).
    The rule (user, group, service default: 403 QuotaExceeded) is the host's (storage/host.py).
    """
    with host.db.engine.connect() as conn:
        usage.check_quota(conn, host.storage_quota, user_id, extra_bytes)
