"""Bucket operations and canned ACLs: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, Get/PutBucketAcl, Get/PutObjectAcl.

ACLs are canned only (x-amz-acl: private, public-read, public-read-write, authenticated-read);
that is how shared images are published. An AccessControlPolicy body is accepted when it says
the same thing a canned ACL would (owner FULL_CONTROL, optionally AllUsers / AuthenticatedUsers
READ), which is what tools that read-modify-write ACLs send back.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ec2gw.errors import ServiceError
from storage import access, usage
from storage.access import ALL_USERS, AUTH_USERS, owner_dict
from storage.context import S3Context, access_denied, check_version_id, operation
from storage.models import Bucket, MultipartUpload, Object, Part
from storage.records import bucket_row, get_bucket, require_object, set_object_acl, user_names

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
    acl = access.requested_acl(acl, p, ctx.principal)
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
                    existing.acl = acl  # S3 in us-east-1 answers 200 and resets the ACL
                    return {"Location": f"/{bucket}"}
                if existing.owner_id == ctx.principal.user_id:
                    raise ServiceError("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket "
                                       "succeeded and you already own it.", 409, BucketName=bucket)
                raise bucket_exists(bucket)
            s.add(Bucket(name=bucket, owner_id=ctx.principal.user_id, region=region, acl=acl))
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


def grants_for(acl: str, owner: dict[str, str]) -> list[dict[str, Any]]:
    grants: list[dict[str, Any]] = [
        {"Grantee": {"Type": "CanonicalUser", **owner}, "Permission": "FULL_CONTROL"}
    ]
    if acl in ("public-read", "public-read-write"):
        grants.append({"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"})
    if acl == "public-read-write":
        grants.append({"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "WRITE"})
    if acl == "authenticated-read":
        grants.append({"Grantee": {"Type": "Group", "URI": AUTH_USERS}, "Permission": "READ"})
    return grants


def acl_from_policy(policy: dict[str, Any] | None) -> str:
    """The canned ACL an AccessControlPolicy amounts to; NotImplemented when it has no canned equivalent."""
    return access.acl_from_grants((policy or {}).get("Grants") or [])


def _new_acl(ctx: S3Context, acl: str | None, policy: dict[str, Any] | None, p: dict[str, Any]) -> str:
    if acl is not None or access.header_grants(p):
        if policy is not None:
            raise ServiceError("UnexpectedContent", "This request does not support content", 400)
        return access.requested_acl(acl, p, ctx.principal)
    if policy is None:
        raise ServiceError("MissingSecurityHeader", "Your request was missing a required header: x-amz-acl or an "
                           "AccessControlPolicy body.", 400)
    return acl_from_policy(policy)


@operation("GetBucketAcl")
def get_bucket_acl(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        access.require_bucket_owner(ctx.principal, b)
        acct, name = user_names(s, {b.owner_id})[b.owner_id]
    owner = owner_dict(acct, name)
    return {"Owner": owner, "Grants": grants_for(b.acl, owner)}


@operation("PutBucketAcl")
def put_bucket_acl(ctx: S3Context, bucket: str, acl: str | None = None,
                   access_control_policy: dict[str, Any] | None = None, **p: Any) -> dict[str, Any]:
    new = _new_acl(ctx, acl, access_control_policy, p)
    with ctx.db.session(write=True) as s:
        b = bucket_row(s, bucket)
        access.require_bucket_owner(ctx.principal, b)
        b.acl = new
    return {}


@operation("GetObjectAcl")
def get_object_acl(ctx: S3Context, bucket: str, key: str, version_id: str | None = None, **_: Any) -> dict[str, Any]:
    check_version_id(version_id)
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        row = require_object(s, b, key)
        access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
        acct, name = user_names(s, {row.owner_id})[row.owner_id]
        acl = row.acl
    owner = owner_dict(acct, name)
    return {"Owner": owner, "Grants": grants_for(acl, owner)}


@operation("PutObjectAcl")
def put_object_acl(ctx: S3Context, bucket: str, key: str, acl: str | None = None,
                   access_control_policy: dict[str, Any] | None = None, version_id: str | None = None,
                   **p: Any) -> dict[str, Any]:
    check_version_id(version_id)
    new = _new_acl(ctx, acl, access_control_policy, p)
    with ctx.db.session(write=True) as s:
        b = get_bucket(s, bucket)
        access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
        set_object_acl(s, b, key, new)
    return {}


def ensure_bucket(app: Any, name: str, owner_id: int, acl: str = "private") -> None:
    """Create a bucket if it does not exist yet (the image repository, on first use)."""
    try:
        with app.db.session(write=True) as s:
            if s.scalar(select(Bucket.id).where(Bucket.name == name)) is None:
                s.add(Bucket(name=name, owner_id=owner_id, region=app.settings.region, acl=acl))
    except IntegrityError:
        pass  # another process created it at the same moment
