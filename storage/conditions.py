"""HTTP ranges and conditional requests, evaluated the way S3 does.

Ranges: `bytes=a-b`, `bytes=a-` and the suffix form `bytes=-n`; a range starting at or past the end
is 416 InvalidRange; a header that is not a single well-formed byte range is ignored (the whole
object is returned), as S3 does.
Conditions (RFC 7232 order, as S3 documents them): If-Match failing is 412 and, when it holds,
If-Unmodified-Since is not looked at; If-None-Match matching is 304 (GET/HEAD) and, when present,
If-Modified-Since is not looked at. For copy sources every failure is 412.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from ec2gw.errors import ServiceError

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE | re.ASCII)
#: larger than any object (5 TiB); what a position of more digits than int() takes counts as
BEYOND_ANY_SIZE = 1 << 63


def _magnitude(digits: str) -> tuple[int, str]:
    """Orders digit strings as the numbers they write, however long."""
    digits = digits.lstrip("0") or "0"
    return len(digits), digits


def range_number(digits: str) -> int:
    """A range position as written (ASCII digits); a number too long for int() (Python refuses more
    than 4,300 digits) is past the end of any object, as it is."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else BEYOND_ANY_SIZE


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of the satisfiable range, None for the whole object."""
    if not header:
        return None
    m = _RANGE.match(header)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:
        suffix = range_number(last)
        if suffix == 0 or size == 0:
            raise invalid_range(size, header)
        return max(0, size - suffix), size
    if last and _magnitude(last) < _magnitude(first):
        return None  # syntactically invalid (last < first): ignored
    start = range_number(first)
    end = range_number(last) + 1 if last else size
    if start >= size:
        raise invalid_range(size, header)
    return start, min(end, size)


def invalid_range(size: int, header: str) -> ServiceError:
    err = ServiceError("InvalidRange", "The requested range is not satisfiable", 416,
                       RangeRequested=header, ActualObjectSize=str(size))
    err.headers["Content-Range"] = f"bytes */{size}"
    return err


def etag_matches(header: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match list names this ETag (or is *)."""
    for item in header.split(","):
        tag = item.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/").strip().strip('"')
        if tag == etag:
            return True
    return False


def _seconds(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)


def precondition_failed(condition: str) -> ServiceError:
    return ServiceError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412,
                        Condition=condition)


def evaluate(etag: str, last_modified: datetime, if_match: str | None, if_none_match: str | None,
             if_modified_since: object, if_unmodified_since: object, *, copy_source: bool = False) -> int | None:
    """None if the request goes ahead, 304 for Not Modified; raises PreconditionFailed (412).

    Dates that are not dates (a string the parser could not read) are ignored, as S3 does.
    """
    modified = _seconds(last_modified)
    prefix = "x-amz-copy-source-" if copy_source else ""
    if if_match is not None:
        if not etag_matches(if_match, etag):
            raise precondition_failed(prefix + "If-Match")
    elif isinstance(if_unmodified_since, datetime) and modified > _seconds(if_unmodified_since):
        raise precondition_failed(prefix + "If-Unmodified-Since")
    if if_none_match is not None:
        if etag_matches(if_none_match, etag):
            if copy_source:
                raise precondition_failed(prefix + "If-None-Match")
            return 304
    elif isinstance(if_modified_since, datetime) and modified <= _seconds(if_modified_since):
        if copy_source:
            raise precondition_failed(prefix + "If-Modified-Since")
        return 304
    return None
