"""Presigned URLs do exactly what was signed, until they expire; a removed user's keys stop working at once.

Presigned URLs come from boto3 (SigV4 and SigV2, GET and PUT) and are then altered the way an
attacker holding one would: another key or bucket, another method, a longer expiry, added or
changed query parameters (some of which would turn the request into another operation), another
access key. Every alteration must be refused (403) and leave the data as it was.

Removed keys: `ec2gw admin user remove` (the real command) and the same user's clients, presigned
URLs made before, SigV2 and the aws CLI are refused on the next request, also on an HTTP
connection opened before; on PostgreSQL a user removed through one process is refused at once
by the other.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.security import error_of, refused
from tests.security.conftest import Tenant, World, admin_cli, make_user, tenant, unique

SECRET = b"presigned secret"


def fetch(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
          conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """The URL exactly as given (no re-encoding), over `conn` if one is given (kept open)."""
    parts = urlsplit(url)
    own = conn is None
    c = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        c.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body, headers=headers or {})
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            c.close()


def with_query(url: str, change: Callable[[list[tuple[str, str]]], list[tuple[str, str]]]) -> str:
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    return parts._replace(query=urlencode(change(pairs), quote_via=quote, safe="")).geturl()


def replace_param(name: str, value: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [(k, value if k == name else v) for k, v in pairs]


def add_param(name: str, value: str) -> Callable[[list[tuple[str, str]]], list[tuple[str, str]]]:
    return lambda pairs: [*pairs, (name, value)]


def assert_refused(url: str, method: str = "GET", body: bytes | None = None, statuses: tuple[int, ...] = (403,),
                   what: str = "") -> bytes:
    status, text = fetch(url, method, body)
    assert status in statuses and b"<Code>" in text and b"<Message>" in text, (what, url, method, status, text[:400])
    assert SECRET not in text, what
    return text


@pytest.fixture(scope="module")
def obj(alice: Tenant) -> tuple[str, str]:
    bucket = unique("presign")
    alice.s3.create_bucket(Bucket=bucket)
    alice.s3.put_object(Bucket=bucket, Key="secret", Body=SECRET)
    alice.s3.put_object(Bucket=bucket, Key="other", Body=b"other object")
    return bucket, "secret"


def presigner(t: Tenant, flavour: str) -> Any:
    """A client that presigns with SigV4 ("s3v4") or SigV2 ("s3"); boto3 picks either by itself otherwise."""
    return t.client("s3", signature_version="s3v4" if flavour == "sigv4" else "s3")


@pytest.mark.parametrize("flavour", ["sigv4", "sigv2"])
def test_tampered_presigned_get_is_refused(alice: Tenant, bob: Tenant, obj: tuple[str, str], flavour: str) -> None:
    bucket, key = obj
    url = presigner(alice, flavour).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                           ExpiresIn=300)
    assert ("X-Amz-Signature=" in url) == (flavour == "sigv4"), url
    assert fetch(url) == (200, SECRET)

    parts = urlsplit(url)
    assert_refused(parts._replace(path=f"/{bucket}/other").geturl(), what="another key")
    assert_refused(parts._replace(path=f"/{bucket}/{key}x").geturl(), what="a longer key")
    assert_refused(parts._replace(path=f"/{bucket}/./{key}").geturl(), statuses=(400, 403), what="a dot segment")
    assert_refused(parts._replace(path=f"/{bucket}//{key}").geturl(), what="a doubled slash")
    other_bucket = unique("presign-other")
    bob.s3.create_bucket(Bucket=other_bucket)
    bob.s3.put_object(Bucket=other_bucket, Key=key, Body=b"bob's")
    assert_refused(parts._replace(path=f"/{other_bucket}/{key}").geturl(), what="another bucket")
    for method in ("PUT", "DELETE", "POST"):
        assert_refused(url, method, body=b"overwritten" if method != "DELETE" else None, statuses=(403, 405),
                       what=method)
    status, _ = fetch(url, "HEAD")
    assert status == 403, "HEAD with a GET signature"

    extra = [("acl", ""), ("uploads", ""), ("tagging", ""), ("response-content-type", "text/html"),
             ("response-content-disposition", "attachment"), ("partNumber", "1"), ("versionId", "null")]
    if flavour == "sigv4":  # SigV2 signs only S3's subresources; other parameters are ignored, as on S3
        extra.append(("x-id", "DeleteObject"))
    for name, value in extra:
        assert_refused(with_query(url, add_param(name, value)), statuses=(400, 403, 405, 501), what=f"added {name}")
    if flavour == "sigv4":
        assert_refused(with_query(url, replace_param("X-Amz-Expires", "604800")), what="longer expiry")
        assert_refused(with_query(url, replace_param("X-Amz-Expires", "1")), what="shorter expiry")
        q = dict(parse_qsl(parts.query))
        assert_refused(with_query(url, replace_param("X-Amz-Date", "20300101T000000Z")), statuses=(400, 403),
                       what="later date")
        cred = q["X-Amz-Credential"]
        assert_refused(with_query(url, replace_param("X-Amz-Credential", cred.replace(alice.access_key, bob.access_key))),
                       what="bob's key")
        assert_refused(with_query(url, replace_param("X-Amz-SignedHeaders", "host;x-amz-date")), what="signed headers")
        assert_refused(with_query(url, replace_param("X-Amz-Algorithm", "AWS4-HMAC-SHA1")), statuses=(400, 403),
                       what="algorithm")
        assert_refused(with_query(url, lambda p: [*p, ("X-Amz-Expires", "604800")]), statuses=(400, 403),
                       what="a second expiry")
        assert_refused(with_query(url, lambda p: [(k, v) for k, v in p if k != "X-Amz-Signature"]),
                       statuses=(400, 403), what="no signature")
        assert_refused(with_query(url, replace_param("X-Amz-Signature", q["X-Amz-Signature"][::-1])),
                       what="another signature")
    else:
        assert_refused(with_query(url, replace_param("Expires", str(int(time.time()) + 10 * 365 * 86400))),
                       what="longer expiry")
        assert_refused(with_query(url, replace_param("AWSAccessKeyId", bob.access_key)), what="bob's key")
        assert_refused(with_query(url, lambda p: [*p, ("Expires", "4102444800")]), statuses=(400, 403),
                       what="a second expiry")
    # the untouched URL still works, and nothing changed
    assert fetch(url) == (200, SECRET)
    assert alice.s3.get_object_acl(Bucket=bucket, Key=key)["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert len(alice.s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]) == 1


@pytest.mark.parametrize("flavour", ["sigv4", "sigv2"])
def test_presigned_put_writes_only_what_was_signed(alice: Tenant, obj: tuple[str, str], flavour: str) -> None:
    bucket, _ = obj
    url = presigner(alice, flavour).generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": f"upload-{flavour}"}, ExpiresIn=300)
    parts = urlsplit(url)
    assert_refused(parts._replace(path=f"/{bucket}/secret").geturl(), "PUT", b"overwritten", what="another key")
    assert_refused(with_query(url, add_param("acl", "")), "PUT", b"<AccessControlPolicy/>", statuses=(400, 403),
                   what="turned into PutObjectAcl")
    assert_refused(with_query(url, add_param("partNumber", "1")), "PUT", b"x", statuses=(400, 403),
                   what="turned into UploadPart")
    assert_refused(url, "DELETE", what="DELETE with a PUT signature")
    assert_refused(url, "GET", statuses=(403,), what="GET with a PUT signature")
    assert fetch(url, "PUT", b"signed upload")[0] == 200
    assert alice.s3.get_object(Bucket=bucket, Key=f"upload-{flavour}")["Body"].read() == b"signed upload"
    assert alice.s3.get_object(Bucket=bucket, Key="secret")["Body"].read() == SECRET
    assert alice.s3.get_object_acl(Bucket=bucket, Key="secret")["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_expired_presigned_urls_are_refused(alice: Tenant, obj: tuple[str, str]) -> None:
    bucket, key = obj
    v4 = presigner(alice, "sigv4").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                          ExpiresIn=1)
    v2 = presigner(alice, "sigv2").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                          ExpiresIn=1)
    time.sleep(2.2)
    for url in (v4, v2):
        text = assert_refused(url, what="expired")
        assert b"expired" in text.lower(), text
    too_long = presigner(alice, "sigv4").generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                               ExpiresIn=604801)
    assert_refused(too_long, statuses=(400, 403), what="more than a week")


def test_presigned_ec2_query_cannot_be_turned_into_another_action(alice: Tenant) -> None:
    """A SigV4 query-signed EC2 request: changing Action or adding a parameter breaks the signature."""
    from botocore.auth import SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = alice.server.ec2_url + "/?" + urlencode({"Action": "DescribeRegions", "Version": "2016-11-15"})
    req = AWSRequest(method="GET", url=url)
    SigV4QueryAuth(Credentials(alice.access_key, alice.secret_key), "ec2", "us-east-1", expires=300).add_auth(req)
    signed_url = req.prepare().url
    status, text = fetch(signed_url)
    assert status == 200 and b"DescribeRegionsResponse" in text, text[:300]
    for change in (replace_param("Action", "TerminateInstances"), add_param("InstanceId.1", "i-0123456789abcdef0"),
                   replace_param("X-Amz-Expires", "604800")):
        status, text = fetch(with_query(signed_url, change))
        assert status in (400, 401, 403) and b"<Code>" in text, (status, text[:300])


# --------------------------------------------------------------------------- removed keys


def _removed_user_is_refused_everywhere(user: Tenant, before: dict[str, str], bucket: str,
                                        conn: http.client.HTTPConnection | None = None) -> None:
    if conn is not None:  # first: the connection opened while the user was there (keep-alive is 5 s)
        status, text = fetch(before["sigv4"], conn=conn)
        assert status == 403, (status, text[:300])
    code, _, message = refused(user.ec2.describe_instances)
    assert code in ("AuthFailure", "InvalidClientTokenId", "UnauthorizedOperation"), (code, message)
    refused(user.ec2.run_instances, ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)
    code, _, _ = refused(user.s3.list_buckets)
    assert code in ("InvalidAccessKeyId", "AccessDenied"), code
    refused(user.s3.get_object, Bucket=bucket, Key="mine", codes={"InvalidAccessKeyId", "AccessDenied"})
    refused(user.s3.put_object, Bucket=bucket, Key="after", Body=b"x", codes={"InvalidAccessKeyId", "AccessDenied"})
    refused(user.client("s3", signature_version="s3").list_objects, Bucket=bucket)
    for name, url in before.items():
        status, text = fetch(url)
        assert status == 403 and b"<Code>" in text and b"'s" not in text, (name, status, text[:300])
    res = user.aws("s3", "ls")
    assert res.returncode != 0 and bucket not in res.stdout, res


def _presign_all(user: Tenant, bucket: str) -> dict[str, str]:
    params = {"Bucket": bucket, "Key": "mine"}
    return {f: presigner(user, f).generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
            for f in ("sigv4", "sigv2")}


def test_a_removed_user_is_refused_at_once(new_user: Callable[[str], Tenant], public_image: str) -> None:
    carol = new_user("carol")
    bucket = unique("carol")
    carol.s3.create_bucket(Bucket=bucket)
    carol.s3.put_object(Bucket=bucket, Key="mine", Body=b"carol's")
    iid = carol.ec2.run_instances(ImageId=public_image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    before = _presign_all(carol, bucket)
    assert fetch(before["sigv4"]) == fetch(before["sigv2"]) == (200, b"carol's")
    assert carol.aws("s3", "ls").returncode == 0
    carol.server.cli("admin", "user", "remove", carol.name)  # the installed command, as an operator runs it
    _removed_user_is_refused_everywhere(carol, before, bucket)
    # the administrator still sees her instance go
    admin = carol.server.client("ec2")
    states = {i["InstanceId"]: i["State"]["Name"] for r in admin.describe_instances(
        Filters=[{"Name": "instance-id", "Values": [iid]}])["Reservations"] for i in r["Instances"]}
    assert states.get(iid, "terminated") in ("shutting-down", "terminated"), states


def test_a_user_removed_through_one_process_is_refused_by_the_other(pg_world: World) -> None:
    a, b = pg_world.servers
    creds = make_user(a, unique("dora"))
    on_b = tenant(b, creds)
    bucket = unique("dora")
    on_b.s3.create_bucket(Bucket=bucket)
    on_b.s3.put_object(Bucket=bucket, Key="mine", Body=b"dora's")
    before = _presign_all(on_b, bucket)
    parts = urlsplit(before["sigv4"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        assert fetch(before["sigv4"], conn=conn) == (200, b"dora's")
        on_b.ec2.describe_instances()
        admin_cli(a, "user", "remove", creds.name)
        _removed_user_is_refused_everywhere(on_b, before, bucket, conn)
    finally:
        conn.close()


def test_a_removed_users_keys_cannot_be_given_to_a_new_user(live: Any, new_user: Callable[[str], Tenant]) -> None:
    """Removing and adding a user of the same name gives new keys; the old ones stay dead."""
    erin = new_user("erin")
    erin.s3.list_buckets()
    admin_cli(live, "user", "remove", erin.name)
    refused(erin.s3.list_buckets, status={403})
    try:
        again = tenant(live, make_user(live, erin.name))
    except AssertionError:
        return  # names of removed users are not reused: fine too
    assert again.access_key != erin.access_key
    again.s3.list_buckets()
    with pytest.raises(ClientError) as exc:
        erin.s3.list_buckets()
    assert error_of(exc.value)[1] == 403
    refused(erin.ec2.describe_instances)
