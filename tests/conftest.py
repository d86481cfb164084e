"""Fixtures shared by unit and functional tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends.libvirt.testing import PrivateLibvirtd, unavailable_reason


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLibvirtd]:
    """A private libvirtd (QEMU driver, namespaces of its own) for the test module, stopped after it."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"private libvirtd: {reason}")
    with PrivateLibvirtd(tmp_path_factory.mktemp("libvirtd")) as daemon:
        yield daemon
