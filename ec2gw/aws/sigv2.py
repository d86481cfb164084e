"""AWS Signature Version 2 verification: EC2 query signing and S3 ``Authorization: AWS key:sig``.

What: legacy EC2 tools sign the query (``SignatureVersion=2``, ``HmacSHA256``/``HmacSHA1``, ``Timestamp``
or ``Expires``), in the URL or in the POST form; euca2ools signs S3 with HMAC-SHA1 over the S3
string-to-sign, as a header or as a presigned URL (``AWSAccessKeyId``, ``Expires``, ``Signature``).

Why this way: the S3 string-to-sign (standard headers, x-amz-* headers, canonicalized resource with its
sub-resources) is built by botocore's ``HmacV1Auth``, the code euca2ools-era clients mirror; the EC2
parameter string follows ``SigV2Auth.calc_signature``. Signatures are compared with
``hmac.compare_digest``. Where clients legitimately differ (Date line when x-amz-date is present,
Host case, path encoding) each faithful rendering is tried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from botocore.auth import HmacV1Auth
from botocore.awsrequest import HTTPHeaders
from botocore.credentials import Credentials

from ec2gw.aws.sigv4 import (
    MAX_PRESIGN_EXPIRES,
    MAX_SKEW,
    AuthResult,
    RequestView,
    auth_error,
    check_skew,
    first,
    lookup_or_fail,
    parse_amz_date,
    reencode_path,
    signature_error,
    unsigned_headers_error,
    utf8_reading,
)
from ec2gw.errors import ServiceError, missing_parameter

_DIGESTS = {"HmacSHA256": hashlib.sha256, "HmacSHA1": hashlib.sha1}
#: default bound (seconds past the server time) of an EC2 SigV2 Expires: a 15-minute validity plus
#: the 15 minutes of clock skew a Timestamp is allowed, so both forms replay for about as long
DEFAULT_MAX_EXPIRES = int(2 * MAX_SKEW.total_seconds())


def _b64_hmac(secret: str, text: str, digest: Any) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), text.encode("utf-8"), digest).digest()).decode()


def _same(provided: str, expected: str) -> bool:
    return hmac.compare_digest(provided.strip().encode(), expected.encode())


# --------------------------------------------------------------------------- EC2 query signing


def _parse_iso(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.strip())
        # astimezone overflows near year 1 and 9999 (e.g. 0001-01-01T00:00:00+01:00)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def ec2_string_to_sign(method: str, host: str, path: str, params: list[tuple[str, str]]) -> str:
    """METHOD\\nhost\\npath\\nsorted RFC 3986-encoded params (without Signature), as SigV2Auth builds it."""
    pairs = sorted((k, v) for k, v in params if k != "Signature")
    qs = "&".join(f"{quote(k.encode(), safe='-_.~')}={quote(v.encode(), safe='-_.~')}" for k, v in pairs)
    return f"{method.upper()}\n{host}\n{path or '/'}\n{qs}"


def verify_ec2(
    req: RequestView,
    hdrs: dict[str, list[str]],
    params: list[tuple[str, str]],
    *,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    max_expires: int = DEFAULT_MAX_EXPIRES,
) -> AuthResult:
    """Verify an EC2 SigV2 request; ``params`` are the decoded parameters that carry the Signature.

    ``max_expires``: how many seconds past the server time an ``Expires`` may lie; a later one is
    refused as expired (RequestExpired), so a captured request cannot be replayed for years.
    """
    values = dict(params)
    service = "ec2"
    version = values.get("SignatureVersion")
    if version != "2":
        raise auth_error(
            service, "unsupported",
            f"SignatureVersion {version!r} is not supported; sign with SignatureVersion=2 or Signature Version 4.",
        )
    method = values.get("SignatureMethod", "")
    if method not in _DIGESTS:
        raise auth_error(
            service, "unsupported", f"SignatureMethod {method!r} is not supported; use HmacSHA256 or HmacSHA1."
        )
    for name in ("AWSAccessKeyId", "Signature"):
        if not values.get(name):
            raise auth_error(service, "malformed", f"The SigV2 request lacks {name}; sign it again.")
    if "Timestamp" in values and "Expires" in values:
        raise auth_error(service, "malformed", "Send Timestamp or Expires, not both.")
    if "Timestamp" in values:
        when = _parse_iso(values["Timestamp"])
        if when is None:
            raise auth_error(service, "malformed", f"Timestamp {values['Timestamp']!r} is not an ISO 8601 time.")
        check_skew(service, when, now, "Timestamp")
    elif "Expires" in values:
        until = _parse_iso(values["Expires"])
        if until is None:
            raise auth_error(service, "malformed", f"Expires {values['Expires']!r} is not an ISO 8601 time.")
        if now > until:
            raise auth_error(
                service, "expired",
                f"Request has expired: Expires={values['Expires']} is in the past (server time "
                f"{now:%Y-%m-%dT%H:%M:%SZ}); sign a new request and check that your clock is right.",
            )
        if until - now > timedelta(seconds=max_expires):
            raise auth_error(
                service, "expired",
                f"Request has expired: Expires={values['Expires']} lies more than {max_expires} seconds after "
                f"the server time {now:%Y-%m-%dT%H:%M:%SZ}, longer than this service lets a signed request "
                "be replayed; sign it with an Expires at most that far ahead, or with a Timestamp.",
            )
    else:
        raise missing_parameter("Timestamp")
    # SigV2 signs no header: an x-amz-* header would ride along under the signature unchecked
    amz = [name for name in hdrs if name.startswith("x-amz-")]
    if amz:
        raise unsigned_headers_error(service, amz, "Signature Version 2 signs no header; send none of them, "
                                     "or sign the request with Signature Version 4 and list them in SignedHeaders.")
    access_key = values["AWSAccessKeyId"]
    secret = lookup_or_fail(service, access_key, lookup_secret)
    host = first(hdrs, "host") or ""
    provided = values["Signature"].replace(" ", "+")  # base64 has no spaces: an unencoded '+' was decoded
    first_sts = None
    for h in dict.fromkeys([host, host.lower()]):
        sts = ec2_string_to_sign(req.method, h, req.path, params)
        first_sts = first_sts or sts
        if _same(provided, _b64_hmac(secret, sts, _DIGESTS[method])):
            return AuthResult(access_key, "sigv2-query")
    raise signature_error(service, access_key, values["Signature"], first_sts or "", None)


# --------------------------------------------------------------------------- S3 (HmacV1)


class _S3StringToSign(HmacV1Auth):
    """botocore's HmacV1Auth with the Date line supplied by the verifier instead of the current time."""

    def __init__(self, date_line: str) -> None:
        super().__init__(Credentials("unused", "unused"))
        self._date_line = date_line

    def _get_date(self) -> str:
        return self._date_line


