"""Tags: Put/Get/DeleteObjectTagging, Put/Get/DeleteBucketTagging, and `x-amz-tagging` on PutObject,
CopyObject (with x-amz-tagging-directive) and CreateMultipartUpload.

A tag set is stored as JSON `[[key, value], ...]` in the row's `tags` column (NULL: none), in
the order it was given. S3's limits apply: 10 tags on an object, 50 on a bucket, keys of 1 to 128
characters and values of up to 256, no key twice, letters, digits, spaces and `_ . : / = + - @`
only, and no `aws:` keys. A new version of an object (PUT, copy, completed upload) carries the
tags it was written with, none otherwise, as on S3.

Only the bucket's owner and the object's owner (and administrators) may read or change tags:
ACL grants give no tagging rights, as on S3.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import update

from ec2gw.aws.restxml_parser import malformed_xml
from ec2gw.errors import ServiceError
from storage import access
from storage.context import S3Context, check_version_id, invalid_argument, no_such_key, operation
from storage.models import Object
from storage.records import ObjectInfo, bucket_row, find_object, get_bucket, write_session

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY = 128
MAX_VALUE = 256
_ALLOWED_PUNCTUATION = frozenset("_.:/=+-@ ")


def invalid_tag(message: str) -> ServiceError:
    return ServiceError("InvalidTag", message, 400)


def _allowed(text: str) -> bool:
    return all(ch in _ALLOWED_PUNCTUATION or unicodedata.category(ch)[0] in "LNZ" for ch in text)


def check_tags(pairs: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """The tag set if S3 would take it, else its error."""
    if len(pairs) > limit:
        kind = "Object" if limit == MAX_OBJECT_TAGS else "Bucket"
        raise ServiceError("BadRequest", f"{kind} tags cannot be greater than {limit}: send at most {limit} tags.",
                           400)
    seen: set[str] = set()
    for key, value in pairs:
        if not key:
            raise invalid_tag("The TagKey you have provided is invalid: a tag key must have 1 to 128 characters.")
        if len(key) > MAX_KEY:
            raise invalid_tag(f"The TagKey you have provided is too long, max {MAX_KEY}.")
        if len(value) > MAX_VALUE:
            raise invalid_tag(f"The TagValue you have provided is too long, max {MAX_VALUE}.")
        if not _allowed(key):
            raise invalid_tag("The TagKey you have provided is invalid: use letters, digits, spaces and _ . : / = + - @ "
                              "only.")
        if not _allowed(value):
            raise invalid_tag("The TagValue you have provided is invalid: use letters, digits, spaces and "
                              "_ . : / = + - @ only.")
        if key.lower().startswith("aws:"):
            raise invalid_tag("System tags cannot be added/updated by requester: tag keys may not start with aws:.")
        if key in seen:
            raise invalid_tag("Cannot provide multiple Tags with the same key: send each tag key once.")
        seen.add(key)
    return pairs


def header_tags(value: str | None) -> str | None:
    """The stored tag set of an `x-amz-tagging` header (URL-encoded query `k1=v1&k2=v2`), None for none."""
    if value is None:
        return None
    bad = invalid_argument("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query "
                           "parameters without tag name duplicates.", "x-amz-tagging", value)
    try:
        pairs = parse_qsl(value, keep_blank_values=True, strict_parsing=bool(value), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise bad from None
    if len({k for k, _ in pairs}) != len(pairs):
        raise bad
    return dump(check_tags(pairs, MAX_OBJECT_TAGS))


def body_tags(tagging: dict[str, Any] | None, limit: int) -> str | None:
    """The stored tag set of a Tagging document (`<Tagging><TagSet><Tag>...`)."""
    pairs = []
    for tag in (tagging or {}).get("TagSet") or []:
        if "Key" not in tag or "Value" not in tag:
            raise malformed_xml("every Tag needs a Key and a Value")
        pairs.append((str(tag["Key"]), str(tag["Value"])))
    return dump(check_tags(pairs, limit))


def dump(pairs: list[tuple[str, str]]) -> str | None:
    return json.dumps([list(p) for p in pairs]) if pairs else None


def tag_set(stored: str | None) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in json.loads(stored or "[]")]


def tag_count(stored: str | None) -> int:
    return len(json.loads(stored or "[]"))


# --------------------------------------------------------------------------- objects


def _may_tag(ctx: S3Context, bucket: Any, obj: ObjectInfo) -> bool:
    return access.is_owner(ctx.principal, bucket) or (ctx.principal is not None
                                                       and ctx.principal.user_id == obj.owner_id)


def _tagged_object(ctx: S3Context, s: Any, bucket: str, key: str) -> tuple[Any, ObjectInfo]:
    b = get_bucket(s, bucket)
    info = find_object(s, b, key)
    if info is None:
        # who could not learn that the key has no object is told AccessDenied, as on GetObject
        access.require(access.is_owner(ctx.principal, b)
                       or access.can_read_object(ctx.settings, ctx.principal, b, key, None))
        raise no_such_key(key)
    access.require(_may_tag(ctx, b, info))
    return b, info


@operation("GetObjectTagging")
def get_object_tagging(ctx: S3Context, bucket: str, key: str, version_id: str | None = None,
                       **_: Any) -> dict[str, Any]:
    check_version_id(version_id)
    with ctx.db.session() as s:
        _, info = _tagged_object(ctx, s, bucket, key)
    return {"TagSet": tag_set(info.tags)}


def _set_object_tags(ctx: S3Context, bucket: str, key: str, tags: str | None) -> None:
    with write_session(ctx.db) as s:
        b, info = _tagged_object(ctx, s, bucket, key)
        # the version checked above only (a replaced object is another version, with its own tags)
        done = s.execute(update(Object).where(Object.bucket_id == b.id, Object.key == key, Object.etag == info.etag)
                         .values(tags=tags))
        if not done.rowcount:  # type: ignore[attr-defined]
            raise no_such_key(key)


@operation("PutObjectTagging")
def put_object_tagging(ctx: S3Context, bucket: str, key: str, tagging: dict[str, Any],
                       version_id: str | None = None, **_: Any) -> dict[str, Any]:
    check_version_id(version_id)
    _set_object_tags(ctx, bucket, key, body_tags(tagging, MAX_OBJECT_TAGS))
    return {}


@operation("DeleteObjectTagging")
def delete_object_tagging(ctx: S3Context, bucket: str, key: str, version_id: str | None = None,
                          **_: Any) -> dict[str, Any]:
    check_version_id(version_id)
    _set_object_tags(ctx, bucket, key, None)
    return {}


# --------------------------------------------------------------------------- buckets


@operation("GetBucketTagging")
def get_bucket_tagging(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    with ctx.db.session() as s:
        b = bucket_row(s, bucket)
        access.require_bucket_owner(ctx.principal, b)
        tags = b.tags
    if not tags:
        raise ServiceError("NoSuchTagSet", "The TagSet does not exist: the bucket has no tags; add some with "
                           "PutBucketTagging.", 404, BucketName=bucket)
    return {"TagSet": tag_set(tags)}


def _set_bucket_tags(ctx: S3Context, bucket: str, tags: str | None) -> None:
    with ctx.db.session(write=True) as s:
        b = bucket_row(s, bucket)
        access.require_bucket_owner(ctx.principal, b)
        b.tags = tags


@operation("PutBucketTagging")
def put_bucket_tagging(ctx: S3Context, bucket: str, tagging: dict[str, Any], **_: Any) -> dict[str, Any]:
    with ctx.db.session() as s:  # the owner is checked before the document is
        access.require_bucket_owner(ctx.principal, get_bucket(s, bucket))
    _set_bucket_tags(ctx, bucket, body_tags(tagging, MAX_BUCKET_TAGS))
    return {}


@operation("DeleteBucketTagging")
def delete_bucket_tagging(ctx: S3Context, bucket: str, **_: Any) -> dict[str, Any]:
    _set_bucket_tags(ctx, bucket, None)
    return {}
