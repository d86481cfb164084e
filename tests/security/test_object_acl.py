"""Object ACLs are read and changed only by those allowed to (issue 12, item 2).

In a bucket whose ACL is public-read-write, bucket WRITE lets anyone store and delete objects, but
never read another user's object, read its ACL or change it: PutObjectAcl needs WRITE_ACP on the
object, GetObjectAcl READ_ACP (the object's owner, the bucket's owner, or a grant). The same for
the multipart uploads of another user in that bucket.
"""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

from typing import Any

import pytest

from tests.security.s3_deployments import bucket, s3_alice, s3_anon, s3_bob  # noqa: F401 - fixtures
from tests.security.s3_tenants import denied

SECRET = b"alice's private bytes"


# every test runs on both deployments (s3_deployments.py's fixtures)


@pytest.fixture
def open_bucket(s3_alice: Any, bucket: str) -> str:
    """alice's bucket, public-read-write, holding her private object `secret`."""
    s3_alice.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    s3_alice.put_object(Bucket=bucket, Key="secret", Body=SECRET)
    return bucket


def test_bucket_write_does_not_unlock_object_acls(s3_alice: Any, s3_bob: Any, s3_anon: Any, open_bucket: str) -> None:
    for client in (s3_bob, s3_anon):
        assert denied(client.get_object, Bucket=open_bucket, Key="secret") == ("AccessDenied", 403)
        assert denied(client.put_object_acl, Bucket=open_bucket, Key="secret", ACL="public-read") == ("AccessDenied", 403)
        assert denied(client.put_object_acl, Bucket=open_bucket, Key="secret",
                      GrantRead='uri="http://acs.amazonaws.com/groups/global/AllUsers"') == ("AccessDenied", 403)
        assert denied(client.get_object_acl, Bucket=open_bucket, Key="secret") == ("AccessDenied", 403)
    # nothing changed: still private, still readable by alice only
    for client in (s3_bob, s3_anon):
        assert denied(client.get_object, Bucket=open_bucket, Key="secret") == ("AccessDenied", 403)
    assert s3_alice.get_object(Bucket=open_bucket, Key="secret")["Body"].read() == SECRET
    grants = s3_alice.get_object_acl(Bucket=open_bucket, Key="secret")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]


def test_acl_of_a_missing_key_is_not_settable_by_others(s3_bob: Any, s3_anon: Any, open_bucket: str) -> None:
    for client in (s3_bob, s3_anon):
        code = denied(client.put_object_acl, Bucket=open_bucket, Key="nothing-here", ACL="public-read")
        assert code in (("AccessDenied", 403), ("NoSuchKey", 404))


def test_writer_owns_what_it_wrote(s3_alice: Any, s3_bob: Any, s3_anon: Any, open_bucket: str) -> None:
    """bob's object in alice's open bucket: bob (its owner) reads it and sets its ACL; others may not."""
    s3_bob.put_object(Bucket=open_bucket, Key="bobs", Body=b"bob")
    assert s3_bob.get_object(Bucket=open_bucket, Key="bobs")["Body"].read() == b"bob"
    assert s3_bob.get_object_acl(Bucket=open_bucket, Key="bobs")["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert denied(s3_anon.get_object, Bucket=open_bucket, Key="bobs") == ("AccessDenied", 403)
    assert denied(s3_anon.put_object_acl, Bucket=open_bucket, Key="bobs", ACL="public-read") == ("AccessDenied", 403)
    s3_bob.put_object_acl(Bucket=open_bucket, Key="bobs", ACL="public-read")
    assert s3_anon.get_object(Bucket=open_bucket, Key="bobs")["Body"].read() == b"bob"
    # the bucket's owner may do everything in her bucket (storage/README.md, Access)
    assert s3_alice.get_object(Bucket=open_bucket, Key="bobs")["Body"].read() == b"bob"


def test_bucket_acl_stays_the_owners(s3_bob: Any, s3_anon: Any, open_bucket: str) -> None:
    for client in (s3_bob, s3_anon):
        assert denied(client.get_bucket_acl, Bucket=open_bucket) == ("AccessDenied", 403)
        assert denied(client.put_bucket_acl, Bucket=open_bucket, ACL="private") == ("AccessDenied", 403)


def test_another_users_multipart_upload(s3_alice: Any, s3_bob: Any, s3_anon: Any, open_bucket: str) -> None:
    """Bucket WRITE lets bob start uploads of his own, not add parts to, list, complete or abort alice's."""
    up = s3_alice.create_multipart_upload(Bucket=open_bucket, Key="big")["UploadId"]
    etag = s3_alice.upload_part(Bucket=open_bucket, Key="big", UploadId=up, PartNumber=1, Body=b"a" * 100)["ETag"]
    for client in (s3_bob, s3_anon):
        assert denied(client.upload_part, Bucket=open_bucket, Key="big", UploadId=up, PartNumber=1,
                      Body=b"b" * 100) == ("AccessDenied", 403)
        assert denied(client.upload_part_copy, Bucket=open_bucket, Key="big", UploadId=up, PartNumber=2,
                      CopySource=f"{open_bucket}/secret") == ("AccessDenied", 403)
        assert denied(client.list_parts, Bucket=open_bucket, Key="big", UploadId=up) == ("AccessDenied", 403)
        assert denied(client.complete_multipart_upload, Bucket=open_bucket, Key="big", UploadId=up,
                      MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]}) == ("AccessDenied", 403)
        assert denied(client.abort_multipart_upload, Bucket=open_bucket, Key="big", UploadId=up) == ("AccessDenied", 403)
    s3_alice.complete_multipart_upload(Bucket=open_bucket, Key="big", UploadId=up,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3_alice.get_object(Bucket=open_bucket, Key="big")["Body"].read() == b"a" * 100


def test_copy_needs_read_on_the_source(s3_bob: Any, s3_anon: Any, open_bucket: str) -> None:
    for client in (s3_bob, s3_anon):
        assert denied(client.copy_object, Bucket=open_bucket, Key="stolen",
                      CopySource={"Bucket": open_bucket, "Key": "secret"}) == ("AccessDenied", 403)
    # a copy alice lets bob read does not carry her object's ACL over to a copy bob makes public
    assert denied(s3_bob.get_object, Bucket=open_bucket, Key="stolen")[1] in (403, 404)
