"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects, CopyObject.

A PUT streams the verified body into a new blob (blobstore.BlobWriter) and only then commits the
row (records.commit_object). GET and HEAD read the row in a short read transaction, evaluate
conditions and ranges, and hand back a SegmentReader the gateway streams (sendfile when the range
lies in one blob). CopyObject hard-links the source's blobs: blobs are immutable, so a copy costs
no I/O whatever the size.
"""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from ec2gw.aws.restxml_parser import malformed_xml
from ec2gw.aws.restxml_serializer import http_date
from ec2gw.aws.sigv4 import utf8_reading
from ec2gw.aws.spec import service_model
from ec2gw.errors import ServiceError
from storage import access, conditions
from storage.access import check_key
from storage.blobstore import SegmentReader
from storage.context import (
    S3Context,
    check_version_id,
    invalid_argument,
    invalid_request,
    no_such_key,
    operation,
)
from storage.records import (
    CONTENT_HEADERS,
    NewVersion,
    ObjectInfo,
    commit_object,
    delete_object_row,
    find_object,
    get_bucket,
    known_user_check,
    lookup_object,
    write_session,
)
from storage.tagging import header_tags, tag_count
from storage.upload import stored_content_encoding

log = logging.getLogger("ec2gw.cumulus")

MAX_METADATA_BYTES = 2048
MAX_DELETE_KEYS = 1000
#: bodies above this size are refused (bucket, rights) before they are read; smaller ones at commit
EARLY_CHECK_BYTES = 1024 * 1024
STORAGE_CLASSES = frozenset(service_model("s3").shape_for("StorageClass").enum)
_OPEN_RETRIES = 3


# --------------------------------------------------------------------------- request pieces


def content_headers(p: dict[str, Any]) -> dict[str, str]:
    """The Content-* / Cache-Control / Expires headers of a request, as an object keeps them
    (Content-Encoding without the aws-chunked transfer framing)."""
    out: dict[str, str] = {}
    for member in CONTENT_HEADERS:
        value = p.get(_snake(member))
        if member == "ContentEncoding":
            value = stored_content_encoding(value)
        if value is None:
            continue
        out[member] = http_date(value) if isinstance(value, datetime) else str(value)
    return out


def _snake(member: str) -> str:
    from botocore import xform_name

    return xform_name(member)


def user_metadata(metadata: dict[str, str] | None) -> dict[str, str]:
    """x-amz-meta-* as text: header bytes that are UTF-8 (what the SDKs send for non-ASCII text) are
    read as UTF-8, any others as Latin-1."""
    metadata = {k: utf8_reading(v) for k, v in (metadata or {}).items()}
    size = sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise ServiceError("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size.", 400,
                           MaxSizeAllowed=str(MAX_METADATA_BYTES))
    return metadata


def mail_safe(value: str) -> str:
    """A metadata value as S3 returns it: non-ASCII text as an RFC 2047 encoded word."""
    if value.isascii():
        return value
    return f"=?UTF-8?B?{base64.b64encode(value.encode('utf-8')).decode()}?="


def storage_class(value: str | None) -> str:
    if value is None:
        return "STANDARD"
    if value not in STORAGE_CLASSES:
        raise ServiceError("InvalidStorageClass", "The storage class you specified is not valid.", 400,
                           StorageClassRequested=value)
    return value


#: x-amz-server-side-encryption values S3 knows (the others are 400 InvalidArgument there too)
_KNOWN_SSE = ("AES256", "aws:kms", "aws:kms:dsse")


def refuse_unsupported(p: dict[str, Any]) -> None:
    """Features we do not have: refuse rather than pretend (SSE with customer or KMS keys, Object Lock)."""
    if p.get("sse_customer_algorithm") or p.get("sse_customer_key"):
        raise ServiceError("NotImplemented", "Server-side encryption with customer-provided keys is not supported.", 501)
    if p.get("object_lock_mode") or p.get("object_lock_retain_until_date") or p.get("object_lock_legal_hold_status"):
        # no Cumulus bucket has Object Lock: S3's answer for such a bucket (storing the object
        # without the retention asked for would let it be deleted by someone relying on it)
        raise invalid_request("Bucket is missing Object Lock Configuration")
    sse = p.get("server_side_encryption")
    if sse is not None and sse not in _KNOWN_SSE:
        raise invalid_argument("The encryption method specified is not supported", "x-amz-server-side-encryption",
                               sse)
    if sse not in (None, "AES256"):
        raise ServiceError("NotImplemented", "Only AES256 (SSE-S3) server-side encryption is accepted.", 501)


def write_check(ctx: S3Context, key: str) -> Any:
    def check(bucket: Any) -> None:
        access.require(access.can_write_object(ctx.settings, ctx.principal, bucket, key))

    return check


def owner_of_new(ctx: S3Context) -> int:
    if ctx.principal is None:
        raise access.access_denied()
    return ctx.principal.user_id


def new_object_acl(ctx: S3Context, p: dict[str, Any]) -> tuple[str, str | None]:
    """(acl, grants) a write asks for (x-amz-acl or x-amz-grant-*); the caller will own the object."""
    owner = access.canonical_id(ctx.principal.account_id) if ctx.principal is not None else None
    return access.requested_acl(p.get("acl"), p, owner, known_user_check(ctx.db))


# --------------------------------------------------------------------------- PUT


@operation("PutObject")
def put_object(ctx: S3Context, bucket: str, key: str, **p: Any) -> dict[str, Any]:
    check_key(key)
    refuse_unsupported(p)
    acl, grants = new_object_acl(ctx, p)
    sclass = storage_class(p.get("storage_class"))
    metadata = user_metadata(p.get("metadata"))
    tags = header_tags(p.get("tagging"))
    owner = owner_of_new(ctx)
    body = ctx.body
    if body.length is None or body.length > EARLY_CHECK_BYTES:
        # refuse before receiving a large body (bucket, rights, quota); small ones are checked
        # when they are committed only (commit_object checks all three again in its transaction)
        with ctx.db.engine.connect() as conn:
            write_check(ctx, key)(get_bucket(conn, bucket))
        if body.length is not None:
            access.check_storage_quota(ctx.app, owner, body.length)
    with ctx.store.writer(body.checksums()) as writer:
        writer.copy_from(body.reader, expected=body.length)
        checksum = body.verify(writer.md5.digest())
        writer.commit()
    version = NewVersion(
        key, owner, [{"b": writer.blob_id, "n": writer.size, "c": checksum}], writer.size, writer.etag,
        content_headers(p), metadata, acl, sclass,
        checksum_algorithm=body.algorithm.upper() if body.algorithm and checksum else None,
        checksum_value=checksum, checksum_type="FULL_OBJECT" if checksum else None, grants=grants, tags=tags,
    )
    info = commit_object(ctx.app, ctx.store, bucket, version, write_check(ctx, key),
                         p.get("if_match"), p.get("if_none_match"))
    return {"ETag": info.quoted_etag, **info.checksum_members()}


# --------------------------------------------------------------------------- GET / HEAD


def read_object(ctx: S3Context, bucket: str, key: str) -> ObjectInfo:
    b, info = lookup_object(ctx.db, bucket, key)
    if info is None:
        # S3 tells callers who may not list the bucket AccessDenied, not NoSuchKey
        access.require(access.can_list(ctx.settings, ctx.principal, b, key)
                       or access.can_read_object(ctx.settings, ctx.principal, b, key, None))
        raise no_such_key(key)
    access.require(access.can_read_object(ctx.settings, ctx.principal, b, key, info))
    return info


def object_headers(info: ObjectInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ETag": info.quoted_etag,
        "LastModified": info.last_modified.replace(microsecond=0),
        "ContentType": info.content_type,
        "AcceptRanges": "bytes",
    }
    for member in CONTENT_HEADERS:
        if member != "ContentType" and member in info.content_headers:
            out[member] = info.content_headers[member]
    if info.metadata:
        out["Metadata"] = {k: mail_safe(v) for k, v in info.metadata.items()}
    if info.storage_class != "STANDARD":
        out["StorageClass"] = info.storage_class
    if info.tags:
        out["TagCount"] = tag_count(info.tags)
    return out


def _select_range(info: ObjectInfo, range_header: str | None, part_number: int | None) -> tuple[int, int, dict[str, Any]]:
    """(start, end exclusive, extra result members) for a Range header or a partNumber."""
    if part_number is not None:
        if range_header:
            raise invalid_request("Cannot specify both Range header and partNumber query parameter.")
        if not 1 <= part_number <= 10000:
            raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive.", "partNumber",
                                   part_number)
        count = len(info.segments) if info.parts_count else 1
        if part_number > count:
            raise ServiceError("InvalidPartNumber", "The requested partnumber is not satisfiable", 416,
                               PartNumberRequested=str(part_number), ActualPartCount=str(count))
        if info.parts_count:
            start = sum(seg["n"] for seg in info.segments[: part_number - 1])
            end = start + info.segments[part_number - 1]["n"]
        else:
            start, end = 0, info.size
        extra: dict[str, Any] = {"PartsCount": info.parts_count} if info.parts_count else {}
        if end > start:
            extra.update(_status=206, ContentRange=f"bytes {start}-{end - 1}/{info.size}")
        return start, end, extra
    selected = conditions.parse_range(range_header, info.size)
    if selected is None:
        return 0, info.size, {}
    start, end = selected
    return start, end, {"_status": 206, "ContentRange": f"bytes {start}-{end - 1}/{info.size}"}


def _get_or_head(ctx: S3Context, bucket: str, key: str, p: dict[str, Any], with_body: bool) -> dict[str, Any]:
    overrides = {k: v for k, v in p.items() if k.startswith("response_") and v is not None}
    if overrides and ctx.anonymous:
        raise invalid_request("Request specific response headers cannot be used for anonymous GET requests.")
    for name, value in overrides.items():
        # they become response headers: control characters cannot be sent in one (the server
        # refuses the whole response); CR and LF would split it
        if isinstance(value, str) and _CONTROL_CHARS.search(value):
            raise invalid_argument("Header value cannot be represented using ISO-8859-1 without control characters.",
                                   name.replace("_", "-"), value)
    check_version_id(p.get("version_id"))
    for _ in range(_OPEN_RETRIES):
        info = read_object(ctx, bucket, key)
        status = conditions.evaluate(info.etag, info.last_modified, p.get("if_match"), p.get("if_none_match"),
                                     p.get("if_modified_since"), p.get("if_unmodified_since"))
        if status == 304:
            return {"_status": 304, "ETag": info.quoted_etag, "LastModified": info.last_modified.replace(microsecond=0)}
        start, end, extra = _select_range(info, p.get("range"), p.get("part_number"))
        result = object_headers(info)
        result.update(extra)
        result["ContentLength"] = end - start
        if p.get("checksum_mode") == "ENABLED":
            if start == 0 and end == info.size and "ContentRange" not in extra:
                result.update(info.checksum_members())
            elif p.get("part_number") and info.parts_count and info.segments[p["part_number"] - 1].get("c"):
                result[f"Checksum{info.checksum_algorithm}"] = info.segments[p["part_number"] - 1]["c"]
        for name, value in overrides.items():
            member = name.removeprefix("response_")
            result[{"expires": "Expires"}.get(member, _camel(member))] = value
        if not with_body:
            return result
        try:
            result["Body"] = SegmentReader(ctx.store, [(seg["b"], seg["n"]) for seg in info.segments], start, end)
        except FileNotFoundError:
            continue  # overwritten or deleted between the lookup and the open: look again
        return result
    raise ServiceError("SlowDown", "The object changed while it was being opened; retry the request.", 503)


#: what no HTTP header value may hold (tab excepted)
_CONTROL_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def _camel(snake: str) -> str:
    return "".join(w.capitalize() for w in snake.split("_"))


@operation("GetObject")
def get_object(ctx: S3Context, bucket: str, key: str, **p: Any) -> dict[str, Any]:
    return _get_or_head(ctx, bucket, key, p, with_body=True)


@operation("HeadObject")
def head_object(ctx: S3Context, bucket: str, key: str, **p: Any) -> dict[str, Any]:
    result = _get_or_head(ctx, bucket, key, p, with_body=False)
    result.pop("TagCount", None)  # GetObject's alone
    # HEAD has no ContentRange member; the header is still sent for ranged HEADs, as S3 does
    if "ContentRange" in result:
        result["_headers"] = [("Content-Range", result.pop("ContentRange"))]
    return result


# --------------------------------------------------------------------------- DELETE


@operation("DeleteObject")
def delete_object(ctx: S3Context, bucket: str, key: str, **p: Any) -> dict[str, Any]:
    # buckets are unversioned: a versionId other than "null" names no version, and must not
    # delete the current object (a client deleting an old version would lose the latest one)
    check_version_id(p.get("version_id"))
    with write_session(ctx.db) as s:
        b = get_bucket(s, bucket)
        access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
        if p.get("if_match") is not None:
            current = find_object(s, b, key)
            if current is None:
                raise no_such_key(key)
            if not conditions.etag_matches(p["if_match"], current.etag):
                raise conditions.precondition_failed("If-Match")
        blobs = delete_object_row(s, b, key)
    ctx.store.delete(blobs)
    return {}


@operation("DeleteObjects")
def delete_objects(ctx: S3Context, bucket: str, delete: dict[str, Any], **p: Any) -> dict[str, Any]:
    objects = delete.get("Objects") or []
    if not objects or len(objects) > MAX_DELETE_KEYS:
        raise malformed_xml(f"name 1 to {MAX_DELETE_KEYS} objects to delete")
    quiet = bool(delete.get("Quiet"))
    deleted: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    blobs: list[str] = []
    with write_session(ctx.db) as s:
        b = get_bucket(s, bucket)
        for item in objects:
            key = item.get("Key")
            if not key:
                raise malformed_xml("every Object needs a Key")
            if not access.can_write_object(ctx.settings, ctx.principal, b, key):
                errors.append({"Key": key, "Code": "AccessDenied", "Message": "Access Denied"})
                continue
            if item.get("VersionId") not in (None, "null"):
                errors.append({"Key": key, "VersionId": item["VersionId"], "Code": "NoSuchVersion",
                               "Message": "The specified version does not exist."})
                continue
            blobs += delete_object_row(s, b, key)
            if not quiet:
                deleted.append({"Key": key})
    ctx.store.delete(blobs)
    return {"Deleted": deleted, "Errors": errors}


# --------------------------------------------------------------------------- COPY


def parse_copy_source(value: str) -> tuple[str, str]:
    """x-amz-copy-source `[/]bucket/key[?versionId=...]` (URL-encoded) -> (bucket, key)."""
    text, _, query = value.partition("?")
    if query and not query.startswith("versionId="):
        raise invalid_argument("Invalid copy source encoding.", "x-amz-copy-source", value)
    if query and query != "versionId=null":
        raise invalid_argument("Invalid version id specified", "x-amz-copy-source", value)
    try:
        text = unquote(text.lstrip("/"), errors="strict")
    except UnicodeDecodeError:
        raise invalid_argument("Invalid copy source encoding.", "x-amz-copy-source", value) from None
    src_bucket, _, src_key = text.partition("/")
    if not src_bucket or not src_key:
        raise invalid_argument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey.",
                               "x-amz-copy-source", value)
    return src_bucket, src_key


def copy_source_object(ctx: S3Context, copy_source: str, p: dict[str, Any]) -> ObjectInfo:
    """The readable source object of a copy, with the x-amz-copy-source-if-* conditions checked."""
    src_bucket, src_key = parse_copy_source(copy_source)
    info = read_object(ctx, src_bucket, src_key)
    conditions.evaluate(info.etag, info.last_modified, p.get("copy_source_if_match"),
                        p.get("copy_source_if_none_match"), p.get("copy_source_if_modified_since"),
                        p.get("copy_source_if_unmodified_since"), copy_source=True)
    return info


@operation("CopyObject")
def copy_object(ctx: S3Context, bucket: str, key: str, copy_source: str, **p: Any) -> dict[str, Any]:
    check_key(key)
    refuse_unsupported(p)
    directive = p.get("metadata_directive") or "COPY"
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive", directive)
    tagging_directive = p.get("tagging_directive") or "COPY"
    if tagging_directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown tagging directive.", "x-amz-tagging-directive", tagging_directive)
    new_tags = header_tags(p.get("tagging")) if tagging_directive == "REPLACE" else None
    acl, grants = new_object_acl(ctx, p)
    with ctx.db.session() as s:
        write_check(ctx, key)(get_bucket(s, bucket))
    owner = owner_of_new(ctx)
    for _ in range(_OPEN_RETRIES):
        src = copy_source_object(ctx, copy_source, p)
        same = src.bucket == bucket and src.key == key
        if same and directive == "COPY" and not p.get("storage_class") and not p.get("website_redirect_location") \
                and tagging_directive == "COPY":
            raise invalid_request("This copy request is illegal because it is trying to copy an object to itself "
                                  "without changing the object's metadata, storage class, website redirect location "
                                  "or encryption attributes.")
        if tagging_directive == "COPY" and src.tags:
            _require_source_tagging(ctx, src)
        access.check_storage_quota(ctx.app, owner, src.size)
        try:
            new_segments = clone_segments(ctx, src.segments)
        except FileNotFoundError:
            continue
        break
    else:
        raise ServiceError("SlowDown", "The source object changed while it was being copied; retry the request.", 503)
    if directive == "REPLACE":
        headers, metadata = content_headers(p), user_metadata(p.get("metadata"))
    else:
        headers, metadata = src.content_headers, src.metadata
    version = NewVersion(
        key, owner, new_segments, src.size, src.etag, headers, metadata, acl,
        storage_class(p.get("storage_class")) if p.get("storage_class") else src.storage_class,
        parts_count=src.parts_count, checksum_algorithm=src.checksum_algorithm,
        checksum_value=src.checksum_value, checksum_type=src.checksum_type, grants=grants,
        tags=new_tags if tagging_directive == "REPLACE" else src.tags,
    )
    info = commit_object(ctx.app, ctx.store, bucket, version, write_check(ctx, key),
                         p.get("if_match"), p.get("if_none_match"))
    result = {"ETag": info.quoted_etag, "LastModified": info.last_modified, **info.checksum_members()}
    return {"CopyObjectResult": result}


def _require_source_tagging(ctx: S3Context, src: ObjectInfo) -> None:
    """Copying a tagged object's tags needs the right to read them (the source bucket's or object's
    owner), as S3 requires s3:GetObjectTagging on the source: reading the object is not enough."""
    with ctx.db.engine.connect() as conn:
        b = get_bucket(conn, src.bucket)
    if access.is_owner(ctx.principal, b) or (ctx.principal is not None and ctx.principal.user_id == src.owner_id):
        return
    raise access.access_denied("Access Denied: the source object has tags you may not read; copy it with "
                               "x-amz-tagging-directive: REPLACE (and x-amz-tagging for tags of your own).")


def clone_segments(ctx: S3Context, segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New blobs with the same bytes (hard links); all or nothing."""
    out: list[dict[str, Any]] = []
    try:
        for seg in segments:
            out.append({**seg, "b": ctx.store.clone(seg["b"])})
    except BaseException:
        ctx.store.delete(seg["b"] for seg in out)
        raise
    return out
