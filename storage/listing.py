"""ListObjects, ListObjectsV2 and the keyset walk they (and ListMultipartUploads) share.

The walk reads keys in S3 order (UTF-8 bytes) with range queries on the (bucket, key) index:
`prefix <= key < successor(prefix)`, after the marker. With a delimiter, a key that has the
delimiter after the prefix rolls up into a common prefix, and the walk then jumps past every key
under that common prefix with one new range query, so a listing costs O(page) rows however many
keys sit under each prefix. Continuation tokens are opaque and checksummed (ec2gw.aws.pagination).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import and_, or_, select

from ec2gw.aws.pagination import scope_digest
from ec2gw.errors import ServiceError
from storage import access
from storage.access import owner_dict
from storage.context import S3Context, invalid_argument, operation
from storage.models import Object
from storage.records import get_bucket, user_names

MAX_KEYS = 1000

#: fetch(after, after_tie, inclusive, n) -> up to n (key, tie, row) in order
Fetch = Callable[[str | None, str | None, bool, int], list[tuple[str, str | None, Any]]]


def successor(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with `prefix` (None: no bound)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


@dataclass
class Page:
    rows: list[Any] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str | None = None  # key or common prefix of the last entry (NextMarker)
    last_tie: str | None = None


def walk(fetch: Fetch, prefix: str, delimiter: str | None, after: str | None, after_tie: str | None,
         limit: int) -> Page:
    """Up to `limit` entries (rows and common prefixes) after the marker, in key order."""
    page = Page()
    if limit <= 0:
        return page
    cursor, tie, inclusive = after, after_tie, False
    while True:
        want = limit - len(page.rows) - len(page.prefixes) + 1
        batch = fetch(cursor, tie, inclusive, max(want, 2))
        jumped = False
        for key, row_tie, row in batch:
            cp = None
            if delimiter:
                idx = key.find(delimiter, len(prefix))
                if idx >= 0:
                    cp = key[: idx + len(delimiter)]
            if cp is not None and after is not None and cp <= after:
                pass  # the marker lies at or inside this common prefix: it was returned already
            elif len(page.rows) + len(page.prefixes) == limit:
                page.truncated = True
                return page
            elif cp is not None:
                page.prefixes.append(cp)
                page.last, page.last_tie = cp, None
            else:
                page.rows.append(row)
                page.last, page.last_tie = key, row_tie
                continue
            nxt = successor(cp)
            if nxt is None:
                return page
            cursor, tie, inclusive, jumped = nxt, None, True, True
            break
        if jumped:
            continue
        if len(batch) < max(want, 2):
            return page
        cursor, tie, inclusive = batch[-1][0], batch[-1][1], False


def key_range(column: Any, prefix: str) -> list[Any]:
    conds = []
    if prefix:
        conds.append(column >= prefix)
        end = successor(prefix)
        if end is not None:
            conds.append(column < end)
    return conds


def after_condition(column: Any, tie_column: Any, after: str | None, tie: str | None, inclusive: bool) -> list[Any]:
    if after is None:
        return []
    if inclusive:
        return [column >= after]
    if tie is not None and tie_column is not None:
        return [or_(column > after, and_(column == after, tie_column > tie))]
    return [column > after]


def encoder(encoding_type: str | None) -> Callable[[str | None], str | None]:
    if encoding_type is None:
        return lambda v: v
    if encoding_type != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request", "encoding-type", encoding_type)
    return lambda v: None if v is None else quote(v, safe="/")


def page_size(value: int | None, name: str = "max-keys") -> int:
    """max-keys / max-parts / max-uploads: 1,000 at most (larger asks get 1,000, as on S3)."""
    if value is None:
        return MAX_KEYS
    if value < 0:
        raise invalid_argument(f"Argument {name} must be an integer between 0 and 2147483647", name, value)
    return min(value, MAX_KEYS)


_OBJECT_COLUMNS = (Object.key, Object.size, Object.etag, Object.last_modified, Object.storage_class,
                   Object.owner_id, Object.checksum_algorithm, Object.checksum_type)


def _list(ctx: S3Context, bucket: str, prefix: str | None, delimiter: str | None, after: str | None,
          limit: int, with_owner: bool, encode: Callable[[str | None], str | None]) -> tuple[Page, list[dict[str, Any]]]:
    prefix = prefix or ""
    delimiter = delimiter or None
    with ctx.db.session() as s:
        b = get_bucket(s, bucket)
        access.require(access.can_list(ctx.settings, ctx.principal, b, prefix))

        def fetch(cur: str | None, tie: str | None, inclusive: bool, n: int) -> list[tuple[str, str | None, Any]]:
            conds = [Object.bucket_id == b.id, *key_range(Object.key, prefix),
                     *after_condition(Object.key, None, cur, None, inclusive)]
            rows = s.execute(select(*_OBJECT_COLUMNS).where(*conds).order_by(Object.key).limit(n)).all()
            return [(r.key, None, r) for r in rows]

        page = walk(fetch, prefix, delimiter, after, None, limit)
        owners = user_names(s, {r.owner_id for r in page.rows}) if with_owner else {}
    contents = []
    for r in page.rows:
        item: dict[str, Any] = {"Key": encode(r.key), "LastModified": r.last_modified, "ETag": f'"{r.etag}"',
                                "Size": r.size, "StorageClass": r.storage_class}
        if r.checksum_algorithm:
            item["ChecksumAlgorithm"] = [r.checksum_algorithm]
            item["ChecksumType"] = r.checksum_type or "FULL_OBJECT"
        if with_owner and r.owner_id in owners:
            item["Owner"] = owner_dict(*owners[r.owner_id])
        contents.append(item)
    return page, contents


@operation("ListObjects")
def list_objects(ctx: S3Context, bucket: str, prefix: str | None = None, delimiter: str | None = None,
                 marker: str | None = None, max_keys: int | None = None, encoding_type: str | None = None,
                 **_: Any) -> dict[str, Any]:
    encode = encoder(encoding_type)
    limit = page_size(max_keys)
    page, contents = _list(ctx, bucket, prefix, delimiter, marker or None, limit, True, encode)
    # S3 leaves ListObjects' Prefix as it was asked for (botocore decodes Delimiter, Marker, NextMarker,
    # keys and common prefixes, not Prefix)
    out: dict[str, Any] = {
        "Name": bucket, "Prefix": prefix or "", "Marker": encode(marker or ""), "MaxKeys": limit,
        "IsTruncated": page.truncated, "Contents": contents,
        "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes],
    }
    if delimiter:
        out["Delimiter"] = encode(delimiter)
    if page.truncated and page.last is not None:
        out["NextMarker"] = encode(page.last)
    if encoding_type:
        out["EncodingType"] = encoding_type
    return out


@operation("ListObjectsV2")
def list_objects_v2(ctx: S3Context, bucket: str, prefix: str | None = None, delimiter: str | None = None,
                    max_keys: int | None = None, encoding_type: str | None = None, continuation_token: str | None = None,
                    start_after: str | None = None, fetch_owner: bool | None = None, **_: Any) -> dict[str, Any]:
    encode = encoder(encoding_type)
    limit = page_size(max_keys)
    scope = scope_digest("v2", bucket, prefix or "", delimiter or "")
    after = start_after or None
    if continuation_token == "":
        continuation_token = None  # `continuation-token=` (sent by some clients for the first page): none
    if continuation_token is not None:
        try:
            after = ctx.tokens.decode(continuation_token, scope)
        except ServiceError:
            raise invalid_argument("The continuation token provided is incorrect", "continuation-token",
                                   continuation_token) from None
    page, contents = _list(ctx, bucket, prefix, delimiter, after, limit, bool(fetch_owner), encode)
    out: dict[str, Any] = {
        "Name": bucket, "Prefix": encode(prefix or ""), "MaxKeys": limit, "IsTruncated": page.truncated,
        "KeyCount": len(contents) + len(page.prefixes), "Contents": contents,
        "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes],
    }
    if delimiter:
        out["Delimiter"] = encode(delimiter)
    if continuation_token is not None:
        out["ContinuationToken"] = continuation_token
    if start_after:
        out["StartAfter"] = encode(start_after)
    if page.truncated and page.last is not None:
        out["NextContinuationToken"] = ctx.tokens.encode(page.last, scope)
    if encoding_type:
        out["EncodingType"] = encoding_type
    return out


@operation("ListObjectVersions")
def list_object_versions(ctx: S3Context, bucket: str, prefix: str | None = None, delimiter: str | None = None,
                         key_marker: str | None = None, version_id_marker: str | None = None,
                         max_keys: int | None = None, encoding_type: str | None = None, **_: Any) -> dict[str, Any]:
    """Buckets are unversioned: each object is its one version, "null" (S3's answer for a bucket
    whose versioning was never enabled), and there are no delete markers."""
    encode = encoder(encoding_type)
    limit = page_size(max_keys)
    if version_id_marker and not key_marker:
        raise invalid_argument("A version-id marker cannot be specified without a key marker.", "version-id-marker",
                               version_id_marker)
    if version_id_marker not in (None, "", "null"):
        raise invalid_argument("Invalid version id specified", "version-id-marker", version_id_marker)
    # the marker's version is "null", the only one: the listing goes on after its key
    page, contents = _list(ctx, bucket, prefix, delimiter, key_marker or None, limit, True, encode)
    versions = [{**item, "VersionId": "null", "IsLatest": True} for item in contents]
    out: dict[str, Any] = {
        "Name": bucket, "Prefix": encode(prefix or ""), "KeyMarker": encode(key_marker or ""),
        "VersionIdMarker": version_id_marker or "", "MaxKeys": limit, "IsTruncated": page.truncated,
        "Versions": versions, "CommonPrefixes": [{"Prefix": encode(p)} for p in page.prefixes],
    }
    if delimiter:
        out["Delimiter"] = encode(delimiter)
    if page.truncated and page.last is not None:
        out["NextKeyMarker"] = encode(page.last)
        out["NextVersionIdMarker"] = "null"
    if encoding_type:
        out["EncodingType"] = encoding_type
    return out
