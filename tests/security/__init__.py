"""The attack suite (issue 12: tenants must never reach each other's data).

Each file attacks a live `ec2gw serve` through real clients; fixtures are in conftest.py (read its
docstring first). The helpers below state what a refusal must look like: an AWS-style error with a
4xx status and a message that says what was wrong.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

import pytest
from botocore.exceptions import ClientError


def error_of(exc: ClientError) -> tuple[str, int, str]:
    """(Code, HTTP status, Message) of a botocore ClientError."""
    err = exc.response.get("Error", {})
    return str(err.get("Code", "")), int(exc.response["ResponseMetadata"]["HTTPStatusCode"]), str(err.get("Message", ""))


def raw_answer(request: str | urllib.request.Request) -> tuple[int, str]:
    """(HTTP status, body) of a request sent as it is, error statuses included."""
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def refused(call: Callable[..., Any], *args: Any, codes: Iterable[str] | None = None, status: Iterable[int] | None = None,
            **kwargs: Any) -> tuple[str, int, str]:
    """Call `call(*args, **kwargs)`, which must fail with a 4xx AWS error (one of `codes`/`status` if
    given) carrying a message (S3 HEAD answers have no body, hence no message); returns (code, status, message)."""
    with pytest.raises(ClientError) as info:
        result = call(*args, **kwargs)
        raise AssertionError(f"{getattr(call, '__name__', call)} was not refused: {result!r:.500}")
    code, st, message = error_of(info.value)
    where = f"{getattr(call, '__name__', call)}{args or ''}{kwargs or ''}"[:300]
    assert 400 <= st < 500, f"{where}: {st} {code} {message}"
    if codes is not None:
        assert code in set(codes), f"{where}: {st} {code} {message}; expected one of {sorted(set(codes))}"
    if status is not None:
        assert st in set(status), f"{where}: {st} {code} {message}; expected status {sorted(set(status))}"
    if info.value.operation_name not in ("HeadObject", "HeadBucket"):
        assert message, f"{where}: {st} {code} without a message"
    return code, st, message


#: what the EC2 API answers for another tenant's resource: it does not exist for the caller
NOT_FOUND_EC2 = {
    "instance": "InvalidInstanceID.NotFound",
    "image": "InvalidAMIID.NotFound",
    "key-pair": "InvalidKeyPair.NotFound",
    "security-group": "InvalidGroup.NotFound",
}

#: what Cumulus may answer for another tenant's bucket or object
S3_REFUSALS = {"AccessDenied", "NoSuchBucket", "NoSuchKey", "NoSuchUpload", "403", "404"}
