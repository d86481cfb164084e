"""Multipart uploads: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts, ListMultipartUploads.

Each part is a blob; completing an upload makes the listed parts' blobs the object's segments
(no data is copied) and removes the others. The ETag is S3's `md5(concat(part MD5s))-N`. A
Complete repeated after success answers with the same result while the object is still the one
that upload made (S3 does the same); otherwise the upload is gone (NoSuchUpload).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any
from urllib.parse import quote

from sqlalchemy import delete, select

from ec2gw.aws.restxml_parser import malformed_xml
from ec2gw.db.models import utcnow
from ec2gw.errors import ServiceError
from storage import access, checksums, usage
from storage.access import check_key, owner_dict
from storage.blobstore import SegmentReader
from storage.conditions import parse_range, range_number
from storage.context import (
    S3Context,
    access_denied,
    invalid_argument,
    invalid_request,
    no_such_upload,
    operation,
)
from storage.listing import after_condition, encoder, key_range, page_size, walk
from storage.models import MultipartUpload, Part
from storage.objects import (
    EARLY_CHECK_BYTES,
    content_headers,
    copy_source_object,
    new_object_acl,
    owner_of_new,
    refuse_unsupported,
    storage_class,
    user_metadata,
    write_check,
)
from storage.records import (
    NewVersion,
    ObjectInfo,
    commit_object,
    find_object,
    get_bucket,
    user_names,
    write_session,
)
from storage.tagging import header_tags
from storage.upload import ALGORITHMS, MAX_PUT_SIZE

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PARTS = 10000
FULL_OBJECT_CRCS = ("CRC32", "CRC32C", "CRC64NVME")


def _upload(s: Any, ctx: S3Context, bucket: str, key: str, upload_id: str) -> tuple[Any, MultipartUpload]:
    """The upload, which only its initiator (with WRITE still) and the bucket's owner may use:
    bucket WRITE lets anyone start uploads, not add to, list, complete or abort another's."""
    b = get_bucket(s, bucket)
    upload = s.get(MultipartUpload, upload_id)
    if upload is None or upload.bucket_id != b.id or upload.key != key:
        access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
        raise no_such_upload(upload_id)
    access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
    _require_initiator_or_owner(ctx, b, upload)
    return b, upload


def _require_initiator_or_owner(ctx: S3Context, b: Any, upload: MultipartUpload) -> None:
    """An upload in progress is its initiator's: others who may write to the bucket (public-read-write)
    may start uploads of their own, not add to, list, complete or abort this one (S3: "the bucket
    owner and the initiator of the multipart upload")."""
    if access.is_owner(ctx.principal, b) or (ctx.principal is not None and ctx.principal.user_id == upload.owner_id):
        return
    raise access_denied("Access Denied: only the user who started this multipart upload and the bucket's "
                               "owner may use it; start an upload of your own with CreateMultipartUpload.")


def _part_number(value: int) -> int:
    if not 1 <= value <= MAX_PARTS:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive", "partNumber", value)
    return value


@operation("CreateMultipartUpload")
def create_multipart_upload(ctx: S3Context, bucket: str, key: str, **p: Any) -> dict[str, Any]:
    check_key(key)
    refuse_unsupported(p)
    acl, grants = new_object_acl(ctx, p)
    algorithm = (p.get("checksum_algorithm") or "").upper() or None
    if algorithm is not None and algorithm not in ALGORITHMS.values():
        raise invalid_request(f"Checksum algorithm {algorithm} is not supported.")
    ctype = p.get("checksum_type")
    if ctype is not None and ctype not in ("COMPOSITE", "FULL_OBJECT"):
        raise invalid_request("Value for x-amz-checksum-type header is invalid.")
    if ctype is not None and algorithm is None:
        raise invalid_request("The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.")
    if algorithm is not None and ctype is None:
        ctype = "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    if ctype == "FULL_OBJECT" and algorithm not in FULL_OBJECT_CRCS:
        raise invalid_request(f"The FULL_OBJECT checksum type cannot be used with the {algorithm} checksum algorithm.")
    if ctype == "COMPOSITE" and algorithm == "CRC64NVME":
        raise invalid_request("The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm.")
    tags = header_tags(p.get("tagging"))
    upload_id = secrets.token_urlsafe(36)
    with write_session(ctx.db) as s:
        b = get_bucket(s, bucket)
        write_check(ctx, key)(b)
        s.add(MultipartUpload(
            id=upload_id, bucket_id=b.id, key=key, owner_id=owner_of_new(ctx),
            headers_json=json.dumps(content_headers(p)), metadata_json=json.dumps(user_metadata(p.get("metadata"))),
            acl=acl, grants=grants, storage_class=storage_class(p.get("storage_class")), checksum_algorithm=algorithm,
            checksum_type=ctype, tags=tags,
        ))
    out: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
    if algorithm:
        out.update(ChecksumAlgorithm=algorithm, ChecksumType=ctype)
    return out


