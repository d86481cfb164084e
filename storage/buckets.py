"""Bucket operations and ACLs: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, GetBucketVersioning, Get/PutBucketAcl, Get/PutObjectAcl.

An ACL is set by a canned ACL (x-amz-acl), by x-amz-grant-* headers or by an AccessControlPolicy
body; grants to users' canonical IDs and to the AllUsers / AuthenticatedUsers groups are stored
and checked on every access (storage/access.py); any other grantee is refused, never dropped.
Reading an ACL needs READ_ACP, changing it WRITE_ACP: bucket WRITE gives neither.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ec2gw.errors import ServiceError
from storage import access, usage
from storage.access import owner_dict
from storage.context import S3Context, access_denied, check_version_id, no_such_key, operation
from storage.host import Host
from storage.models import Bucket, MultipartUpload, Object, Part
from storage.records import (
    BucketRef,
    bucket_row,
    canonical_users,
    find_object,
    get_bucket,
    known_user_check,
    require_object,
    set_object_acl,
    user_names,
    write_session,
)

MAX_BUCKETS_PER_PAGE = 10000


@operation("ListBuckets")
def list_buckets(ctx: S3Context, prefix: str | None = None, max_buckets: int | None = None,
                 continuation_token: str | None = None, **_: Any) -> dict[str, Any]:
    if ctx.principal is None:
        raise access_denied()
    limit = max_buckets or MAX_BUCKETS_PER_PAGE
    if not 1 <= limit <= MAX_BUCKETS_PER_PAGE:
        raise ServiceError("InvalidArgument", "Argument max-buckets must be an integer between 1 and 10000.", 400)
    q = select(Bucket).where(Bucket.owner_id == ctx.principal.user_id)
    if prefix:
        q = q.where(Bucket.name.startswith(prefix, autoescape=True))
    if continuation_token:
        q = q.where(Bucket.name > continuation_token)
    with ctx.db.session() as s:
        rows = list(s.scalars(q.order_by(Bucket.name).limit(limit + 1)))
    out: dict[str, Any] = {
        "Buckets": [{"Name": b.name, "CreationDate": b.created_at, "BucketRegion": b.region} for b in rows[:limit]],
        "Owner": owner_dict(ctx.principal.account_id, ctx.principal.name),
    }
    if prefix:
        out["Prefix"] = prefix
    if len(rows) > limit:
        out["ContinuationToken"] = rows[limit - 1].name
    return out


@operation("CreateBucket")
def create_bucket(ctx: S3Context, bucket: str, create_bucket_configuration: dict[str, Any] | None = None,
                  acl: str | None = None, **p: Any) -> dict[str, Any]:
    if p.get("object_lock_enabled_for_bucket"):
        raise ServiceError("NotImplemented", "Cumulus does not implement Object Lock; create the bucket without "
                           "x-amz-bucket-object-lock-enabled.", 501)
    if ctx.principal is None:
        raise access_denied()
    if bucket == ctx.settings.image_bucket:
        if not ctx.principal.is_admin:  # the image repository is the system's, whoever asks first
            raise bucket_exists(bucket)
    else:
        access.check_new_bucket_name(bucket)
    acl, grants = access.requested_acl(acl, p, access.canonical_id(ctx.principal.account_id),
                                       known_user_check(ctx.db))
    region = ctx.settings.region
    wanted = (create_bucket_configuration or {}).get("LocationConstraint")
    if wanted and wanted != region and not (wanted == "EU" and region == "eu-west-1"):
        raise ServiceError("IllegalLocationConstraintException",
                           f"The {wanted} location constraint is incompatible for the region specific endpoint this "
                           f"request was sent to ({region}).", 400)
    if wanted == "us-east-1":
        raise ServiceError("InvalidLocationConstraint", "The specified location-constraint is not valid", 400,
                           LocationConstraint=wanted)
    try:
        with ctx.db.session(write=True) as s:
            existing = s.scalar(select(Bucket).where(Bucket.name == bucket))
            if existing is not None:
                if existing.owner_id == ctx.principal.user_id and region == "us-east-1":
                    existing.acl, existing.grants = acl, grants  # S3 in us-east-1 answers 200 and resets the ACL
                    return {"Location": f"/{bucket}"}
                if existing.owner_id == ctx.principal.user_id:
                    raise ServiceError("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                                       "succeeded and you already own it.", 409, BucketName=bucket)
                raise bucket_exists(bucket)
            s.add(Bucket(name=bucket, owner_id=ctx.principal.user_id, region=region, acl=acl, grants=grants))
    except IntegrityError:
        raise bucket_exists(bucket) from None
    return {"Location": f"/{bucket}"}


def bucket_exists(bucket: str) -> ServiceError:
    return ServiceError("BucketAlreadyExists", "The requested bucket name is not available. The bucket namespace is "
                        "shared by all users of the system. Please select a different name and try again.", 409,
                        BucketName=bucket)


@operation("HeadBucket")
def head_bucket(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        access.require(access.can_see_bucket(ctx.settings, ctx.principal, b))
        return {"BucketRegion": b.region}


@operation("GetBucketLocation")
def get_bucket_location(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        if b.name == ctx.settings.image_bucket:
            access.require(access.can_see_bucket(ctx.settings, ctx.principal, b))
        else:
            access.require_bucket_owner(ctx.principal, b)
        # S3 names us-east-1 by an empty LocationConstraint
        return {"LocationConstraint": "" if b.region == "us-east-1" else b.region}


@operation("GetBucketVersioning")
def get_bucket_versioning(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    """Versioning is never enabled on a Cumulus bucket: no Status, as S3 answers for a bucket whose
    versioning was never turned on (its owner asks; others are refused)."""
    with ctx.db.session() as s:
        access.require_bucket_owner(ctx.principal, get_bucket(s, bucket))
    return {}


@operation("DeleteBucket")
def delete_bucket(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    with ctx.db.session(write=True) as s:
        b = bucket_row(s, bucket)
        access.require_bucket_owner(ctx.principal, b)
        if s.scalar(select(func.count()).select_from(Object).where(Object.bucket_id == b.id)):
            raise ServiceError("BucketNotEmpty", "The bucket you tried to delete is not empty", 409, BucketName=bucket)
        # unfinished multipart uploads go with the bucket
        blobs = list(s.scalars(select(Part.blob_id).join(MultipartUpload, Part.upload_id == MultipartUpload.id)
                               .where(MultipartUpload.bucket_id == b.id)))
        released = usage.parts_by_owner(s, MultipartUpload.bucket_id == b.id)
        # statements, not s.delete(upload): the flush could delete the bucket first, and the
        # database's cascade would leave the ORM's DELETE of each upload nothing to delete
        uploads = select(MultipartUpload.id).where(MultipartUpload.bucket_id == b.id)
        s.execute(delete(Part).where(Part.upload_id.in_(uploads)))
        s.execute(delete(MultipartUpload).where(MultipartUpload.bucket_id == b.id))
        for owner, held in released.items():
            usage.add(s, owner, -held)
        s.delete(b)
    ctx.store.delete(blobs)
    return {}


# --------------------------------------------------------------------------- ACLs


def grants_for(s: Session, acl: str, grants: str | None, owner: dict[str, str]) -> list[dict[str, Any]]:
    """The Grants of Get*Acl: the owner's FULL_CONTROL, then the canned ACL's and the explicit grants."""
    out: list[dict[str, Any]] = [{"Grantee": {"Type": "CanonicalUser", **owner}, "Permission": "FULL_CONTROL"}]
    stored = access.stored_grants(acl, grants)
    users = canonical_users(s) if any(g not in access.GROUPS for g, _ in stored) else {}
    for grantee, perm in stored:
        if grantee in access.GROUPS:
            out.append({"Grantee": {"Type": "Group", "URI": grantee}, "Permission": perm})
        else:
            who = {"ID": grantee}
            if grantee in users:
                who["DisplayName"] = users[grantee][2]
            out.append({"Grantee": {"Type": "CanonicalUser", **who}, "Permission": perm})
    return out


def _new_acl(ctx: S3Context, acl: str | None, policy: dict[str, Any] | None, p: dict[str, Any],
             owner_canonical: str) -> tuple[str, str | None]:
    """(acl, grants) columns from x-amz-acl, x-amz-grant-* or an AccessControlPolicy body (one of them)."""
    known = known_user_check(ctx.db)
    if acl is not None or access.header_grants(p):
        if policy is not None:
            raise ServiceError("UnexpectedContent", "This request does not support content: send an ACL as x-amz-acl, "
                               "x-amz-grant-* headers or an AccessControlPolicy body, only one of them.", 400)
        return access.requested_acl(acl, p, owner_canonical, known)
    if policy is None:
        raise ServiceError("MissingSecurityHeader", "Your request was missing a required header: x-amz-acl or an "
                           "AccessControlPolicy body.", 400)
    return access.acl_columns(access.resolve_grants(policy.get("Grants") or [], owner_canonical, known))


def _owner_canonical(s: Session, user_id: int) -> str:
    acct, _ = user_names(s, {user_id})[user_id]
    return access.canonical_id(acct)


@operation("GetBucketAcl")
def get_bucket_acl(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        access.require(access.bucket_allows(ctx.principal, b, "READ_ACP"))
        acct, name = user_names(s, {b.owner_id})[b.owner_id]
        owner = owner_dict(acct, name)
        return {"Owner": owner, "Grants": grants_for(s, b.acl, b.grants, owner)}


@operation("PutBucketAcl")
def put_bucket_acl(ctx: S3Context, bucket: str, acl: str | None = None,
                   access_control_policy: dict[str, Any] | None = None, **p: Any) -> dict[str, Any]:
    with ctx.db.session() as s:
        b: BucketRef = get_bucket(s, bucket)
        access.require(access.bucket_allows(ctx.principal, b, "WRITE_ACP"))
        owner = _owner_canonical(s, b.owner_id)
    new, grants = _new_acl(ctx, acl, access_control_policy, p, owner)
    with ctx.db.session(write=True) as s:
        row = bucket_row(s, bucket)
        access.require(access.bucket_allows(ctx.principal, row, "WRITE_ACP"))  # as it is now
        row.acl, row.grants = new, grants
    return {}


@operation("GetObjectAcl")
def get_object_acl(ctx: S3Context, bucket: str, key: str, version_id: str | None = None, **_: Any) -> dict[str, Any]:
    check_version_id(version_id)
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        row = find_object(s, b, key)
        if row is None:
            access.require(access.can_read_object(ctx.settings, ctx.principal, b, key, None))
            raise no_such_key(key)
        access.require(access.object_allows(ctx.principal, b, row, "READ_ACP"))
        acct, name = user_names(s, {row.owner_id})[row.owner_id]
        owner = owner_dict(acct, name)
        return {"Owner": owner, "Grants": grants_for(s, row.acl, row.grants, owner)}


@operation("PutObjectAcl")
def put_object_acl(ctx: S3Context, bucket: str, key: str, acl: str | None = None,
                   access_control_policy: dict[str, Any] | None = None, version_id: str | None = None,
                   **p: Any) -> dict[str, Any]:
    check_version_id(version_id)
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        row = find_object(s, b, key)
        if row is None:
            access.require(access.can_read_object(ctx.settings, ctx.principal, b, key, None))
            raise no_such_key(key)
        access.require(access.object_allows(ctx.principal, b, row, "WRITE_ACP"))
        owner = _owner_canonical(s, row.owner_id)
    new, grants = _new_acl(ctx, acl, access_control_policy, p, owner)
    with write_session(ctx.db) as s:
        b = get_bucket(s, bucket)
        current = require_object(s, b, key)
        # the version checked above: a replaced object (another owner, another ACL) is checked again
        access.require(access.object_allows(ctx.principal, b, current, "WRITE_ACP"))
        set_object_acl(s, b, key, new, grants, current.etag)
    return {}


def ensure_bucket(app: Host, name: str, owner_id: int, acl: str = "private") -> None:
    """Create a bucket if it does not exist yet (the image repository, on first use)."""
    try:
        with app.db.session(write=True) as s:
            if s.scalar(select(Bucket.id).where(Bucket.name == name)) is None:
                s.add(Bucket(name=name, owner_id=owner_id, region=app.settings.region, acl=acl))
    except IntegrityError:
        pass  # another process created it at the same moment
