"""Fixtures for the ACL, grant, reserved-name and image-bytes tests, over conftest.py's session:
`server` (the live server), boto3 S3 clients of alice, bob and an anonymous caller, and short
refusal helpers. Import them by name into a test module (as tests/functional/s3_fixtures.py)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.live import LiveServer
from tests.security.conftest import Tenant


@pytest.fixture(scope="session")
def server(live: LiveServer) -> LiveServer:
    return live


@pytest.fixture(scope="session")
def s3_alice(alice: Tenant) -> Any:
    return alice.s3


@pytest.fixture(scope="session")
def s3_bob(bob: Tenant) -> Any:
    return bob.s3


@pytest.fixture(scope="session")
def s3_anon(anon: Tenant) -> Any:
    return anon.s3


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return str(err["Error"]["Code"]), int(err["ResponseMetadata"]["HTTPStatusCode"])


def denied(call: Any, *args: Any, **kw: Any) -> tuple[str, int]:
    """The error code and status of a call that must fail."""
    with pytest.raises(ClientError) as exc:
        call(*args, **kw)
    return code(exc)
