"""ACL grants are applied or refused, never dropped (issue 12, item 6).

Grants to a user's canonical ID and to the AllUsers / AuthenticatedUsers groups, for READ, WRITE,
READ_ACP, WRITE_ACP and FULL_CONTROL, on buckets and objects, given in an AccessControlPolicy body
or in x-amz-grant-* headers, are stored, shown by Get*Acl and checked on every access; a grant by
email address is 400 UnresolvableGrantByEmailAddress, to an unknown ID 400 InvalidArgument.
"""

# ruff: noqa: F811 - pytest fixtures are imported by name and taken as parameters

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.security.conftest import World
from tests.security.s3_deployments import bucket, s3_alice, s3_anon, s3_bob  # noqa: F401 - fixtures
from tests.security.s3_tenants import denied

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


def canonical(client: Any) -> str:
    return str(client.list_buckets()["Owner"]["ID"])


def owner_of(client: Any) -> dict[str, str]:
    return {"ID": canonical(client)}


def user_grant(cid: str, perm: str) -> dict[str, Any]:
    return {"Grantee": {"Type": "CanonicalUser", "ID": cid}, "Permission": perm}


def group_grant(uri: str, perm: str) -> dict[str, Any]:
    return {"Grantee": {"Type": "Group", "URI": uri}, "Permission": perm}