def _commit_part(ctx: S3Context, bucket: str, key: str, upload_id: str, number: int, blob_id: str, size: int,
                 etag: str, checksum: str | None) -> None:
    old: list[str] = []
    try:
        with write_session(ctx.db) as s:
            _, upload = _upload(s, ctx, bucket, key, upload_id)
            part = s.get(Part, (upload_id, number), with_for_update=True)
            if part is None:
                s.add(Part(upload_id=upload_id, part_number=number, blob_id=blob_id, size=size, etag=etag,
                           checksum_value=checksum))
                added = size
            else:
                old.append(part.blob_id)
                added = size - part.size
                part.blob_id, part.size, part.etag, part.checksum_value = blob_id, size, etag, checksum
                part.last_modified = utcnow()
            s.flush()
            usage.charge(s, ctx.storage_quota, upload.owner_id, added)
    except BaseException:
        ctx.store.delete([blob_id])
        raise
    ctx.store.delete(old)


def _part_checksum_result(algorithm: str | None, value: str | None) -> dict[str, str]:
    return {f"Checksum{algorithm}": value} if algorithm and value else {}


@operation("UploadPart")
def upload_part(ctx: S3Context, bucket: str, key: str, upload_id: str, part_number: int, **p: Any) -> dict[str, Any]:
    number = _part_number(part_number)
    with ctx.db.session() as s:
        _, upload = _upload(s, ctx, bucket, key, upload_id)
        algorithm = upload.checksum_algorithm
    body = ctx.body
    if body.algorithm and algorithm and body.algorithm.upper() != algorithm:
        raise invalid_request(f"Checksum Type mismatch occurred, expected checksum Type: {algorithm.lower()}, "
                              f"actual checksum Type: {body.algorithm}")
    if body.algorithm is None and algorithm:
        body.algorithm = algorithm.lower()  # compute it: Complete needs every part's checksum
    if body.length is None or body.length > EARLY_CHECK_BYTES:
        # refuse a large part before receiving it; _commit_part checks every part in its transaction
        access.check_storage_quota(ctx.app, owner_of_new(ctx), body.length or 0)
    with ctx.store.writer(body.checksums()) as writer:
        writer.copy_from(body.reader, expected=body.length)
        checksum = body.verify(writer.md5.digest())
        writer.commit()
    _commit_part(ctx, bucket, key, upload_id, number, writer.blob_id, writer.size, writer.etag,
                 checksum if algorithm else None)
    return {"ETag": f'"{writer.etag}"', **_part_checksum_result(algorithm, checksum if algorithm else None)}


@operation("UploadPartCopy")
def upload_part_copy(ctx: S3Context, bucket: str, key: str, upload_id: str, part_number: int, copy_source: str,
                     **p: Any) -> dict[str, Any]:
    number = _part_number(part_number)
    with ctx.db.session() as s:
        _, upload = _upload(s, ctx, bucket, key, upload_id)
        algorithm = upload.checksum_algorithm
    src: ObjectInfo = copy_source_object(ctx, copy_source, p)
    start, end = 0, src.size
    if p.get("copy_source_range") is not None:  # an empty one too: S3 refuses it
        selected = _copy_range(p["copy_source_range"], src.size)
        start, end = selected
    if end - start > MAX_PUT_SIZE:
        raise invalid_request("The specified copy source is larger than the maximum allowable size for a copy source: "
                              f"{MAX_PUT_SIZE}")
    reader = SegmentReader(ctx.store, [(seg["b"], seg["n"]) for seg in src.segments], start, end)
    hashers = {} if algorithm is None else {"c": checksums.new_checksum(algorithm.lower())}
    try:
        with ctx.store.writer(hashers) as writer:
            writer.copy_from(reader)
            writer.commit()
    finally:
        reader.close()
    value = hashers["c"].b64digest() if hashers else None
    _commit_part(ctx, bucket, key, upload_id, number, writer.blob_id, writer.size, writer.etag, value)
    result = {"ETag": f'"{writer.etag}"', "LastModified": utcnow(), **_part_checksum_result(algorithm, value)}
    return {"CopyPartResult": result}


