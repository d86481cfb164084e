"""Bob attacks alice's Cumulus buckets, objects and multipart uploads with every operation; nothing of hers moves.

Alice owns a private bucket with a private object and a multipart upload in progress, an empty
bucket, a public-read-write bucket with an upload of hers, and an object and an upload under her
prefix of the shared image bucket (Repo/VMS/<alice>/). Each case is one operation in bob's hands
(through boto3; some also through the aws CLI): refused with a 4xx AWS error, and alice's data as
it was. Every case runs on the SQLite server and on two processes sharing PostgreSQL and one data
dir (alice talks to one, bob to the other). `test_every_operation_has_a_cross_tenant_case`
fails when Cumulus gains an operation without a case here; the operations Cumulus does not
implement (bucket policy, lifecycle, PutBucketVersioning, ...) are sent raw, signed by bob, at alice's
bucket and object and must all fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from storage.api import registry as s3_registry
from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name, signed
from tests.security import error_of, refused
from tests.security.conftest import World

DENIED = {"AccessDenied"}
PART = b"alice's part " * 100
SECRET = b"alice's secret"
IMAGE = b"alice's image bytes"
ALICES_TAGS = "owner=alice&class=secret"


@dataclass
class Loot:
    w: World
    bucket: str  # private, holds "secret" and the upload `upload` on key "mp"
    empty: str  # private, empty
    open: str  # public-read-write, holds the upload `open_upload` on key "open-mp"
    upload: str
    open_upload: str
    repo: str  # the image bucket
    repo_key: str  # Repo/VMS/<alice>/disk.img
    repo_upload: str  # on Repo/VMS/<alice>/big.img
    bobs: str  # a bucket of bob's

    @property
    def alice(self) -> Any:
        return self.w.alice.s3

    @property
    def bob(self) -> Any:
        return self.w.bob.s3

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.alice.get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return [o["Key"] for o in self.alice.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]

    def parts(self, bucket: str, key: str, upload: str) -> list[tuple[int, int]]:
        got = self.alice.list_parts(Bucket=bucket, Key=key, UploadId=upload).get("Parts", [])
        return [(p["PartNumber"], p["Size"]) for p in got]

    def uploads(self, bucket: str) -> set[str]:
        return {u["UploadId"] for u in self.alice.list_multipart_uploads(Bucket=bucket).get("Uploads", [])}


@pytest.fixture(scope="module")
def loot(deployment: World) -> Any:
    w = deployment
    a, b = w.alice.s3, w.bob.s3
    bucket, empty, open_, bobs = (new_bucket_name(t) for t in ("alice", "alice-empty", "alice-open", "bob"))
    a.create_bucket(Bucket=bucket)
    a.create_bucket(Bucket=empty)
    a.create_bucket(Bucket=open_, ACL="public-read-write")
    b.create_bucket(Bucket=bobs)
    a.put_object(Bucket=bucket, Key="secret", Body=SECRET, Tagging=ALICES_TAGS)
    a.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "owner", "Value": "alice"}]})
    upload = a.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    a.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=PART)
    open_upload = a.create_multipart_upload(Bucket=open_, Key="open-mp")["UploadId"]
    a.upload_part(Bucket=open_, Key="open-mp", UploadId=open_upload, PartNumber=1, Body=PART)
    repo = "Repo"
    repo_key = f"VMS/{w.alice.name}/disk.img"
    a.put_object(Bucket=repo, Key=repo_key, Body=IMAGE)
    repo_upload = a.create_multipart_upload(Bucket=repo, Key=f"VMS/{w.alice.name}/big.img")["UploadId"]
    a.upload_part(Bucket=repo, Key=f"VMS/{w.alice.name}/big.img", UploadId=repo_upload, PartNumber=1, Body=PART)
    loot = Loot(w, bucket, empty, open_, upload, open_upload, repo, repo_key, repo_upload, bobs)
    yield loot
    for name in (bucket, empty, open_):
        empty_and_delete(a, name)
    empty_and_delete(b, bobs)
    for key in (repo_key,):
        a.delete_object(Bucket=repo, Key=key)
    a.abort_multipart_upload(Bucket=repo, Key=f"VMS/{w.alice.name}/big.img", UploadId=repo_upload)


def cli(x: Loot) -> bool:
    """The aws CLI too (a Python start per call, seconds on a loaded machine): on the SQLite server only."""
    return len(x.w.servers) == 1


def _repo_big(x: Loot) -> str:
    return f"VMS/{x.w.alice.name}/big.img"


# --------------------------------------------------------------------------- buckets


def list_buckets(x: Loot) -> None:
    names = {b["Name"] for b in x.bob.list_buckets()["Buckets"]}
    assert not names & {x.bucket, x.empty, x.open}, names


def create_bucket(x: Loot) -> None:
    for name in (x.bucket, x.empty):
        code, status, _ = refused(x.bob.create_bucket, Bucket=name)
        assert (code, status) == ("BucketAlreadyExists", 409), (code, status)
    refused(x.bob.create_bucket, Bucket=x.repo)
    assert x.keys(x.bucket) == ["secret"] and x.keys(x.empty) == []
    assert x.alice.get_bucket_acl(Bucket=x.bucket)["Owner"] == x.alice.list_buckets()["Owner"]


def head_bucket(x: Loot) -> None:
    refused(x.bob.head_bucket, Bucket=x.bucket, status={403})
    refused(x.bob.head_bucket, Bucket=x.empty, status={403})


def delete_bucket(x: Loot) -> None:
    refused(x.bob.delete_bucket, Bucket=x.empty, codes=DENIED)
    refused(x.bob.delete_bucket, Bucket=x.bucket, codes=DENIED)
    refused(x.bob.delete_bucket, Bucket=x.open, codes=DENIED)
    refused(x.bob.delete_bucket, Bucket=x.repo, codes=DENIED)
    x.alice.head_bucket(Bucket=x.empty)
    x.alice.head_bucket(Bucket=x.open)


def get_bucket_location(x: Loot) -> None:
    refused(x.bob.get_bucket_location, Bucket=x.bucket, codes=DENIED)


def get_bucket_acl(x: Loot) -> None:
    for name in (x.bucket, x.open, x.repo):
        refused(x.bob.get_bucket_acl, Bucket=name, codes=DENIED)


def put_bucket_acl(x: Loot) -> None:
    bob_id = x.bob.list_buckets()["Owner"]["ID"]
    for name in (x.bucket, x.empty, x.open, x.repo):
        before = x.alice.get_bucket_acl(Bucket=name) if name != x.repo else None
        refused(x.bob.put_bucket_acl, Bucket=name, ACL="public-read-write", codes=DENIED)
        refused(x.bob.put_bucket_acl, Bucket=name, ACL="private", codes=DENIED)
        refused(x.bob.put_bucket_acl, Bucket=name, GrantFullControl=f'id="{bob_id}"', status={403, 501})
        refused(x.bob.put_bucket_acl, Bucket=name, AccessControlPolicy={
            "Owner": {"ID": bob_id}, "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": bob_id},
                                                 "Permission": "FULL_CONTROL"}]}, status={403, 501})
        if before is not None:
            assert x.alice.get_bucket_acl(Bucket=name)["Grants"] == before["Grants"]
    refused(x.bob.list_objects_v2, Bucket=x.bucket, codes=DENIED)


# --------------------------------------------------------------------------- listings


def list_objects(x: Loot) -> None:
    refused(x.bob.list_objects, Bucket=x.bucket, codes=DENIED)
    refused(x.bob.list_objects, Bucket=x.bucket, Prefix="sec", codes=DENIED)
    refused(x.bob.list_objects, Bucket=x.repo, Prefix=f"VMS/{x.w.alice.name}/", codes=DENIED)
    refused(x.bob.list_objects, Bucket=x.repo, codes=DENIED)


def list_objects_v2(x: Loot) -> None:
    refused(x.bob.list_objects_v2, Bucket=x.bucket, codes=DENIED)
    refused(x.bob.list_objects_v2, Bucket=x.bucket, StartAfter="a", FetchOwner=True, codes=DENIED)
    refused(x.bob.list_objects_v2, Bucket=x.repo, Prefix=f"VMS/{x.w.alice.name}/", codes=DENIED)
    refused(x.bob.list_objects_v2, Bucket=x.repo, Prefix="VMS/", codes=DENIED)
    refused(x.bob.list_objects_v2, Bucket=x.repo, Prefix="VMS", Delimiter="/", codes=DENIED)
    # bob's own prefix is listable: it must not lead elsewhere, however it is spelled
    for prefix in (f"VMS/{x.w.bob.name}/", f"VMS/{x.w.bob.name}/../{x.w.alice.name}/",
                   f"VMS/{x.w.bob.name}/%2e%2e/{x.w.alice.name}/"):
        listed = x.bob.list_objects_v2(Bucket=x.repo, Prefix=prefix)
        assert [o["Key"] for o in listed.get("Contents", [])] == [], (prefix, listed.get("Contents"))
        listed = x.bob.list_objects_v2(Bucket=x.repo, Prefix=prefix, StartAfter="VMS/", Delimiter="/")
        assert listed.get("Contents", []) == [] and listed.get("CommonPrefixes", []) == [], prefix


def list_multipart_uploads(x: Loot) -> None:
    refused(x.bob.list_multipart_uploads, Bucket=x.bucket, codes=DENIED)
    refused(x.bob.list_multipart_uploads, Bucket=x.repo, codes=DENIED)
    refused(x.bob.list_multipart_uploads, Bucket=x.repo, Prefix=f"VMS/{x.w.alice.name}/", codes=DENIED)
    own = x.bob.list_multipart_uploads(Bucket=x.repo, Prefix=f"VMS/{x.w.bob.name}/").get("Uploads", [])
    assert x.repo_upload not in {u["UploadId"] for u in own}


# --------------------------------------------------------------------------- objects


def get_object(x: Loot) -> None:
    refused(x.bob.get_object, Bucket=x.bucket, Key="secret", codes=DENIED)
    refused(x.bob.get_object, Bucket=x.bucket, Key="secret", Range="bytes=0-3", codes=DENIED)
    refused(x.bob.get_object, Bucket=x.bucket, Key="secret", PartNumber=1, codes=DENIED)
    refused(x.bob.get_object, Bucket=x.bucket, Key="no-such-key", codes=DENIED)  # existence is no one else's business
    refused(x.bob.get_object, Bucket=x.repo, Key=x.repo_key, codes=DENIED)
    if cli(x):
        res = x.w.bob.aws("s3", "cp", f"s3://{x.bucket}/secret", "-")
        assert res.returncode != 0 and SECRET.decode() not in res.stdout, res


def head_object(x: Loot) -> None:
    refused(x.bob.head_object, Bucket=x.bucket, Key="secret", status={403})
    refused(x.bob.head_object, Bucket=x.repo, Key=x.repo_key, status={403})


def put_object(x: Loot) -> None:
    refused(x.bob.put_object, Bucket=x.bucket, Key="secret", Body=b"bob's", codes=DENIED)
    refused(x.bob.put_object, Bucket=x.bucket, Key="new", Body=b"bob's", codes=DENIED)
    refused(x.bob.put_object, Bucket=x.repo, Key=x.repo_key, Body=b"bob's", codes=DENIED)
    refused(x.bob.put_object, Bucket=x.repo, Key=f"VMS/{x.w.alice.name}/planted.img", Body=b"bob's", codes=DENIED)
    refused(x.bob.put_object, Bucket=x.repo, Key="VMS/common/planted.img", Body=b"bob's", codes=DENIED)
    if cli(x):
        res = x.w.bob.aws("s3", "cp", "-", f"s3://{x.bucket}/secret")
        assert res.returncode != 0, res
    assert x.read(x.bucket, "secret") == SECRET and x.keys(x.bucket) == ["secret"]
    assert x.read(x.repo, x.repo_key) == IMAGE
    assert x.keys(x.repo, f"VMS/{x.w.alice.name}/planted") == x.keys(x.repo, "VMS/common/planted") == []


def delete_object(x: Loot) -> None:
    refused(x.bob.delete_object, Bucket=x.bucket, Key="secret", codes=DENIED)
    refused(x.bob.delete_object, Bucket=x.repo, Key=x.repo_key, codes=DENIED)
    if cli(x):
        res = x.w.bob.aws("s3", "rm", f"s3://{x.bucket}/secret")
        assert res.returncode != 0, res
    assert x.read(x.bucket, "secret") == SECRET and x.read(x.repo, x.repo_key) == IMAGE


def delete_objects(x: Loot) -> None:
    for bucket, key in ((x.bucket, "secret"), (x.repo, x.repo_key)):
        try:
            res = x.bob.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}]})
        except ClientError as exc:
            assert error_of(exc)[0] in DENIED, exc.response
        else:
            assert [e["Code"] for e in res.get("Errors", [])] == ["AccessDenied"], res
            assert res.get("Deleted", []) == [], res
    assert x.read(x.bucket, "secret") == SECRET and x.read(x.repo, x.repo_key) == IMAGE


def copy_object(x: Loot) -> None:
    """Out of alice's bucket into bob's, and into alice's bucket from bob's."""
    x.bob.put_object(Bucket=x.bobs, Key="bait", Body=b"bob's")
    for source in ({"Bucket": x.bucket, "Key": "secret"}, {"Bucket": x.repo, "Key": x.repo_key}):
        refused(x.bob.copy_object, Bucket=x.bobs, Key="loot", CopySource=source, codes=DENIED)
        refused(x.bob.copy_object, Bucket=x.repo, Key=f"VMS/{x.w.bob.name}/loot", CopySource=source, codes=DENIED)
    refused(x.bob.copy_object, Bucket=x.bucket, Key="secret", CopySource={"Bucket": x.bobs, "Key": "bait"},
            codes=DENIED)
    refused(x.bob.copy_object, Bucket=x.repo, Key=x.repo_key, CopySource={"Bucket": x.bobs, "Key": "bait"},
            codes=DENIED)
    if cli(x):
        res = x.w.bob.aws("s3", "cp", f"s3://{x.bucket}/secret", f"s3://{x.bobs}/loot-cli")
        assert res.returncode != 0, res
    assert [o["Key"] for o in x.bob.list_objects_v2(Bucket=x.bobs).get("Contents", [])] == ["bait"]
    assert x.read(x.bucket, "secret") == SECRET and x.read(x.repo, x.repo_key) == IMAGE


def get_object_acl(x: Loot) -> None:
    refused(x.bob.get_object_acl, Bucket=x.bucket, Key="secret", codes=DENIED)
    refused(x.bob.get_object_acl, Bucket=x.repo, Key=x.repo_key, codes=DENIED)


def put_object_acl(x: Loot) -> None:
    for bucket, key in ((x.bucket, "secret"), (x.repo, x.repo_key)):
        refused(x.bob.put_object_acl, Bucket=bucket, Key=key, ACL="public-read", codes=DENIED)
        refused(x.bob.put_object_acl, Bucket=bucket, Key=key, GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"',
                codes=DENIED)
        assert [g["Permission"] for g in x.alice.get_object_acl(Bucket=bucket, Key=key)["Grants"]] == ["FULL_CONTROL"]
    refused(x.w.anon.s3.get_object, Bucket=x.bucket, Key="secret", codes=DENIED)


# --------------------------------------------------------------------------- multipart


def create_multipart_upload(x: Loot) -> None:
    refused(x.bob.create_multipart_upload, Bucket=x.bucket, Key="bob-mp", codes=DENIED)
    refused(x.bob.create_multipart_upload, Bucket=x.repo, Key=f"VMS/{x.w.alice.name}/bob.img", codes=DENIED)
    assert x.uploads(x.bucket) == {x.upload}


def upload_part(x: Loot) -> None:
    for bucket, key, upload in ((x.bucket, "mp", x.upload), (x.open, "open-mp", x.open_upload),
                                (x.repo, _repo_big(x), x.repo_upload)):
        refused(x.bob.upload_part, Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"bob's",
                codes=DENIED | {"NoSuchUpload"})
        refused(x.bob.upload_part, Bucket=bucket, Key=key, UploadId=upload, PartNumber=2, Body=b"bob's",
                codes=DENIED | {"NoSuchUpload"})
        assert x.parts(bucket, key, upload) == [(1, len(PART))], (bucket, key)
    # alice's upload id in bob's own bucket: no such upload there
    refused(x.bob.upload_part, Bucket=x.bobs, Key="mp", UploadId=x.upload, PartNumber=1, Body=b"bob's",
            codes={"NoSuchUpload"})
    assert x.parts(x.bucket, "mp", x.upload) == [(1, len(PART))]


def upload_part_copy(x: Loot) -> None:
    mine = x.bob.create_multipart_upload(Bucket=x.bobs, Key="copy-mp")["UploadId"]
    try:
        for source in ({"Bucket": x.bucket, "Key": "secret"}, {"Bucket": x.repo, "Key": x.repo_key}):
            refused(x.bob.upload_part_copy, Bucket=x.bobs, Key="copy-mp", UploadId=mine, PartNumber=1,
                    CopySource=source, codes=DENIED)
        assert x.bob.list_parts(Bucket=x.bobs, Key="copy-mp", UploadId=mine).get("Parts", []) == []
        x.bob.put_object(Bucket=x.bobs, Key="bait", Body=b"bob's")
        for bucket, key, upload in ((x.bucket, "mp", x.upload), (x.open, "open-mp", x.open_upload),
                                    (x.repo, _repo_big(x), x.repo_upload)):
            refused(x.bob.upload_part_copy, Bucket=bucket, Key=key, UploadId=upload, PartNumber=1,
                    CopySource={"Bucket": x.bobs, "Key": "bait"}, codes=DENIED | {"NoSuchUpload"})
            assert x.parts(bucket, key, upload) == [(1, len(PART))], (bucket, key)
    finally:
        x.bob.abort_multipart_upload(Bucket=x.bobs, Key="copy-mp", UploadId=mine)


def list_parts(x: Loot) -> None:
    for bucket, key, upload in ((x.bucket, "mp", x.upload), (x.open, "open-mp", x.open_upload),
                                (x.repo, _repo_big(x), x.repo_upload)):
        refused(x.bob.list_parts, Bucket=bucket, Key=key, UploadId=upload, codes=DENIED | {"NoSuchUpload"})
    refused(x.bob.list_parts, Bucket=x.bobs, Key="mp", UploadId=x.upload, codes={"NoSuchUpload"})


def complete_multipart_upload(x: Loot) -> None:
    for bucket, key, upload in ((x.bucket, "mp", x.upload), (x.open, "open-mp", x.open_upload),
                                (x.repo, _repo_big(x), x.repo_upload)):
        etag = hashlib.md5(PART).hexdigest()
        refused(x.bob.complete_multipart_upload, Bucket=bucket, Key=key, UploadId=upload,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": f'"{etag}"'}]}, codes=DENIED | {"NoSuchUpload"})
        assert x.parts(bucket, key, upload) == [(1, len(PART))], (bucket, key)
        assert key not in x.keys(bucket, key)
    refused(x.bob.complete_multipart_upload, Bucket=x.bobs, Key="mp", UploadId=x.upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": f'"{hashlib.md5(PART).hexdigest()}"'}]},
            codes={"NoSuchUpload"})
    assert x.bob.list_objects_v2(Bucket=x.bobs, Prefix="mp").get("Contents", []) == []


def abort_multipart_upload(x: Loot) -> None:
    for bucket, key, upload in ((x.bucket, "mp", x.upload), (x.open, "open-mp", x.open_upload),
                                (x.repo, _repo_big(x), x.repo_upload)):
        refused(x.bob.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload,
                codes=DENIED | {"NoSuchUpload"})
        assert x.parts(bucket, key, upload) == [(1, len(PART))], (bucket, key)
    refused(x.bob.abort_multipart_upload, Bucket=x.bobs, Key="mp", UploadId=x.upload, codes={"NoSuchUpload"})
    assert x.uploads(x.bucket) == {x.upload} and x.uploads(x.open) == {x.open_upload}


# --------------------------------------------------------------------------- versioning, tagging


def get_bucket_versioning(x: Loot) -> None:
    for bucket in (x.bucket, x.empty, x.open):
        refused(x.bob.get_bucket_versioning, Bucket=bucket, codes=DENIED)


def list_object_versions(x: Loot) -> None:
    for bucket in (x.bucket, x.empty):
        refused(x.bob.list_object_versions, Bucket=bucket, codes=DENIED)
    # the image bucket: bob lists his own prefix only
    refused(x.bob.list_object_versions, Bucket=x.repo, Prefix=f"VMS/{x.w.alice.name}/", codes=DENIED)
    mine = x.bob.list_object_versions(Bucket=x.repo, Prefix=f"VMS/{x.w.bob.name}/").get("Versions", [])
    assert all(v["Key"].startswith(f"VMS/{x.w.bob.name}/") for v in mine), mine


def _alices_object_tags(x: Loot) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in x.alice.get_object_tagging(Bucket=x.bucket, Key="secret")["TagSet"]}


def get_object_tagging(x: Loot) -> None:
    refused(x.bob.get_object_tagging, Bucket=x.bucket, Key="secret", codes=DENIED)
    refused(x.bob.get_object_tagging, Bucket=x.repo, Key=x.repo_key, codes=DENIED)


def put_object_tagging(x: Loot) -> None:
    for bucket, key in ((x.bucket, "secret"), (x.repo, x.repo_key)):
        refused(x.bob.put_object_tagging, Bucket=bucket, Key=key,
                Tagging={"TagSet": [{"Key": "owner", "Value": "bob"}]}, codes=DENIED)
    assert _alices_object_tags(x) == {"owner": "alice", "class": "secret"}


def delete_object_tagging(x: Loot) -> None:
    refused(x.bob.delete_object_tagging, Bucket=x.bucket, Key="secret", codes=DENIED)
    assert _alices_object_tags(x) == {"owner": "alice", "class": "secret"}


def get_bucket_tagging(x: Loot) -> None:
    for bucket in (x.bucket, x.open, x.repo):
        refused(x.bob.get_bucket_tagging, Bucket=bucket, codes=DENIED)


def put_bucket_tagging(x: Loot) -> None:
    for bucket in (x.bucket, x.open, x.repo):
        refused(x.bob.put_bucket_tagging, Bucket=bucket, Tagging={"TagSet": [{"Key": "owner", "Value": "bob"}]},
                codes=DENIED)
    assert x.alice.get_bucket_tagging(Bucket=x.bucket)["TagSet"] == [{"Key": "owner", "Value": "alice"}]


def delete_bucket_tagging(x: Loot) -> None:
    for bucket in (x.bucket, x.open):
        refused(x.bob.delete_bucket_tagging, Bucket=bucket, codes=DENIED)
    assert x.alice.get_bucket_tagging(Bucket=x.bucket)["TagSet"] == [{"Key": "owner", "Value": "alice"}]


# --------------------------------------------------------------------------- the table


CASES: dict[str, list[Callable[[Loot], None]]] = {
    "ListBuckets": [list_buckets],
    "CreateBucket": [create_bucket],
    "HeadBucket": [head_bucket],
    "DeleteBucket": [delete_bucket],
    "GetBucketLocation": [get_bucket_location],
    "GetBucketAcl": [get_bucket_acl],
    "PutBucketAcl": [put_bucket_acl],
    "ListObjects": [list_objects],
    "ListObjectsV2": [list_objects_v2],
    "ListMultipartUploads": [list_multipart_uploads],
    "GetObject": [get_object],
    "HeadObject": [head_object],
    "PutObject": [put_object],
    "DeleteObject": [delete_object],
    "DeleteObjects": [delete_objects],
    "CopyObject": [copy_object],
    "GetObjectAcl": [get_object_acl],
    "PutObjectAcl": [put_object_acl],
    "CreateMultipartUpload": [create_multipart_upload],
    "UploadPart": [upload_part],
    "UploadPartCopy": [upload_part_copy],
    "ListParts": [list_parts],
    "CompleteMultipartUpload": [complete_multipart_upload],
    "AbortMultipartUpload": [abort_multipart_upload],
    "GetBucketVersioning": [get_bucket_versioning],
    "ListObjectVersions": [list_object_versions],
    "GetObjectTagging": [get_object_tagging],
    "PutObjectTagging": [put_object_tagging],
    "DeleteObjectTagging": [delete_object_tagging],
    "GetBucketTagging": [get_bucket_tagging],
    "PutBucketTagging": [put_bucket_tagging],
    "DeleteBucketTagging": [delete_bucket_tagging],
}


def test_every_operation_has_a_cross_tenant_case() -> None:
    implemented = set(s3_registry.names())
    missing = implemented - set(CASES)
    assert not missing, f"Cumulus operations without a cross-tenant case: {sorted(missing)}; add one to CASES in {__file__}"
    assert not set(CASES) - implemented, "cases for operations Cumulus does not have"


@pytest.mark.parametrize("case", [pytest.param(c, id=f"{op}-{c.__name__}") for op, cs in CASES.items() for c in cs])
def test_bob_cannot_reach_alices_data(loot: Loot, case: Callable[[Loot], None]) -> None:
    case(loot)


def _unimplemented_requests(bucket: str, key: str) -> list[tuple[str, str, str]]:
    """(operation, method, path?query) of every S3 operation in botocore's model that Cumulus does not
    implement and that names a bucket (and a key where it takes one)."""
    model = botocore.session.get_session().get_service_model("s3")
    implemented = set(s3_registry.names())
    out = []
    for name in model.operation_names:
        if name in implemented:
            continue
        http = model.operation_model(name).http
        uri = http["requestUri"]
        if "{Bucket}" not in uri:
            continue
        path = uri.replace("{Bucket}", bucket).replace("{Key+}", key).replace("{Key}", key)
        if "{" in path:
            continue
        out.append((name, http["method"], path))
    return out


def test_operations_cumulus_does_not_implement_fail_for_bob_on_alices_bucket(loot: Loot) -> None:
    """PutBucketPolicy, PutBucketVersioning, PutBucketLifecycle, ...: none may succeed for another tenant."""
    requests = _unimplemented_requests(loot.bucket, "secret")
    assert len(requests) > 50, requests
    wrong = []
    for name, method, path in requests:
        server = loot.w.bob.server
        res = signed(server, loot.w.bob, method, "/" + path.lstrip("/"),
                     body=b"<x/>" if method in ("PUT", "POST") else b"")
        if res.status < 400 or res.code in ("", "InternalError"):
            wrong.append((name, method, path, res.status, res.code))
    assert not wrong, wrong
    assert loot.read(loot.bucket, "secret") == SECRET and loot.keys(loot.bucket) == ["secret"]


def test_alices_data_is_intact_and_hers(loot: Loot) -> None:
    assert loot.read(loot.bucket, "secret") == SECRET and loot.keys(loot.bucket) == ["secret"]
    assert _alices_object_tags(loot) == {"owner": "alice", "class": "secret"}
    assert loot.read(loot.repo, loot.repo_key) == IMAGE
    assert loot.uploads(loot.bucket) == {loot.upload} and loot.uploads(loot.open) == {loot.open_upload}
    assert loot.parts(loot.bucket, "mp", loot.upload) == [(1, len(PART))]
    assert loot.alice.get_bucket_acl(Bucket=loot.bucket)["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert len(loot.alice.get_bucket_acl(Bucket=loot.bucket)["Grants"]) == 1
    assert {b["Name"] for b in loot.alice.list_buckets()["Buckets"]} >= {loot.bucket, loot.empty, loot.open}