def s3_strings_to_sign(
    req: RequestView, headers: HTTPHeaders, date_lines: list[str], bucket: str | None
) -> list[str]:
    """Each faithful S3 SigV2 string-to-sign of the request (Date line and path encoding variants)."""
    out: list[str] = []
    for path in dict.fromkeys([req.path or "/", reencode_path(req.path or "/")]):
        resource = f"/{bucket}{path}" if bucket else path
        split = SimpleNamespace(path=resource, query=req.query)
        for date_line in dict.fromkeys(date_lines):
            copy = HTTPHeaders()
            for k, v in headers.items():
                copy[k] = v
            out.append(_S3StringToSign(date_line).canonical_string(req.method, split, copy))
    return list(dict.fromkeys(out))


def _headers_for_s3(hdrs: dict[str, list[str]], extra: dict[str, str] | None = None) -> HTTPHeaders:
    """The headers the S3 string-to-sign reads; presigned URLs may carry x-amz-*/Content-* in the query."""
    out = HTTPHeaders()
    for name, values in hdrs.items():
        if name.startswith("x-amz-") or name in ("content-md5", "content-type"):
            for v in values:
                out[name] = v
    for name, value in (extra or {}).items():
        if name not in out:
            out[name] = value
    return out


def _check_s3(
    req: RequestView, headers: HTTPHeaders, date_lines: list[str], access_key: str, signature: str,
    lookup_secret: Callable[[str], str | None], bucket: str | None, scheme: str,
) -> AuthResult:
    secret = lookup_or_fail("s3", access_key, lookup_secret)
    candidates = s3_strings_to_sign(req, headers, date_lines, bucket)
    utf8 = HTTPHeaders()
    for name, value in headers.items():
        utf8[name] = utf8_reading(value)
    if list(utf8.items()) != list(headers.items()):
        # x-amz-meta-* values botocore signed as text and sent as UTF-8 bytes (see sigv4.utf8_reading)
        candidates += [c for c in s3_strings_to_sign(req, utf8, date_lines, bucket) if c not in candidates]
    for sts in candidates:
        if _same(signature, _b64_hmac(secret, sts, hashlib.sha1)):
            return AuthResult(access_key, scheme)
    raise signature_error("s3", access_key, signature, candidates[0], None)


