"""Path tricks in bucket names and keys: `..`, `%2e%2e`, `//`, backslashes, NUL, control characters,
very long keys. A key is a name, never a path: none of them may reach another bucket, another
user's prefix of the image bucket, or a file outside the object store; each one is either stored
and read back under exactly its own name, or refused with a 4xx S3 error (never a 500).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name, signed
from tests.security import error_of, refused
from tests.security.conftest import Tenant, unique

ALICE_SECRET = b"alice's secret bytes"
BOB_BYTES = b"bob's bytes"

TRICKY_KEYS = [
    "../escape", "../../../../../../../../tmp/escape", "a/../../escape", "./escape", "a/./b", ".", "..", "...",
    "//escape", "a//b", "/leading", "trailing/", "..\\escape", "a\\..\\..\\escape", "\\\\server\\share",
    "%2e%2e/escape", "%2e%2e%2fescape", "a/%2e%2e/%2e%2e/escape", "..%2fescape", "%00escape", "a b",
    "~/escape", "$HOME/escape", "escape\u2215slash", "\u2025/escape", "\uff0e\uff0e/escape", "a\tb", "a\rb", "a\nb",
    "blobs/../../escape", "tmp/../escape",
]


@pytest.fixture(scope="module")
def places(alice: Tenant, bob: Tenant) -> Any:
    mine, theirs = new_bucket_name("paths-alice"), new_bucket_name("paths-bob")
    alice.s3.create_bucket(Bucket=mine)
    bob.s3.create_bucket(Bucket=theirs)
    alice.s3.put_object(Bucket=mine, Key="secret", Body=ALICE_SECRET)
    alice.s3.put_object(Bucket="Repo", Key=f"VMS/{alice.name}/disk.img", Body=ALICE_SECRET)
    yield mine, theirs
    for tenant_, name in ((alice, mine), (bob, theirs)):
        # one by one: a key with NUL in it (stored from a raw %00) has no XML 1.0 form for DeleteObjects
        for o in tenant_.s3.list_objects_v2(Bucket=name).get("Contents", []):
            tenant_.s3.delete_object(Bucket=name, Key=o["Key"])
        empty_and_delete(tenant_.s3, name)
    alice.s3.delete_object(Bucket="Repo", Key=f"VMS/{alice.name}/disk.img")


def files_outside_store(root: Path, data_dir: Path) -> list[Path]:
    """Files named like an escape attempt anywhere under `root` but inside no object-store directory."""
    found = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            if "escape" in n.lower():
                found.append(Path(dirpath) / n)
    return found


@pytest.mark.parametrize("key", TRICKY_KEYS)
def test_tricky_keys_are_names_not_paths(bob: Tenant, alice: Tenant, places: Any, key: str) -> None:
    mine, theirs = places
    try:
        bob.s3.put_object(Bucket=theirs, Key=key, Body=BOB_BYTES)
    except ClientError as exc:
        code, status, message = error_of(exc)
        assert 400 <= status < 500 and message, (key, code, status, message)
        return
    got = bob.s3.get_object(Bucket=theirs, Key=key)["Body"].read()
    assert got == BOB_BYTES, key
    listed = [o["Key"] for o in bob.s3.list_objects_v2(Bucket=theirs, Prefix=key).get("Contents", [])]
    assert key in listed, (key, listed)
    assert alice.s3.get_object(Bucket=mine, Key="secret")["Body"].read() == ALICE_SECRET
    bob.s3.delete_object(Bucket=theirs, Key=key)
    refused(bob.s3.get_object, Bucket=theirs, Key=key, codes={"NoSuchKey"})


def test_nothing_was_written_outside_the_store(live: Any, places: Any) -> None:
    root = live.data_dir.parent
    stray = [p for p in files_outside_store(root, live.data_dir)]
    assert stray == [], stray
    assert not Path("/tmp/escape").exists()


RAW_PATHS = [
    "/{mine}/../{theirs}/bob", "/{mine}/%2e%2e/{theirs}/bob", "/{mine}/%2E%2E/{theirs}/bob",
    "/{mine}/..%2f{theirs}%2fbob", "/{mine}/..\\{theirs}\\bob", "/{mine}/%5c..%5c{theirs}%5cbob",
    "/{mine}//../{theirs}/bob", "/{mine}/./../{theirs}/bob", "//{theirs}/bob", "/./{theirs}/bob",
    "/{mine}/%00/../{theirs}/bob", "/{mine}%2f..%2f{theirs}/bob",
]


@pytest.mark.parametrize("template", RAW_PATHS)
def test_raw_dot_dot_paths_do_not_reach_another_bucket(live: Any, alice: Tenant, bob: Tenant, places: Any,
                                                       template: str) -> None:
    """Alice signs a raw request whose path climbs from her bucket into bob's: she must not get bob's object."""
    mine, theirs = places
    bob.s3.put_object(Bucket=theirs, Key="bob", Body=BOB_BYTES)
    path = template.format(mine=mine, theirs=theirs)
    for method in ("GET", "HEAD", "DELETE", "PUT"):
        res = signed(live, alice, method, path, body=b"alice overwrote" if method == "PUT" else b"")
        assert res.status != 500, (path, method, res.status, res.body[:300])
        assert BOB_BYTES not in res.body, (path, method)
        if res.status < 300:  # then it named something of alice's own, never bob's
            assert method in ("GET", "HEAD", "DELETE", "PUT"), path
    assert bob.s3.get_object(Bucket=theirs, Key="bob")["Body"].read() == BOB_BYTES
    assert [o["Key"] for o in bob.s3.list_objects_v2(Bucket=theirs).get("Contents", [])] == ["bob"]


@pytest.mark.parametrize("trick", ["../{alice}/disk.img", "%2e%2e/{alice}/disk.img", "..%2f{alice}%2fdisk.img",
                                   "..\\{alice}\\disk.img", "./../{alice}/disk.img", "/../{alice}/disk.img"])
def test_own_image_prefix_does_not_lead_into_anothers(live: Any, alice: Tenant, bob: Tenant, places: Any,
                                                      trick: str) -> None:
    """Bob may write under Repo/VMS/<bob>/: a key that climbs out of it stays a name under his prefix."""
    key = f"VMS/{bob.name}/" + trick.format(alice=alice.name)
    try:
        bob.s3.put_object(Bucket="Repo", Key=key, Body=BOB_BYTES)
        stored = True
    except ClientError as exc:
        assert 400 <= error_of(exc)[1] < 500, exc.response
        stored = False
    assert alice.s3.get_object(Bucket="Repo", Key=f"VMS/{alice.name}/disk.img")["Body"].read() == ALICE_SECRET
    if stored:
        assert bob.s3.get_object(Bucket="Repo", Key=key)["Body"].read() == BOB_BYTES
    # raw: the same key as a path, in every spelling
    for path in (f"/Repo/{key}", "/Repo/" + quote(key, safe="/")):
        res = signed(live, bob, "GET", path)
        assert ALICE_SECRET not in res.body and res.status != 500, (path, res.status, res.body[:300])
    # and as a copy source, decoded or not: bob's own bytes or nothing, never alice's
    _, theirs = places
    for source in (f"Repo/{key}", "Repo/" + quote(key, safe="/"), "/Repo/" + quote(key, safe="")):
        try:
            bob.s3.copy_object(Bucket=theirs, Key="copied", CopySource=source)
        except ClientError as exc:
            assert 400 <= error_of(exc)[1] < 500, (source, exc.response)
            continue
        assert bob.s3.get_object(Bucket=theirs, Key="copied")["Body"].read() == BOB_BYTES, source
        bob.s3.delete_object(Bucket=theirs, Key="copied")
    # and as an image location: never alice's bytes registered as bob's image
    try:
        image = bob.ec2.register_image(Name=unique("climb"), ImageLocation=f"Repo/{key}")["ImageId"]
    except ClientError as exc:
        assert 400 <= error_of(exc)[1] < 500, exc.response
    else:
        assert stored, f"registered {image} from a key that was never stored"
        bob.ec2.deregister_image(ImageId=image)
    if stored:
        bob.s3.delete_object(Bucket="Repo", Key=key)
    refused(bob.s3.get_object, Bucket="Repo", Key=f"VMS/{alice.name}/disk.img", codes={"AccessDenied"})


def test_bucket_names_with_path_tricks_are_refused(bob: Tenant, live: Any) -> None:
    for name in ("..", ".", "a..b", "a/b", "a\\b", "%2e%2e", "a%00b", "-bucket", "bucket-"):
        try:
            bob.s3.create_bucket(Bucket=name)
        except ClientError as exc:
            assert 400 <= error_of(exc)[1] < 500, (name, exc.response)
        except Exception:  # botocore refuses some names itself; send those raw
            res = signed(live, bob, "PUT", "/" + quote(name, safe=""))
            assert 400 <= res.status < 500, (name, res.status, res.body[:300])
        else:
            raise AssertionError(f"bucket {name!r} was created")
    for raw in ("/..", "/.", "/%2e%2e", "/..%2f..%2fetc", "/%2e%2e%2f%2e%2e%2fetc%2fpasswd"):
        for method in ("PUT", "GET", "DELETE"):
            res = signed(live, bob, method, raw)
            assert res.status != 500 and b"root:" not in res.body, (raw, method, res.status, res.body[:300])
            if method == "PUT":
                assert 400 <= res.status < 500, (raw, res.status, res.body[:300])


def test_very_long_keys(bob: Tenant, places: Any, live: Any) -> None:
    _, theirs = places
    key = "k" * 1024
    bob.s3.put_object(Bucket=theirs, Key=key, Body=b"x")
    assert bob.s3.get_object(Bucket=theirs, Key=key)["Body"].read() == b"x"
    bob.s3.delete_object(Bucket=theirs, Key=key)
    code, _, _ = refused(bob.s3.put_object, Bucket=theirs, Key="k" * 1025, Body=b"x")
    assert code == "KeyTooLongError"
    refused(bob.s3.put_object, Bucket=theirs, Key="\u00e9" * 513, Body=b"x", codes={"KeyTooLongError"})  # 1026 bytes
    for size in (4096, 9000, 100_000):
        try:
            res = signed(live, bob, "PUT", f"/{theirs}/" + "k" * size, body=b"x")
        except (BrokenPipeError, ConnectionResetError):
            continue  # the server answered the request line and closed before the body: refused
        assert 400 <= res.status < 500, (size, res.status, res.body[:200])
    assert bob.s3.list_objects_v2(Bucket=theirs, Prefix="kkkk").get("Contents", []) == []