_COPY_RANGE = re.compile(r"bytes=([0-9]+)-([0-9]+)")


def _copy_range(header: str, size: int) -> tuple[int, int]:
    """(start, end exclusive) of x-amz-copy-source-range, or S3's InvalidArgument: one form for a
    value that is not `bytes=first-last`, another for a range the source does not hold."""
    if _COPY_RANGE.fullmatch(header) is None:
        raise invalid_argument("The x-amz-copy-source-range value must be of the form bytes=first-last where first "
                               "and last are the zero-based offsets of the first and last bytes to copy",
                               "x-amz-copy-source-range", header)
    bad = invalid_argument(f"Range specified is not valid for source object of size: {size}",
                           "x-amz-copy-source-range", header)
    try:
        selected = parse_range(header, size)
    except ServiceError:
        raise bad from None
    _, _, last = header.removeprefix("bytes=").partition("-")
    if selected is None or range_number(last) >= size:
        raise bad
    return selected


@operation("CompleteMultipartUpload")
def complete_multipart_upload(ctx: S3Context, bucket: str, key: str, upload_id: str,
                              multipart_upload: dict[str, Any] | None = None, **p: Any) -> dict[str, Any]:
    listed = (multipart_upload or {}).get("Parts") or []
    location = f"{ctx.base_url}/{quote(bucket)}/{quote(key, safe='/~')}"
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        upload = s.get(MultipartUpload, upload_id)
        if upload is None or upload.bucket_id != b.id or upload.key != key:
            access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
            info = find_object(s, b, key)
            if info is not None and info.upload_id == upload_id:  # a retried Complete: same answer
                access.require(access.is_owner(ctx.principal, b)
                               or (ctx.principal is not None and ctx.principal.user_id == info.owner_id))
                return {"Location": location, "Bucket": bucket, "Key": key, "ETag": info.quoted_etag,
                        **info.checksum_members()}
            raise no_such_upload(upload_id)
        access.require(access.can_write_object(ctx.settings, ctx.principal, b, key))
        _require_initiator_or_owner(ctx, b, upload)
        parts = {pt.part_number: pt for pt in s.scalars(select(Part).where(Part.upload_id == upload_id))}
        up = {"headers": json.loads(upload.headers_json),
              "metadata": json.loads(upload.metadata_json), "acl": upload.acl, "owner": upload.owner_id,
              "grants": upload.grants, "tags": upload.tags,
              "sclass": upload.storage_class, "alg": upload.checksum_algorithm, "ctype": upload.checksum_type}
    chosen = _check_parts(listed, parts, up["alg"])
    segments = [{"b": pt.blob_id, "n": pt.size, "c": pt.checksum_value} for pt in chosen]
    size = sum(pt.size for pt in chosen)
    etag = hashlib.md5(b"".join(bytes.fromhex(pt.etag) for pt in chosen)).hexdigest() + f"-{len(chosen)}"
    checksum = _object_checksum(up["alg"], up["ctype"], chosen, p)
    if p.get("mpu_object_size") is not None and p["mpu_object_size"] != size:
        raise invalid_request(f"The provided 'x-amz-mp-object-size' header value {p['mpu_object_size']} does not "
                              f"match what was computed: {size}")
    version = NewVersion(key, up["owner"], segments, size, etag, up["headers"], up["metadata"], up["acl"],
                         up["sclass"], parts_count=len(chosen), upload_id=upload_id,
                         checksum_algorithm=up["alg"] if checksum else None, checksum_value=checksum,
                         checksum_type=up["ctype"] if checksum else None, grants=up["grants"], tags=up["tags"])
    leftovers: list[str] = []

    def finish(conn: Any) -> int:
        """In commit_object's transaction: the upload must still be there, unchanged; then it goes,
        and its parts' bytes with it (returned: the object counts them again)."""
        current = {pt.part_number: pt for pt in conn.execute(
            select(Part.part_number, Part.blob_id, Part.size).where(Part.upload_id == upload_id).with_for_update())}
        if conn.execute(select(MultipartUpload.id).where(MultipartUpload.id == upload_id)).first() is None or any(
                current.get(pt.part_number) is None or current[pt.part_number].blob_id != pt.blob_id for pt in chosen):
            raise ServiceError("SlowDown", "The upload changed while it was being completed; retry the request.", 503)
        keep = {pt.blob_id for pt in chosen}
        leftovers.extend(pt.blob_id for pt in current.values() if pt.blob_id not in keep)
        conn.execute(delete(Part).where(Part.upload_id == upload_id))
        conn.execute(delete(MultipartUpload).where(MultipartUpload.id == upload_id))
        return sum(pt.size for pt in current.values())

    try:
        # the part blobs stay the upload's if this fails: it can be completed (or aborted) again
        info = commit_object(ctx.app, ctx.store, bucket, version, write_check(ctx, key),
                             p.get("if_match"), p.get("if_none_match"), before=finish, owns_blobs=False)
    except BaseException:
        leftovers.clear()
        raise
    ctx.store.delete(leftovers)
    return {"Location": location, "Bucket": bucket, "Key": key, "ETag": info.quoted_etag, **info.checksum_members()}


