"""AWS Signature Version 4 verification for the EC2 Query API and the Cumulus S3 store.

What: checks an ``Authorization: AWS4-HMAC-SHA256 ...`` header or the ``X-Amz-*`` query parameters of
a presigned request, and says who signed it.

Why this way: the canonical request is built by botocore's own ``SigV4Auth`` / ``S3SigV4Auth``
(``canonical_request`` -> ``string_to_sign`` -> ``signature``) on an ``AWSRequest`` rebuilt from exactly
the headers the client listed in ``SignedHeaders``, so the server canonicalizes the way the clients
we serve do. ``add_auth()`` is never called (it would re-date and re-sign the request). Clients encode
paths and queries differently, so a few faithful renderings of the same request (raw as sent, and
decoded then RFC 3986 re-encoded) are tried; each is an HMAC over the same request facts, so this
widens compatibility without letting anything unsigned through.

This module also holds what sigv2.py and auth.py share: the request/result types, header and query
helpers, and the per-service error table (EC2 and S3 name the same failure differently).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from ec2gw.aws.chunked import ChunkSigner
from ec2gw.errors import ServiceError

MAX_SKEW = timedelta(minutes=15)
MAX_PRESIGN_EXPIRES = 604800  # seconds: 7 days, the S3 limit for SigV4 presigned URLs
ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
PAYLOAD_LITERALS = (UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RequestView:
    """The parts of an HTTP request a signature covers, as the client sent them."""

    method: str
    path: str  # raw percent-encoded path as sent, e.g. "/bucket/a%20b"
    query: str  # raw query string without '?'
    headers: Mapping[str, str]  # case-insensitive lookup (werkzeug Headers or similar)


@dataclass
class AuthResult:
    """Who signed the request and what the body must still be checked against."""

    access_key: str | None  # None for anonymous S3 requests
    scheme: str  # "sigv4-header" | "sigv4-query" | "sigv2-query" | "sigv2-header" | "anonymous"
    region: str | None = None
    payload_hash: str | None = None  # declared x-amz-content-sha256 (hex, UNSIGNED-PAYLOAD, STREAMING-...)
    chunk_signer: object | None = None  # ChunkSigner for STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies


# --------------------------------------------------------------------------- errors per service

#: what the query-protocol services beside EC2 (CloudWatch, STS) answer: the same codes for both
_QUERY_SERVICE_CODES: dict[str, tuple[str, int]] = {
    "signature": ("SignatureDoesNotMatch", 403),
    "unknown_key": ("InvalidClientTokenId", 403),
    "skew": ("RequestExpired", 400),
    "expired": ("RequestExpired", 400),
    "malformed": ("IncompleteSignature", 400),
    "malformed_query": ("IncompleteSignature", 400),
    "unsupported": ("IncompleteSignature", 400),
    "missing": ("MissingAuthenticationToken", 403),
    "unsigned": ("AccessDenied", 403),
}

_CODES: dict[str, dict[str, tuple[str, int]]] = {
    "ec2": {
        "signature": ("SignatureDoesNotMatch", 403),
        "unknown_key": ("AuthFailure", 401),
        "skew": ("RequestExpired", 400),
        "expired": ("RequestExpired", 400),
        "malformed": ("IncompleteSignature", 400),
        "malformed_query": ("IncompleteSignature", 400),
        "unsupported": ("AuthFailure", 401),
        "missing": ("MissingAuthenticationToken", 401),
        "unsigned": ("AccessDenied", 403),
    },
    # CloudWatch (served on the EC2 port, signed for service "monitoring")
    "monitoring": _QUERY_SERVICE_CODES,
    # STS GetCallerIdentity (served on the EC2 port, signed for service "sts")
    "sts": _QUERY_SERVICE_CODES,
    "s3": {
        "signature": ("SignatureDoesNotMatch", 403),
        "unknown_key": ("InvalidAccessKeyId", 403),
        "skew": ("RequestTimeTooSkewed", 403),
        "expired": ("AccessDenied", 403),
        "malformed": ("AuthorizationHeaderMalformed", 400),
        "malformed_query": ("AuthorizationQueryParametersError", 400),
        "unsupported": ("InvalidArgument", 400),
        "missing": ("AccessDenied", 403),
        "unsigned": ("AccessDenied", 403),
    },
}

SIGNATURE_HINT = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your secret access key and signing method, and that nothing (a proxy?) changed the request."
)


def auth_error(service: str, kind: str, message: str, **extra: str) -> ServiceError:
    """Build the error the given service answers for one kind of authentication failure."""
    code, status = _CODES[service][kind]
    return ServiceError(code, message, status, **extra)


def unknown_key_error(service: str, access_key: str) -> ServiceError:
    return auth_error(
        service,
        "unknown_key",
        f"The access key id {access_key!r} does not exist in our records or is disabled; "
        "check the access key you configured.",
        **({"AWSAccessKeyId": access_key} if service == "s3" else {}),
    )


def signature_error(service: str, access_key: str, provided: str, sts: str, creq: str | None) -> ServiceError:
    """SignatureDoesNotMatch; for S3 carries what AWS puts in the error document to debug it."""
    extra: dict[str, str] = {}
    if service == "s3":
        extra = {"AWSAccessKeyId": access_key, "StringToSign": sts, "SignatureProvided": provided}
        if creq is not None:
            extra["CanonicalRequest"] = creq
    return auth_error(service, "signature", SIGNATURE_HINT, **extra)


#: x-amz-* headers a presigned request may carry without listing them in X-Amz-SignedHeaders, as S3
#: lets them: the payload hash of a presigned request is UNSIGNED-PAYLOAD unless x-amz-content-sha256
#: is signed, so an unsigned one changes nothing (verify_query ignores it).
PRESIGNED_UNSIGNED_OK = frozenset({"x-amz-content-sha256"})


def unsigned_headers_error(service: str, names: Iterable[str], how: str) -> ServiceError:
    """403 AccessDenied naming the x-amz-* headers the signature does not cover (S3's HeadersNotSigned)."""
    listed = ", ".join(sorted(names))
    return auth_error(
        service, "unsigned",
        f"There were headers present in the request which were not signed: {listed}. Every x-amz-* header "
        f"must be covered by the signature: {how}",
        **({"HeadersNotSigned": listed} if service == "s3" else {}),
    )


def check_amz_headers_signed(service: str, hdrs: dict[str, list[str]], signed: Iterable[str], *,
                             presigned: bool) -> None:
    """Refuse a SigV4 request carrying x-amz-* headers that are not among its signed headers.

    An unsigned x-amz-copy-source or x-amz-acl would otherwise take effect under someone else's
    signature (whoever holds a presigned PUT URL could copy the signer's objects into it)."""
    covered = set(signed) | (PRESIGNED_UNSIGNED_OK if presigned else set())
    unsigned = [name for name in hdrs if name.startswith("x-amz-") and name not in covered]
    if unsigned:
        raise unsigned_headers_error(
            service, unsigned,
            "list them in X-Amz-SignedHeaders when presigning, or do not send them." if presigned
            else "list them in SignedHeaders when signing, or do not send them.")


# --------------------------------------------------------------------------- request helpers


def lower_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """All header values keyed by lowercased name (works for dicts and werkzeug Headers alike)."""
    items = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(str(name).lower(), []).append(str(value))
    return out


def first(hdrs: dict[str, list[str]], name: str) -> str | None:
    values = hdrs.get(name)
    return values[0] if values else None


def split_query(query: str) -> list[tuple[str, str]]:
    """The query as raw (still percent-encoded) name/value pairs, in the order sent."""
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return pairs


def decode_pairs(raw: Iterable[tuple[str, str]], plus_is_space: bool = False) -> list[tuple[str, str]]:
    """Percent-decode name/value pairs (``+`` stays ``+`` unless form-encoding rules apply)."""
    dec = (lambda s: unquote(s.replace("+", " "))) if plus_is_space else unquote
    return [(dec(k), dec(v)) for k, v in raw]


def param(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    for k, v in pairs:
        if k == name:
            return v
    return None


def reencode_path(path: str) -> str:
    """The path decoded and re-encoded per RFC 3986 (how SDKs build the canonical URI)."""
    return quote(unquote(path), safe="/-_.~")


def parse_amz_date(value: str | None) -> datetime | None:
    """Parse an ISO 8601 basic timestamp (20130524T000000Z) or an RFC 1123 Date header."""
    if not value:
        return None
    try:
        return datetime.strptime(value.strip(), SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        parsed = parsedate_to_datetime(value)
        if parsed is None:
            return None
        # astimezone overflows for times within hours of year 1 or 9999 (e.g. 31 Dec 9999 23:30 -0100)
        return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError):
        return None


def check_skew(service: str, when: datetime, now: datetime, what: str) -> None:
    """Reject a request dated more than 15 minutes away from the server clock."""
    if abs(now - when) > MAX_SKEW:
        stamp, server = when.strftime(SIGV4_TIMESTAMP), now.strftime(SIGV4_TIMESTAMP)
        msg = (
            f"The request time {stamp} ({what}) is more than 15 minutes away from the server time {server}; "
            "check that your clock is right (use NTP) and sign the request again."
        )
        extra = {"RequestTime": stamp, "ServerTime": server, "MaxAllowedSkewMilliseconds": "900000"}
        raise auth_error(service, "skew", msg, **(extra if service == "s3" else {}))


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key (kSigning), needed to verify aws-chunked chunk signatures."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


# --------------------------------------------------------------------------- botocore canonicalizer


class _ExactHeaders:
    """Canonicalize exactly the client's SignedHeaders and a payload hash decided by the server.

    botocore's signers drop headers such as user-agent or expect when *signing*; a verifier must
    include whatever the client listed, so ``headers_to_sign`` is the request's headers verbatim
    (the request is rebuilt from the signed headers only). ``payload`` returns the hash the caller
    determined (body sha256 for EC2, the declared x-amz-content-sha256 for S3) instead of reading a body.
    """

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        out = HTTPHeaders()
        for name, value in request.headers.items():
            out[name.lower()] = value
        return out

    def payload(self, request: AWSRequest) -> str:
        return str(request.context["payload_hash"])


class _Ec2Canonicalizer(_ExactHeaders, SigV4Auth):
    pass


class _S3Canonicalizer(_ExactHeaders, S3SigV4Auth):
    pass


@dataclass
class _Signed:
    """What the client claims: credential scope, signed headers, date and signature."""

    access_key: str
    date: str
    region: str
    scope_service: str
    signed_headers: list[str]
    signature: str
    amz_date: str
    when: datetime


def verify_signature(
    req: RequestView,
    hdrs: dict[str, list[str]],
    claim: _Signed,
    *,
    service: str,
    secret: str,
    payload_hash: str,
    query_pairs: list[tuple[str, str]] | None = None,
) -> None:
    """Recompute the signature with botocore for each faithful rendering of the request; raise if none match."""
    creds = Credentials(claim.access_key, secret)
    cls = _S3Canonicalizer if service == "s3" else _Ec2Canonicalizer
    signer: Any = cls(creds, claim.scope_service, claim.region)
    renderings = _header_renderings(hdrs, claim.signed_headers)
    queries: list[tuple[list[tuple[str, str]], str]]
    if query_pairs is None:  # from the URL: decoded + re-encoded by botocore, or raw as sent
        raw_pairs = [(k, v) for k, v in split_query(req.query) if k != "X-Amz-Signature"]
        # decoded as both gateways read the query ('+' is a space): a '+' signed as %2B and then sent
        # raw would otherwise verify as a plus and be acted upon as a space
        queries = [(decode_pairs(raw_pairs, plus_is_space=True), "")]
        if raw_pairs:
            queries.append(([], "&".join(f"{k}={v}" for k, v in raw_pairs)))
    else:
        queries = [([(k, v) for k, v in query_pairs if k != "X-Amz-Signature"], "")]
    path = req.path or "/"
    paths = [path] if service != "s3" else list(dict.fromkeys([path, reencode_path(path)]))
    seen: set[str] = set()
    first_try: tuple[str, str] | None = None
    # bytes: compare_digest refuses str with non-ASCII characters, which a forged header may carry
    provided = claim.signature.lower().encode("utf-8", "replace")
    for p, (params, raw_query), headers in ((p, q, h) for p in paths for q in queries for h in renderings):
        # The URL's host is never part of the canonical request (the Host header is, verbatim, among
        # the signed headers), so a fixed one keeps a junk Host such as "[::1" from breaking urlsplit.
        url = f"http://localhost{p}" + (f"?{raw_query}" if raw_query else "")
        request = AWSRequest(method=req.method.upper(), url=url, headers=headers, params=list(params))
        request.context["timestamp"] = claim.amz_date
        request.context["payload_hash"] = payload_hash
        try:
            creq = signer.canonical_request(request)
        except ValueError:  # a path urlsplit cannot take: nothing the client signed can match it
            continue
        if creq in seen:
            continue
        seen.add(creq)
        sts = signer.string_to_sign(request, creq)
        first_try = first_try or (sts, creq)
        if hmac.compare_digest(signer.signature(sts, request).encode(), provided):
            return
    if first_try is None:
        raise signature_error(service, claim.access_key, claim.signature, "", None)
    raise signature_error(service, claim.access_key, claim.signature, first_try[0], first_try[1])


def utf8_reading(value: str) -> str:
    """A header value (its bytes as Latin-1 characters, as WSGI passes them) read as UTF-8 when its
    bytes beyond ASCII are valid UTF-8; as it is otherwise."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _header_renderings(hdrs: dict[str, list[str]], signed_headers: list[str]) -> list[HTTPHeaders]:
    """The signed headers as the server read them (each byte a Latin-1 character, as WSGI passes
    them and as Python's http.client sends text), and, when a value holds bytes beyond ASCII that
    are valid UTF-8, with those values read as UTF-8: botocore (and the Go and JavaScript SDKs)
    sign the text and send its UTF-8 bytes (x-amz-meta-* values such as "Jörg")."""
    plain = HTTPHeaders()
    utf8 = HTTPHeaders()
    differs = False
    for name in signed_headers:
        for value in hdrs.get(name, [""]):
            plain[name] = value
            decoded = utf8_reading(value)
            differs = differs or decoded != value
            utf8[name] = decoded
    return [plain, utf8] if differs else [plain]


# --------------------------------------------------------------------------- the client's claim


def lookup_or_fail(service: str, access_key: str, lookup_secret: Callable[[str], str | None]) -> str:
    """The secret of an access key; unknown and disabled keys are refused the same way."""
    secret = lookup_secret(access_key)
    if not secret:
        raise unknown_key_error(service, access_key)
    return secret


def _claim(service: str, kind: str, credential: str, signed_headers: str, signature: str,
           raw_date: str | None, date_kind: str) -> _Signed:
    """Check the credential scope (any region; this service; same day as the request) and the host signing."""
    parts = credential.split("/")
    # the region may be empty (libcloud's MinIO driver signs so): any region is accepted
    if len(parts) != 5 or not all(parts[:2] + parts[3:]) or parts[4] != "aws4_request":
        raise auth_error(service, kind, f"The Credential {credential!r} is malformed; expected "
                         "'<access key id>/<YYYYMMDD>/<region>/<service>/aws4_request' (the region may be any name, or empty).")
    access_key, date, region, scope_service = parts[:4]
    if scope_service != service:
        raise auth_error(service, kind if service == "s3" else "signature",
                         f"The credential is scoped to service {scope_service!r} but this endpoint is "
                         f"{service!r}; sign the request for service {service!r}.")
    when = parse_amz_date(raw_date)
    if when is None:
        raise auth_error(service, date_kind, f"The request has no valid X-Amz-Date or Date (got {raw_date!r}); "
                         "SigV4 needs the signing time, e.g. X-Amz-Date: 20130524T000000Z.")
    amz_date = when.strftime(SIGV4_TIMESTAMP)
    if date != amz_date[:8]:
        raise auth_error(service, kind, f"The date {date} in the credential scope does not match the request "
                         f"date {amz_date}; sign with the same date in the scope and in X-Amz-Date.")
    signed = signed_headers.lower().split(";")
    if "host" not in signed:
        raise auth_error(service, kind, "The Host header is not among the signed headers; sign it.")
    return _Signed(access_key, date, region, scope_service, signed, signature, amz_date, when)


def parse_authorization(service: str, value: str, hdrs: dict[str, list[str]]) -> _Signed:
    """Parse ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` (any spacing)."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise auth_error(service, "unsupported", f"Unsupported authorization algorithm {algorithm!r}; use {ALGORITHM}.")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, val = item.strip().partition("=")
        if eq:
            fields[name.strip()] = val.strip()
    missing = [f for f in ("Credential", "SignedHeaders", "Signature") if not fields.get(f)]
    if missing:
        raise auth_error(service, "malformed", f"The Authorization header lacks {', '.join(missing)}; it must "
                         "read 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'.")
    raw_date = first(hdrs, "x-amz-date") or first(hdrs, "date")
    return _claim(service, "malformed", fields["Credential"], fields["SignedHeaders"], fields["Signature"],
                  raw_date, "missing" if service == "s3" else "malformed")


def _result(scheme: str, claim: _Signed, secret: str, payload_hash: str) -> AuthResult:
    """The AuthResult, with a ChunkSigner seeded by this signature when the body is chunk-signed."""
    signer = None
    if payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
        key = signing_key(secret, claim.date, claim.region, claim.scope_service)
        scope = f"{claim.date}/{claim.region}/{claim.scope_service}/aws4_request"
        signer = ChunkSigner(key, claim.amz_date, scope, claim.signature.lower())
    return AuthResult(claim.access_key, scheme, claim.region, payload_hash, signer)


def _s3_payload_hash(hdrs: dict[str, list[str]]) -> str:
    """The declared x-amz-content-sha256, which S3 requires with SigV4 header auth."""
    value = (first(hdrs, "x-amz-content-sha256") or "").strip()
    if not value:
        raise ServiceError("InvalidRequest", "Missing required header for this request: x-amz-content-sha256; "
                           "declare the payload hash (hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* value).")
    if value not in PAYLOAD_LITERALS and not _HEX64.fullmatch(value):
        raise ServiceError("InvalidArgument", f"x-amz-content-sha256 {value!r} is not a lowercase hex SHA-256, "
                           "UNSIGNED-PAYLOAD or a supported STREAMING-* value.")
    return value


def _ec2_payload(hdrs: dict[str, list[str]], body: bytes) -> str:
    """EC2 signs the body: its sha256 is the payload hash, and a declared hash must agree."""
    actual = hashlib.sha256(body).hexdigest()
    declared = first(hdrs, "x-amz-content-sha256")
    if declared is not None and declared.strip() != actual:
        raise auth_error("ec2", "signature", "The x-amz-content-sha256 header does not match the SHA-256 of "
                         "the request body; sign the exact body you send.")
    return actual


# --------------------------------------------------------------------------- the two SigV4 forms


def verify_header(req: RequestView, hdrs: dict[str, list[str]], *, service: str,
                  lookup_secret: Callable[[str], str | None], form_body: bytes | None, now: datetime) -> AuthResult:
    """Verify a request carrying ``Authorization: AWS4-HMAC-SHA256 ...``."""
    claim = parse_authorization(service, first(hdrs, "authorization") or "", hdrs)
    check_amz_headers_signed(service, hdrs, claim.signed_headers, presigned=False)
    check_skew(service, claim.when, now, "X-Amz-Date")
    secret = lookup_or_fail(service, claim.access_key, lookup_secret)
    payload_hash = _s3_payload_hash(hdrs) if service == "s3" else _ec2_payload(hdrs, form_body or b"")
    verify_signature(req, hdrs, claim, service=service, secret=secret, payload_hash=payload_hash)
    return _result("sigv4-header", claim, secret, payload_hash)


def verify_query(req: RequestView, hdrs: dict[str, list[str]], *, service: str,
                 lookup_secret: Callable[[str], str | None], now: datetime, form_body: bytes | None = None,
                 body_pairs: list[tuple[str, str]] | None = None) -> AuthResult:
    """Verify a presigned request (``X-Amz-Algorithm``, ``X-Amz-Credential``, ... ``X-Amz-Signature``).

    For EC2 the auth parameters may have been moved from the query into the POST form (``body_pairs``);
    then the form parameters are canonicalized as if they were the query and the payload is empty,
    which is the request botocore's ``SigV4QueryAuth`` signs for a POST.
    """
    pairs = decode_pairs(split_query(req.query), plus_is_space=True) + (body_pairs or [])
    kind = "malformed_query"
    algorithm = param(pairs, "X-Amz-Algorithm")
    if algorithm != ALGORITHM:
        raise auth_error(service, kind if algorithm is None else "unsupported",
                         f"X-Amz-Algorithm must be {ALGORITHM} (got {algorithm!r}); presign with SigV4.")
    names = ("X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date")
    values = [param(pairs, n) or "" for n in names]
    missing = [n for n, v in zip(names, values, strict=True) if not v]
    if missing:
        raise auth_error(service, kind, f"The presigned request lacks {', '.join(missing)}; presign it again.")
    claim = _claim(service, kind, values[0], values[1], values[2], values[3], kind)
    check_amz_headers_signed(service, hdrs, claim.signed_headers, presigned=True)
    _check_expiry(service, param(pairs, "X-Amz-Expires"), claim.when, now)
    secret = lookup_or_fail(service, claim.access_key, lookup_secret)
    if service == "s3":
        declared = first(hdrs, "x-amz-content-sha256") if "x-amz-content-sha256" in claim.signed_headers else None
        payload_hash = (declared or UNSIGNED_PAYLOAD).strip()
    else:
        payload_hash = EMPTY_SHA256 if body_pairs else _ec2_payload(hdrs, form_body or b"")
    verify_signature(req, hdrs, claim, service=service, secret=secret, payload_hash=payload_hash,
                     query_pairs=pairs if body_pairs else None)
    return _result("sigv4-query", claim, secret, payload_hash)


def _check_expiry(service: str, expires: str | None, when: datetime, now: datetime) -> None:
    """X-Amz-Expires: 0..604800 seconds after X-Amz-Date (EC2 default: the 15-minute skew window)."""
    kind = "malformed_query"
    if expires is None and service == "s3":
        raise auth_error(service, kind, "X-Amz-Expires is missing; presign the URL with an expiry.")
    try:
        seconds = int(expires) if expires is not None else int(MAX_SKEW.total_seconds())
    except ValueError:
        raise auth_error(service, kind, f"X-Amz-Expires should be a number of seconds (got {expires!r}).") from None
    if not 0 <= seconds <= MAX_PRESIGN_EXPIRES:
        raise auth_error(service, kind, "X-Amz-Expires must be less than a week (in seconds) that is; "
                         f"{MAX_PRESIGN_EXPIRES} (and not negative).")
    if when - now > MAX_SKEW:
        raise auth_error(service, "expired", f"Request is not valid yet: it is dated {when:%Y%m%dT%H%M%SZ}, "
                         "more than 15 minutes in the future; check that your clock is right.")
    deadline = when + timedelta(seconds=seconds)
    if now > deadline:
        extra = {"X-Amz-Expires": str(seconds), "Expires": f"{deadline:%Y-%m-%dT%H:%M:%SZ}",
                 "ServerTime": f"{now:%Y-%m-%dT%H:%M:%SZ}"}
        raise auth_error(service, "expired", f"Request has expired: the presigned request was valid until "
                         f"{deadline:%Y%m%dT%H%M%SZ}; presign a new one (and check that your clock is right).",
                         **(extra if service == "s3" else {}))
