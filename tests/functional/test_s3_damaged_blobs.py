"""A blob damaged on disk (cut short by a failing disk, or by hand) ends a GET with the bytes that
are there and a closed connection, at once: never other bytes in their place, never a client left
waiting for the rest. Both ways a GET is sent: sendfile() (under 4 MiB) and direct reads."""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import http.client
import os
import time
import urllib.request
from typing import Any

import pytest

from tests.functional.s3_fixtures import alice, bucket, s3_alice  # noqa: F401 - fixtures
from tests.live import LiveServer

MiB = 1024 * 1024


@pytest.mark.parametrize("size", [2 * MiB + 5, 6 * MiB + 5], ids=["sendfile", "direct"])
def test_a_blob_cut_short_on_disk_ends_the_get_at_once(server: LiveServer, s3_alice: Any, bucket: str,
                                                       size: int) -> None:
    data = os.urandom(size)
    s3_alice.put_object(Bucket=bucket, Key="damaged", Body=data)
    blobs = [p for p in (server.data_dir / "cumulus" / "blobs").rglob("*") if p.is_file()]
    blob = max(blobs, key=lambda p: p.stat().st_ctime)
    assert blob.stat().st_size == size
    os.truncate(blob, size - MiB)
    url = s3_alice.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "damaged"}, ExpiresIn=60)
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=20) as resp:
        assert resp.status == 200 and int(resp.headers["Content-Length"]) == size
        with pytest.raises(http.client.IncompleteRead) as err:
            resp.read()
    assert time.monotonic() - started < 10, "the client waited for bytes that never came"
    assert err.value.partial == data[: len(err.value.partial)] and len(err.value.partial) <= size - MiB