def _check_parts(listed: list[dict[str, Any]], parts: dict[int, Part], algorithm: str | None) -> list[Part]:
    if not listed:
        raise malformed_xml("a CompleteMultipartUpload needs at least one Part")
    chosen: list[Part] = []
    previous = 0
    for item in listed:
        number, etag = item.get("PartNumber"), (item.get("ETag") or "").strip().strip('"')
        if not isinstance(number, int) or not etag:
            raise malformed_xml("every Part needs a PartNumber and an ETag")
        if number <= previous:
            raise ServiceError("InvalidPartOrder", "The list of parts was not in ascending order. The parts list must "
                               "be specified in order by part number.", 400)
        previous = number
        part = parts.get(number)
        if part is None or part.etag != etag:
            raise _invalid_part(number, etag)
        if algorithm is not None:
            given = item.get(f"Checksum{algorithm}")
            if given is not None and given != part.checksum_value:
                raise _invalid_part(number, etag)
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise ServiceError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object "
                               "size.", 400, ProposedSize=str(part.size), MinSizeAllowed=str(MIN_PART_SIZE),
                               PartNumber=str(part.part_number), ETag=f'"{part.etag}"')
    return chosen


def _invalid_part(number: int, etag: str) -> ServiceError:
    return ServiceError("InvalidPart", "One or more of the specified parts could not be found. The part may not "
                        "have been uploaded, or the specified entity tag may not match the part's entity tag.", 400,
                        PartNumber=str(number), ETag=etag)


def _object_checksum(algorithm: str | None, ctype: str | None, chosen: list[Part], p: dict[str, Any]) -> str | None:
    if algorithm is None:
        return None
    if any(pt.checksum_value is None for pt in chosen):
        return None
    if ctype == "FULL_OBJECT":
        value = checksums.full_object(algorithm, [(pt.checksum_value or "", pt.size) for pt in chosen])
        expected = p.get(f"checksum_{algorithm.lower()}")
        if expected is not None and expected != value:
            raise ServiceError("BadDigest", f"The {algorithm} you specified did not match the calculated checksum.", 400)
        return value
    return checksums.composite(algorithm, [pt.checksum_value or "" for pt in chosen])


@operation("AbortMultipartUpload")
def abort_multipart_upload(ctx: S3Context, bucket: str, key: str, upload_id: str, **_: Any) -> dict[str, Any]:
    with write_session(ctx.db) as s:
        _, upload = _upload(s, ctx, bucket, key, upload_id)
        rows = s.execute(select(Part.blob_id, Part.size).where(Part.upload_id == upload_id).with_for_update()).all()
        blobs = [blob for blob, _ in rows]
        s.execute(delete(Part).where(Part.upload_id == upload_id))
        s.execute(delete(MultipartUpload).where(MultipartUpload.id == upload_id))
        usage.add(s, upload.owner_id, -sum(size for _, size in rows))
    ctx.store.delete(blobs)
    return {}


