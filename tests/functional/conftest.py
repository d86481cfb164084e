"""Fixtures: one live server per test session (and fresh ones where a test needs its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.functional.tools import first_zone
from tests.live import LiveServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("ec2gw-server"))).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def ec2(server: LiveServer):  # type: ignore[no-untyped-def]
    return server.client("ec2")


@pytest.fixture(scope="session")
def s3(server: LiveServer):  # type: ignore[no-untyped-def]
    return server.client("s3")


@pytest.fixture(scope="module")
def zone(server: LiveServer) -> str:
    """The first availability zone of the module's server."""
    return first_zone(server)