def shown(acl: dict[str, Any]) -> set[tuple[str, str]]:
    return {(g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"]) for g in acl["Grants"]}


# every test runs on both deployments (s3_deployments.py's fixtures)


@pytest.fixture
def secret(s3_alice: Any, bucket: str) -> str:
    s3_alice.put_object(Bucket=bucket, Key="secret", Body=b"alice only")
    return "secret"


def test_body_grant_to_a_user_is_applied(s3_alice: Any, s3_bob: Any, s3_anon: Any, bucket: str, secret: str) -> None:
    bob_id, alice = canonical(s3_bob), owner_of(s3_alice)
    assert denied(s3_bob.get_object, Bucket=bucket, Key=secret) == ("AccessDenied", 403)
    s3_alice.put_object_acl(Bucket=bucket, Key=secret, AccessControlPolicy={
        "Owner": alice, "Grants": [user_grant(alice["ID"], "FULL_CONTROL"), user_grant(bob_id, "FULL_CONTROL")]})
    assert (bob_id, "FULL_CONTROL") in shown(s3_alice.get_object_acl(Bucket=bucket, Key=secret))
    assert s3_bob.get_object(Bucket=bucket, Key=secret)["Body"].read() == b"alice only"
    assert (bob_id, "FULL_CONTROL") in shown(s3_bob.get_object_acl(Bucket=bucket, Key=secret))
    for call in (s3_anon.get_object, s3_anon.get_object_acl):
        assert denied(call, Bucket=bucket, Key=secret) == ("AccessDenied", 403)
    # taken back: a canned ACL replaces the grants
    s3_alice.put_object_acl(Bucket=bucket, Key=secret, ACL="private")
    assert denied(s3_bob.get_object, Bucket=bucket, Key=secret) == ("AccessDenied", 403)
    assert denied(s3_bob.get_object_acl, Bucket=bucket, Key=secret) == ("AccessDenied", 403)


def test_header_grants_on_objects(s3_alice: Any, s3_bob: Any, s3_anon: Any, bucket: str) -> None:
    bob_id = canonical(s3_bob)
    s3_alice.put_object(Bucket=bucket, Key="for-bob", Body=b"b", GrantRead=f'id="{bob_id}"')
    assert s3_bob.get_object(Bucket=bucket, Key="for-bob")["Body"].read() == b"b"
    # READ is not READ_ACP nor WRITE_ACP
    assert denied(s3_bob.get_object_acl, Bucket=bucket, Key="for-bob") == ("AccessDenied", 403)
    assert denied(s3_bob.put_object_acl, Bucket=bucket, Key="for-bob", ACL="public-read") == ("AccessDenied", 403)
    assert denied(s3_anon.get_object, Bucket=bucket, Key="for-bob") == ("AccessDenied", 403)
    # READ_ACP to every signed-in user, WRITE_ACP to bob
    s3_alice.put_object_acl(Bucket=bucket, Key="for-bob", GrantReadACP=f'uri="{AUTH_USERS}"',
                            GrantWriteACP=f'id="{bob_id}"')
    assert shown(s3_bob.get_object_acl(Bucket=bucket, Key="for-bob")) >= {(AUTH_USERS, "READ_ACP"), (bob_id, "WRITE_ACP")}
    assert denied(s3_anon.get_object_acl, Bucket=bucket, Key="for-bob") == ("AccessDenied", 403)
    assert denied(s3_bob.get_object, Bucket=bucket, Key="for-bob") == ("AccessDenied", 403)  # READ went with the old ACL
    s3_bob.put_object_acl(Bucket=bucket, Key="for-bob", GrantRead=f'id="{bob_id}"')  # WRITE_ACP lets him
    assert s3_bob.get_object(Bucket=bucket, Key="for-bob")["Body"].read() == b"b"


def test_bucket_grants_by_body_and_header(s3_alice: Any, s3_bob: Any, s3_anon: Any, bucket: str, secret: str) -> None:
    bob_id, alice = canonical(s3_bob), owner_of(s3_alice)
    assert denied(s3_bob.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    s3_alice.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{bob_id}"')
    assert [o["Key"] for o in s3_bob.list_objects_v2(Bucket=bucket)["Contents"]] == [secret]
    assert denied(s3_bob.put_object, Bucket=bucket, Key="x", Body=b"x") == ("AccessDenied", 403)
    assert denied(s3_bob.get_object, Bucket=bucket, Key=secret) == ("AccessDenied", 403)  # bucket READ is not object READ
    assert denied(s3_bob.get_bucket_acl, Bucket=bucket) == ("AccessDenied", 403)
    assert denied(s3_anon.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)
    s3_alice.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": alice, "Grants": [
        user_grant(alice["ID"], "FULL_CONTROL"), user_grant(bob_id, "WRITE"), user_grant(bob_id, "READ_ACP")]})
    s3_bob.put_object(Bucket=bucket, Key="from-bob", Body=b"x")
    assert shown(s3_bob.get_bucket_acl(Bucket=bucket)) >= {(bob_id, "WRITE"), (bob_id, "READ_ACP")}
    assert denied(s3_bob.list_objects_v2, Bucket=bucket) == ("AccessDenied", 403)  # READ was replaced
    assert denied(s3_bob.put_bucket_acl, Bucket=bucket, ACL="public-read") == ("AccessDenied", 403)
    # bucket WRITE does not unlock alice's object or its ACL
    assert denied(s3_bob.get_object, Bucket=bucket, Key=secret) == ("AccessDenied", 403)
    assert denied(s3_bob.put_object_acl, Bucket=bucket, Key=secret, ACL="public-read") == ("AccessDenied", 403)
    assert denied(s3_bob.get_object_acl, Bucket=bucket, Key=secret) == ("AccessDenied", 403)
    for client in (s3_anon,):
        assert denied(client.put_object, Bucket=bucket, Key="y", Body=b"y") == ("AccessDenied", 403)
        assert denied(client.get_bucket_acl, Bucket=bucket) == ("AccessDenied", 403)
    # WRITE_ACP on the bucket: bob may change it (and so give himself READ)
    s3_alice.put_bucket_acl(Bucket=bucket, GrantWriteACP=f'id="{bob_id}"')
    s3_bob.put_bucket_acl(Bucket=bucket, GrantRead=f'id="{bob_id}"')
    assert s3_bob.list_objects_v2(Bucket=bucket)["KeyCount"] == 2
    assert denied(s3_bob.put_bucket_acl, Bucket=bucket, ACL="private") == ("AccessDenied", 403)  # his WRITE_ACP went


def test_group_grants(s3_alice: Any, s3_bob: Any, s3_anon: Any, bucket: str, secret: str) -> None:
    s3_alice.put_object_acl(Bucket=bucket, Key=secret, GrantRead=f'uri="{AUTH_USERS}"')
    assert s3_bob.get_object(Bucket=bucket, Key=secret)["Body"].read() == b"alice only"
    assert denied(s3_anon.get_object, Bucket=bucket, Key=secret) == ("AccessDenied", 403)
    s3_alice.put_object_acl(Bucket=bucket, Key=secret, GrantFullControl=f'uri="{ALL_USERS}"')
    assert s3_anon.get_object(Bucket=bucket, Key=secret)["Body"].read() == b"alice only"
    assert (ALL_USERS, "FULL_CONTROL") in shown(s3_anon.get_object_acl(Bucket=bucket, Key=secret))


