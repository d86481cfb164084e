"""Who signed this request? The one entry point the EC2 gateway and the S3 store call.

What: ``authenticate`` looks at where the credentials are (Authorization header, presigned query
parameters, or for EC2 the POST form) and hands the request to the SigV4 or SigV2 verifier. It does no
I/O besides calling ``lookup_secret``; the S3 body is checked later by the readers in chunked.py using
the ``payload_hash`` and ``chunk_signer`` returned here.

Why here: the choice of scheme and the "no credentials at all" answer differ per service (S3 allows
anonymous requests and lets the bucket policy decide; EC2 refuses them), and keeping that in one small
function keeps the verifiers free of dispatch logic.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from ec2gw.aws import sigv2, sigv4
from ec2gw.aws.sigv4 import (
    AuthResult,
    RequestView,
    auth_error,
    decode_pairs,
    first,
    lower_headers,
    split_query,
)
from ec2gw.errors import ServiceError

__all__ = ["AuthResult", "RequestView", "authenticate"]

_SIGV4_QUERY_KEYS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_SIGV2_QUERY_KEYS = ("Signature", "AWSAccessKeyId", "SignatureVersion")


def _form_pairs(form_body: bytes | None, hdrs: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The urlencoded POST form as decoded pairs ('+' is a space there); empty if it is not a form.

    A form is what the EC2 gateway reads parameters from: a body typed application/x-www-form-urlencoded
    or untyped. Credentials in any other body would sign parameters the gateway never reads."""
    ctype = (first(hdrs, "content-type") or "").split(";")[0].strip().lower()
    if not form_body or ctype not in ("application/x-www-form-urlencoded", ""):
        return []
    try:
        return parse_qsl(form_body.decode("utf-8"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return []


def _nothing_unsigned(pairs: list[tuple[str, str]], where: str, signed: str) -> None:
    """An EC2 SigV2 signature covers the parameters of one place (query string or POST body), while the
    gateway reads both: parameters in the other place would take effect unsigned."""
    if pairs:
        names = ", ".join(dict.fromkeys(k for k, _ in pairs))
        raise ServiceError(
            "AccessDenied",
            f"There were parameters present in the request which were not signed: {names} ({where}; this "
            f"Signature Version 2 signature covers {signed} only). Send every parameter in one place and sign it.",
            403,
        )


def authenticate(
    req: RequestView,
    *,
    service: str,
    lookup_secret: Callable[[str], str | None],
    form_body: bytes | None = None,
    now: datetime | None = None,
    virtual_host_bucket: str | None = None,
    sigv2_max_expires: int = sigv2.DEFAULT_MAX_EXPIRES,
) -> AuthResult:
    """Verify the request's signature for ``service`` ("ec2", "monitoring" or "s3") and return who made it.

    "monitoring" (CloudWatch) and "sts" (GetCallerIdentity), served by the EC2 gateway, are verified as
    EC2 is, with their own error codes.

    ``lookup_secret(access_key)`` returns the secret key, or None when the key is unknown or disabled.
    For EC2, ``form_body`` is the complete urlencoded POST body (its SHA-256 is the SigV4 payload hash;
    it may also carry SigV2 or X-Amz-* parameters). For S3 no body is given: the declared
    x-amz-content-sha256 comes back as ``payload_hash`` for the store to verify as it streams.
    ``virtual_host_bucket`` names the bucket of a virtual-hosted S3 request (only SigV2 needs it).
    ``sigv2_max_expires`` bounds how far past the server time an EC2 SigV2 ``Expires`` may lie (seconds).
    Raises ServiceError with the service's error code; S3 requests without credentials are "anonymous".
    """
    if service not in ("ec2", "monitoring", "sts", "s3"):
        raise ValueError(f"unknown service {service!r}")
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    hdrs = lower_headers(req.headers)
    authorization = (first(hdrs, "authorization") or "").strip()
    query = decode_pairs(split_query(req.query), plus_is_space=service != "s3")
    keys = {k for k, _ in query}
    if authorization:
        if service == "s3" and ("X-Amz-Signature" in keys or "Signature" in keys):
            raise ServiceError(
                "InvalidArgument",
                "Only one auth mechanism allowed; send either the Authorization header or a presigned query "
                "(X-Amz-Signature / Signature), not both.",
            )
        scheme = authorization.split(" ", 1)[0]
        if scheme == sigv4.ALGORITHM:
            return sigv4.verify_header(
                req, hdrs, service=service, lookup_secret=lookup_secret, form_body=form_body, now=now
            )
        if scheme == "AWS" and service == "s3":
            return sigv2.verify_s3_header(
                req, hdrs, lookup_secret=lookup_secret, now=now, bucket=virtual_host_bucket
            )
        raise auth_error(
            service, "unsupported",
            f"Unsupported Authorization type {scheme!r}; sign with AWS4-HMAC-SHA256 (Signature Version 4)"
            + (" or 'AWS <key>:<signature>' (Signature Version 2)." if service == "s3" else "."),
        )
    if keys.intersection(_SIGV4_QUERY_KEYS):
        return sigv4.verify_query(
            req, hdrs, service=service, lookup_secret=lookup_secret, now=now, form_body=form_body
        )
    if service == "s3":
        if keys.intersection(_SIGV2_QUERY_KEYS):
            return sigv2.verify_s3_query(
                req, hdrs, query, lookup_secret=lookup_secret, now=now, bucket=virtual_host_bucket
            )
        return AuthResult(None, "anonymous")
    form = _form_pairs(form_body, hdrs)
    form_keys = {k for k, _ in form}
    if form_keys.intersection(_SIGV4_QUERY_KEYS):
        return sigv4.verify_query(
            req, hdrs, service=service, lookup_secret=lookup_secret, now=now, body_pairs=form
        )
    if keys.intersection(_SIGV2_QUERY_KEYS):
        _nothing_unsigned(form, "in the POST body", "the query string")
        return sigv2.verify_ec2(req, hdrs, query, lookup_secret=lookup_secret, now=now,
                                max_expires=sigv2_max_expires)
    if form_keys.intersection(_SIGV2_QUERY_KEYS):
        _nothing_unsigned(query, "in the query string", "the POST body")
        return sigv2.verify_ec2(req, hdrs, form, lookup_secret=lookup_secret, now=now,
                                max_expires=sigv2_max_expires)
    raise auth_error(
        service, "missing",
        "Request is missing Authentication Token: sign it with your access key (Signature Version 4, "
        "e.g. via the AWS CLI or an SDK, or Signature Version 2).",
    )