def verify_s3_header(
    req: RequestView,
    hdrs: dict[str, list[str]],
    *,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    bucket: str | None = None,
) -> AuthResult:
    """Verify ``Authorization: AWS <key>:<base64 HMAC-SHA1>``; ``bucket`` for virtual-hosted requests."""
    value = (first(hdrs, "authorization") or "").strip()
    access_key, colon, signature = value[4:].strip().rpartition(":")
    if not colon or not access_key or not signature:
        raise auth_error("s3", "malformed", "The Authorization header must read 'AWS <access key id>:<signature>'.")
    amz_date, date = first(hdrs, "x-amz-date"), first(hdrs, "date")
    when = parse_amz_date(amz_date or date)
    if when is None:
        raise ServiceError(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header; send one.", 403
        )
    check_skew("s3", when, now, "x-amz-date" if amz_date else "Date")
    # With x-amz-date the Date line is empty per the S3 docs; some signers put Date there anyway.
    date_lines = ["", date] if amz_date and date else [date or ""]
    return _check_s3(
        req, _headers_for_s3(hdrs), date_lines, access_key, signature, lookup_secret, bucket, "sigv2-header"
    )


def verify_s3_query(
    req: RequestView,
    hdrs: dict[str, list[str]],
    pairs: list[tuple[str, str]],
    *,
    lookup_secret: Callable[[str], str | None],
    now: datetime,
    bucket: str | None = None,
) -> AuthResult:
    """Verify a SigV2 presigned S3 URL (``AWSAccessKeyId``, ``Expires`` epoch seconds, ``Signature``)."""
    values = {k: v for k, v in pairs}
    missing = [n for n in ("AWSAccessKeyId", "Expires", "Signature") if not values.get(n)]
    if missing:
        raise auth_error(
            "s3", "malformed_query",
            f"The presigned URL lacks {', '.join(missing)}; it needs AWSAccessKeyId, Expires and Signature.",
        )
    try:
        expires = int(values["Expires"])
    except ValueError:
        raise auth_error("s3", "malformed_query", "Expires must be a number of seconds since the epoch.") from None
    if now.timestamp() > expires:
        raise auth_error(
            "s3", "expired",
            f"Request has expired: the presigned URL expired at {expires} (epoch seconds); presign a new one "
            "and check that your clock is right.",
            Expires=datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            ServerTime=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    extra = {k.lower(): v for k, v in pairs if k.lower().startswith("x-amz-") or k.lower() in ("content-md5", "content-type")}
    result = _check_s3(
        req, _headers_for_s3(hdrs, extra), [values["Expires"]], values["AWSAccessKeyId"], values["Signature"],
        lookup_secret, bucket, "sigv2-query",
    )
    # checked once the signature holds, so that a tampered Expires is SignatureDoesNotMatch like any change
    if expires - now.timestamp() > MAX_PRESIGN_EXPIRES + MAX_SKEW.total_seconds():
        raise auth_error(
            "s3", "malformed_query",
            f"The presigned URL is valid until {expires} (epoch seconds), more than a week ({MAX_PRESIGN_EXPIRES} "
            "seconds) from now; presign it for at most a week, as for Signature Version 4 presigned URLs.",
        )
    return result
