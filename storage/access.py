"""Who may do what in Cumulus, bucket and key name rules, owners as S3 shows them, and quotas.

Rules: a bucket belongs to its creator, who may do everything in it (administrators may do
everything everywhere); an object's owner (who wrote it) may read it and read and change its ACL.
Everyone else (and anonymous callers) only gets what a grant gives, from a canned ACL or from
explicit grants to a user's canonical ID or to the AllUsers / AuthenticatedUsers groups:
on a bucket READ lists it, WRITE stores, replaces and deletes objects in it, READ_ACP / WRITE_ACP
read / change the bucket's ACL; on an object READ reads it, READ_ACP / WRITE_ACP read / change
the object's ACL (WRITE is kept and shown but gives nothing on an object, as on S3); FULL_CONTROL
is all of them. Bucket WRITE never gives anything on the objects already there but the right to
replace or delete them. The image repository bucket (settings.image_bucket, Nimbus's "Repo") is
shared: each user owns the prefix `<image_prefix>/<user name>/` there (read, write, list) and every
signed-in user may read and list `<image_prefix>/common/`, where only administrators write.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Callable
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

    @property
    def grants(self) -> str | None: ...


class ObjectLike(Protocol):
    """An object (or multipart upload) as the rules see it (a records.ObjectInfo)."""

    @property
    def owner_id(self) -> int: ...

    @property
    def acl(self) -> str: ...

    @property
    def grants(self) -> str | None: ...


if TYPE_CHECKING:
    from ec2gw.aws.gateway import Principal
    from ec2gw.config import Settings

CANNED_ACLS = ("private", "public-read", "public-read-write", "authenticated-read")
PUBLIC = ("public-read", "public-read-write")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"

_STRICT_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_LEGACY_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}\Z")
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


PERMISSIONS = ("FULL_CONTROL", "WRITE", "WRITE_ACP", "READ", "READ_ACP")
GROUPS = (ALL_USERS, AUTH_USERS)
_GRANTEE_TYPES = ("CanonicalUser", "AmazonCustomerByEmail", "Group")
#: x-amz-grant-* (as operation parameters) -> the permission they grant
GRANT_HEADERS = {"grant_read": "READ", "grant_write": "WRITE", "grant_read_acp": "READ_ACP",
                 "grant_write_acp": "WRITE_ACP", "grant_full_control": "FULL_CONTROL"}
_GRANTEE_KEYS = {"id": ("CanonicalUser", "ID"), "uri": ("Group", "URI"),
                 "emailaddress": ("AmazonCustomerByEmail", "EmailAddress")}
_CANONICAL_RE = re.compile(r"^[0-9a-f]{64}$")

#: a grant as stored: (grantee, permission); the grantee is a group URI or a 64-hex canonical user id
Grant = tuple[str, str]


def canned_grants(acl: str) -> list[Grant]:
    """The grants a canned ACL gives beyond the owner's FULL_CONTROL."""
    if acl == "public-read":
        return [(ALL_USERS, "READ")]
    if acl == "public-read-write":
        return [(ALL_USERS, "READ"), (ALL_USERS, "WRITE")]
    if acl == "authenticated-read":
        return [(AUTH_USERS, "READ")]
    return []


def stored_grants(acl: str, grants: str | None) -> list[Grant]:
    """Every grant of a bucket, object or upload (its canned ACL's and its explicit ones), owner aside."""
    out = canned_grants(acl)
    if grants:
        out += [(str(g), str(p)) for g, p in json.loads(grants)]
    return out


def malformed_acl() -> ServiceError:
    return ServiceError("MalformedACLError", "The XML you provided was not well-formed or did not validate against our "
                        "published schema: give each Grant a Grantee (CanonicalUser with ID, Group with URI) and a "
                        "Permission (FULL_CONTROL, WRITE, WRITE_ACP, READ, READ_ACP).", 400)


def resolve_grants(grants: list[dict[str, Any]], owner: str | None, known: Callable[[str], bool]) -> list[Grant]:
    """AccessControlPolicy / x-amz-grant-* grants as stored grants, each one applied or refused.

    A CanonicalUser grantee must be a user of this service (`known(canonical id)`), else 400
    InvalidArgument; an email grantee is 400 UnresolvableGrantByEmailAddress (accounts have no
    email address here); a group other than AllUsers and AuthenticatedUsers is 400 InvalidArgument.
    Grants to the owner (`owner`, its canonical id) are left out: the owner has FULL_CONTROL anyway.
    """
    out: list[Grant] = []
    for grant in grants:
        grantee, perm = grant.get("Grantee") or {}, grant.get("Permission")
        kind = grantee.get("Type")
        if perm not in PERMISSIONS or kind not in _GRANTEE_TYPES:
            raise malformed_acl()
        if kind == "AmazonCustomerByEmail":
            raise ServiceError("UnresolvableGrantByEmailAddress", "The email address you provided does not match any "
                               "account on record: grant to a user's canonical ID (id=\"...\", shown as Owner ID by "
                               "ListBuckets) instead.", 400, EmailAddressProvided=str(grantee.get("EmailAddress", "")))
        if kind == "Group":
            uri = str(grantee.get("URI") or "")
            if uri not in GROUPS:
                raise ServiceError("InvalidArgument", f"Invalid group uri {uri[:200]!r}: grant to {ALL_USERS} or "
                                   f"{AUTH_USERS}.", 400, ArgumentName="uri", ArgumentValue=uri[:1024])
            who = uri
        else:
            who = str(grantee.get("ID") or "").strip().lower()
            if not who:
                raise malformed_acl()
            if not _CANONICAL_RE.match(who) or not known(who):
                raise ServiceError("InvalidArgument", f"Invalid id {who[:80]!r}: no user has that canonical ID "
                                   "(ListBuckets shows yours as Owner ID).", 400, ArgumentName="CanonicalUser/ID",
                                   ArgumentValue=who[:1024])
            if who == owner:
                continue
        if (who, perm) not in out:
            out.append((who, perm))
    return out