@operation("ListParts")
def list_parts(ctx: S3Context, bucket: str, key: str, upload_id: str, max_parts: int | None = None,
               part_number_marker: int | None = None, **_: Any) -> dict[str, Any]:
    limit = page_size(max_parts, "max-parts")
    # past the last possible part, or below the first: SQLite takes no integer beyond 64 bits
    marker = min(max(part_number_marker or 0, 0), MAX_PARTS)
    with ctx.db.session() as s:
        _, upload = _upload(s, ctx, bucket, key, upload_id)
        rows = list(s.scalars(select(Part).where(Part.upload_id == upload_id, Part.part_number > marker)
                              .order_by(Part.part_number).limit(limit + 1)))
        names = user_names(s, {upload.owner_id})
        alg, ctype = upload.checksum_algorithm, upload.checksum_type
        sclass = upload.storage_class
    owner = owner_dict(*names[upload.owner_id]) if upload.owner_id in names else None
    page = rows[:limit]
    out: dict[str, Any] = {
        "Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumberMarker": marker, "MaxParts": limit,
        "IsTruncated": len(rows) > limit, "StorageClass": sclass, "Owner": owner, "Initiator": owner,
        "Parts": [{"PartNumber": pt.part_number, "LastModified": pt.last_modified, "ETag": f'"{pt.etag}"',
                   "Size": pt.size, **_part_checksum_result(alg, pt.checksum_value)} for pt in page],
    }
    if page:
        out["NextPartNumberMarker"] = page[-1].part_number
    if alg:
        out.update(ChecksumAlgorithm=alg, ChecksumType=ctype)
    return out


@operation("ListMultipartUploads")
def list_multipart_uploads(ctx: S3Context, bucket: str, prefix: str | None = None, delimiter: str | None = None,
                           key_marker: str | None = None, upload_id_marker: str | None = None,
                           max_uploads: int | None = None, encoding_type: str | None = None, **_: Any) -> dict[str, Any]:
    encode = encoder(encoding_type)
    limit = page_size(max_uploads, "max-uploads")
    prefix = prefix or ""
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        access.require(access.can_list(ctx.settings, ctx.principal, b, prefix))

        def fetch(cur: str | None, tie: str | None, inclusive: bool, n: int) -> list[tuple[str, str | None, Any]]:
            conds = [MultipartUpload.bucket_id == b.id, *key_range(MultipartUpload.key, prefix),
                     *after_condition(MultipartUpload.key, MultipartUpload.id, cur, tie, inclusive)]
            rows = s.scalars(select(MultipartUpload).where(*conds)
                             .order_by(MultipartUpload.key, MultipartUpload.id).limit(n)).all()
            return [(u.key, u.id, u) for u in rows]

        tie = upload_id_marker if key_marker else None
        page = walk(fetch, prefix, delimiter or None, key_marker or None, tie, limit)
        names = user_names(s, {u.owner_id for u in page.rows})
    uploads = []
    for u in page.rows:
        owner = owner_dict(*names[u.owner_id]) if u.owner_id in names else None
        item = {"Key": encode(u.key), "UploadId": u.id, "Initiated": u.initiated, "StorageClass": u.storage_class,
                "Owner": owner, "Initiator": owner}
        if u.checksum_algorithm:
            item.update(ChecksumAlgorithm=u.checksum_algorithm, ChecksumType=u.checksum_type)
        uploads.append(item)
    out: dict[str, Any] = {
        "Bucket": bucket, "KeyMarker": encode(key_marker or ""), "UploadIdMarker": upload_id_marker or "",
        "MaxUploads": limit, "IsTruncated": page.truncated, "Uploads": uploads, "Prefix": encode(prefix),
        "CommonPrefixes": [{"Prefix": encode(cp)} for cp in page.prefixes],
    }
    if delimiter:
        out["Delimiter"] = encode(delimiter)
    if page.truncated:
        out["NextKeyMarker"] = encode(page.last)
        out["NextUploadIdMarker"] = page.last_tie or ""
    if encoding_type:
        out["EncodingType"] = encoding_type
    return out