def test_grants_that_cannot_be_applied_are_refused(s3_alice: Any, bucket: str, secret: str) -> None:
    alice = owner_of(s3_alice)
    email = {"Grantee": {"Type": "AmazonCustomerByEmail", "EmailAddress": "bob@example.com"}, "Permission": "READ"}
    refused = [
        (s3_alice.put_object_acl, {"Key": secret, "GrantRead": 'emailAddress="bob@example.com"'},
         ("UnresolvableGrantByEmailAddress", 400)),
        (s3_alice.put_object_acl, {"Key": secret, "AccessControlPolicy": {"Owner": alice, "Grants": [email]}},
         ("UnresolvableGrantByEmailAddress", 400)),
        (s3_alice.put_bucket_acl, {"GrantWrite": 'emailAddress="bob@example.com"'}, ("UnresolvableGrantByEmailAddress", 400)),
        (s3_alice.put_object, {"Key": "new", "Body": b"x", "GrantRead": 'emailAddress="bob@example.com"'},
         ("UnresolvableGrantByEmailAddress", 400)),
        (s3_alice.put_object_acl, {"Key": secret, "GrantRead": 'id="' + "0" * 64 + '"'}, ("InvalidArgument", 400)),
        (s3_alice.put_bucket_acl, {"AccessControlPolicy": {"Owner": alice, "Grants": [user_grant("f" * 64, "READ")]}},
         ("InvalidArgument", 400)),
        (s3_alice.put_object_acl, {"Key": secret, "GrantRead": 'uri="http://acs.amazonaws.com/groups/s3/LogDelivery"'},
         ("InvalidArgument", 400)),
    ]
    for call, kw, expected in refused:
        assert denied(call, Bucket=bucket, **kw) == expected, kw
    # nothing was stored
    assert shown(s3_alice.get_object_acl(Bucket=bucket, Key=secret)) == {(alice["ID"], "FULL_CONTROL")}
    assert shown(s3_alice.get_bucket_acl(Bucket=bucket)) == {(alice["ID"], "FULL_CONTROL")}
    assert denied(s3_alice.head_object, Bucket=bucket, Key="new")[1] == 404


def test_grants_on_uploads_and_copies(s3_alice: Any, s3_bob: Any, s3_anon: Any, bucket: str, secret: str) -> None:
    bob_id = canonical(s3_bob)
    up = s3_alice.create_multipart_upload(Bucket=bucket, Key="mp", GrantRead=f'id="{bob_id}"')["UploadId"]
    etag = s3_alice.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"m" * 10)["ETag"]
    s3_alice.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up,
                                       MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
    assert s3_bob.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"m" * 10
    assert denied(s3_anon.get_object, Bucket=bucket, Key="mp") == ("AccessDenied", 403)
    # a copy gets the ACL its request asks for, not its source's
    s3_alice.copy_object(Bucket=bucket, Key="mp-copy", CopySource={"Bucket": bucket, "Key": "mp"})
    assert denied(s3_bob.get_object, Bucket=bucket, Key="mp-copy") == ("AccessDenied", 403)
    s3_alice.copy_object(Bucket=bucket, Key="secret-copy", CopySource={"Bucket": bucket, "Key": secret},
                         GrantRead=f'id="{bob_id}"')
    assert s3_bob.get_object(Bucket=bucket, Key="secret-copy")["Body"].read() == b"alice only"
    assert denied(s3_bob.get_object, Bucket=bucket, Key=secret) == ("AccessDenied", 403)


def test_aws_cli_grant(deployment: World, s3_bob: Any, bucket: str, secret: str) -> None:
    alice, bob = deployment.alice, deployment.bob
    bob_id = canonical(s3_bob)
    alice.aws("s3api", "put-object-acl", "--bucket", bucket, "--key", secret, "--grant-read", f"id={bob_id}", check=True)
    acl = json.loads(alice.aws("s3api", "get-object-acl", "--bucket", bucket, "--key", secret, check=True).stdout)
    assert (bob_id, "READ") in shown(acl)
    assert bob.aws("s3", "cp", f"s3://{bucket}/{secret}", "-", check=True).stdout == "alice only"