def acl_columns(grants: list[Grant]) -> tuple[str, str | None]:
    """(acl, grants column) for a list of grants: the canned ACL when one says exactly that, else
    "private" with the grants as JSON."""
    wanted = sorted(grants)
    for canned in CANNED_ACLS:
        if sorted(canned_grants(canned)) == wanted:
            return canned, None
    return "private", json.dumps([list(g) for g in grants])


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


def requested_acl(canned: str | None, p: dict[str, Any], owner: str | None,
                  known: Callable[[str], bool]) -> tuple[str, str | None]:
    """The ACL a write asks for, as (acl, grants) columns: x-amz-acl or x-amz-grant-*, never both."""
    grants = header_grants(p)
    if grants and canned is not None:
        raise ServiceError("InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed: send "
                           "x-amz-acl or x-amz-grant-* headers.", 400)
    if not grants:
        return check_canned_acl(canned) or "private", None
    return acl_columns(resolve_grants(grants, owner, known))


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


def granted(principal: Principal | None, acl: str, grants: str | None, permission: str) -> bool:
    """Whether a grant of `permission` (or FULL_CONTROL) reaches the caller: AllUsers anyone,
    AuthenticatedUsers any signed-in user, a canonical ID that user."""
    me = canonical_id(principal.account_id) if principal is not None else None
    for grantee, perm in stored_grants(acl, grants):
        if perm != permission and perm != "FULL_CONTROL":
            continue
        if grantee == ALL_USERS or (me is not None and grantee in (AUTH_USERS, me)):
            return True
    return False


def bucket_allows(principal: Principal | None, bucket: BucketLike, permission: str) -> bool:
    """The bucket's owner (and administrators) may do everything; others what a grant gives."""
    return is_owner(principal, bucket) or granted(principal, bucket.acl, bucket.grants, permission)


def object_allows(principal: Principal | None, bucket: BucketLike, obj: ObjectLike, permission: str) -> bool:
    """READ, READ_ACP, WRITE_ACP on an object: its owner, the bucket's owner (and administrators), or a grant."""
    if is_owner(principal, bucket) or (principal is not None and principal.user_id == obj.owner_id):
        return True
    return granted(principal, obj.acl, obj.grants, permission)


def can_read_object(settings: Settings, principal: Principal | None, bucket: BucketLike, key: str,
                    obj: ObjectLike | None) -> bool:
    """GET / HEAD (`obj` None: the key has no object, which only those who could read one may learn)."""
    if obj is not None and object_allows(principal, bucket, obj, "READ"):
        return True
    if is_owner(principal, bucket):
        return True
    if principal is not None and bucket.name == settings.image_bucket:
        own, common = _repo_prefixes(settings, principal)
        return key.startswith((own, common))
    return False


def is_shared_image_key(settings: Settings, bucket: BucketLike, key: str) -> bool:
    return bucket.name == settings.image_bucket and key.startswith(f"{settings.image_prefix}/common/")


def can_write_object(settings: Settings, principal: Principal | None, bucket: BucketLike, key: str) -> bool:
    """PUT, DELETE, multipart uploads, copies into `key`: bucket WRITE. Shared images (the image
    repository's common prefix) are written by administrators only, whatever grants or names say."""
    if is_shared_image_key(settings, bucket, key):
        return principal is not None and principal.is_admin
    if bucket_allows(principal, bucket, "WRITE"):
        return True
    if principal is not None and bucket.name == settings.image_bucket:
        own, _ = _repo_prefixes(settings, principal)
        return key.startswith(own)
    return False


def can_list(settings: Settings, principal: Principal | None, bucket: BucketLike, prefix: str | None) -> bool:
    if bucket_allows(principal, bucket, "READ"):
        return True
    if principal is not None and bucket.name == settings.image_bucket and prefix:
        own, common = _repo_prefixes(settings, principal)
        return prefix.startswith((own, common))
    return False


def can_see_bucket(settings: Settings, principal: Principal | None, bucket: BucketLike) -> bool:
    """HeadBucket / GetBucketLocation: anyone with some access to the bucket."""
    if any(bucket_allows(principal, bucket, perm) for perm in PERMISSIONS):
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
