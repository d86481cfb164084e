"""Fixtures for the S3 tests that run on both deployments (conftest.py's `deployment`: one SQLite
server, and two processes over one PostgreSQL database, alice talking to one, bob and the anonymous
caller to the other): their boto3 S3 clients, and a fresh bucket of alice's. Import them by name
into a test module (as s3_tenants.py's)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name
from tests.security.conftest import World


@pytest.fixture
def s3_alice(deployment: World) -> Any:
    return deployment.alice.s3


@pytest.fixture
def s3_bob(deployment: World) -> Any:
    return deployment.bob.s3


@pytest.fixture
def s3_anon(deployment: World) -> Any:
    return deployment.anon.s3


@pytest.fixture
def bucket(deployment: World, request: pytest.FixtureRequest) -> Iterator[str]:
    """A bucket of alice's named after the test module (test_grants.py: grants-...), emptied and
    removed after the test."""
    name = new_bucket_name(request.module.__name__.rpartition(".test_")[2].replace("_", ""))
    deployment.alice.s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(deployment.alice.s3, name)
