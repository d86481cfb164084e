"""Pagination tokens are the installation's and the caller's: forged, altered, foreign or borrowed
tokens are refused, and a token shows none of the ids or keys it holds.

NextTokens (EC2) and continuation tokens (Cumulus ListObjectsV2) are encrypted and authenticated with
HMAC-SHA256 under a key made once per installation (<data dir>/token.key) over the caller and the
request's filters. Each case runs on the SQLite server and on two processes sharing PostgreSQL and one data
dir (alice talks to process A, bob to process B), where a token of alice's from A must also page on
B; one case replays a token of one installation's administrator at the other installation.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.functional.s3_fixtures import empty_and_delete, new_bucket_name
from tests.security import refused
from tests.security.conftest import Tenant, World

EC2_BAD_TOKEN = {"InvalidParameterValue", "InvalidNextToken"}
KEYS = [f"k{i:02d}" for i in range(7)]


@dataclass
class Pages:
    w: World
    instances: list[str]  # alice's
    tagged: list[str]  # alice's instances with tags (DescribeTags pages over them)
    bucket: str  # alice's, public-read: bob may list it too


@pytest.fixture(scope="module")
def pages(deployment: World) -> Iterator[Pages]:
    w = deployment
    ec2 = w.alice.ec2
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId=w.public_image, MinCount=7, MaxCount=7,
                                                       InstanceType="t2.micro")["Instances"]]
    ec2.create_tags(Resources=ids, Tags=[{"Key": "role", "Value": "web"}])
    bucket = new_bucket_name("tok")
    w.alice.s3.create_bucket(Bucket=bucket, ACL="public-read")
    for key in KEYS:
        w.alice.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    try:
        yield Pages(w, ids, ids, bucket)
    finally:
        ec2.terminate_instances(InstanceIds=ids)
        empty_and_delete(w.alice.s3, bucket)


def flipped(token: str, at: int = 10) -> str:
    return token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1:]


def readable(token: str) -> bytes:
    """What anyone holding the token can read of it (it is base64)."""
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def other_process(w: World, who: Tenant, service: str) -> Any:
    """`who`'s client for the other process of the PostgreSQL deployment (the same server on SQLite)."""
    return w.servers[-1].client(service, who) if who.server is w.servers[0] else w.servers[0].client(service, who)


def test_describe_instances_token_is_alices_alone(pages: Pages) -> None:
    w = pages.w
    first = w.alice.ec2.describe_instances(MaxResults=5)
    token = first["NextToken"]
    last_id = first["Reservations"][-1]["Instances"][-1]["InstanceId"]
    assert last_id.encode() not in readable(token) and last_id[2:].encode() not in readable(token), token
    _, status, message = refused(w.bob.ec2.describe_instances, MaxResults=5, NextToken=token, codes=EC2_BAD_TOKEN)
    assert status == 400 and "NextToken" in message
    refused(w.alice.ec2.describe_instances, MaxResults=5, NextToken=flipped(token), codes=EC2_BAD_TOKEN)
    refused(w.alice.ec2.describe_instances, MaxResults=5, NextToken=token[:-1], codes=EC2_BAD_TOKEN)
    # the token pages on for alice, on this process and on the other one sharing the database
    for ec2 in (w.alice.ec2, other_process(w, w.alice, "ec2")):
        rest = ec2.describe_instances(MaxResults=5, NextToken=token)
        assert rest["Reservations"], rest


def test_token_is_bound_to_its_filters(pages: Pages) -> None:
    w = pages.w
    filters = [{"Name": "tag:role", "Values": ["web"]}]
    token = w.alice.ec2.describe_instances(MaxResults=5, Filters=filters)["NextToken"]
    refused(w.alice.ec2.describe_instances, MaxResults=5, NextToken=token, codes=EC2_BAD_TOKEN)


def test_describe_tags_token_is_alices_alone(pages: Pages) -> None:
    w = pages.w
    filters = [{"Name": "key", "Values": ["role"]}]
    first = w.alice.ec2.describe_tags(MaxResults=5, Filters=filters)
    token = first["NextToken"]
    assert first["Tags"][-1]["ResourceId"][2:].encode() not in readable(token) and b"role" not in readable(token)
    refused(w.bob.ec2.describe_tags, MaxResults=5, Filters=filters, NextToken=token, codes=EC2_BAD_TOKEN)
    refused(w.alice.ec2.describe_tags, MaxResults=5, Filters=filters, NextToken=flipped(token), codes=EC2_BAD_TOKEN)
    rest = other_process(w, w.alice, "ec2").describe_tags(MaxResults=5, Filters=filters, NextToken=token)
    assert rest["Tags"], rest


def test_list_objects_v2_token_is_alices_alone(pages: Pages) -> None:
    w = pages.w
    assert [o["Key"] for o in w.bob.s3.list_objects_v2(Bucket=pages.bucket)["Contents"]] == KEYS  # bob may list
    token = w.alice.s3.list_objects_v2(Bucket=pages.bucket, MaxKeys=2)["NextContinuationToken"]
    refused(w.bob.s3.list_objects_v2, Bucket=pages.bucket, MaxKeys=2, ContinuationToken=token,
            codes={"InvalidArgument"}, status={400})
    refused(w.anon.s3.list_objects_v2, Bucket=pages.bucket, MaxKeys=2, ContinuationToken=token,
            codes={"InvalidArgument"}, status={400})
    refused(w.alice.s3.list_objects_v2, Bucket=pages.bucket, MaxKeys=2, ContinuationToken=flipped(token, 3),
            codes={"InvalidArgument"}, status={400})
    rest = other_process(w, w.alice, "s3").list_objects_v2(Bucket=pages.bucket, MaxKeys=2, ContinuationToken=token)
    assert [o["Key"] for o in rest["Contents"]] == KEYS[2:4]
    assert b"k01" not in readable(token) and len(token) < 80, token


def test_paginators_still_work(pages: Pages) -> None:
    w = pages.w
    for s3 in (w.alice.s3, w.bob.s3):
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=pages.bucket,
                                                                                  PaginationConfig={"PageSize": 2})
                for o in page.get("Contents", [])]
        assert keys == KEYS
    seen = [i["InstanceId"] for page in w.alice.ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "instance-id", "Values": pages.instances}], PaginationConfig={"PageSize": 5})
        for r in page["Reservations"] for i in r["Instances"]]
    assert sorted(seen) == sorted(pages.instances)
    tags = [t["ResourceId"] for page in w.alice.ec2.get_paginator("describe_tags").paginate(
        Filters=[{"Name": "key", "Values": ["role"]}], PaginationConfig={"PageSize": 5}) for t in page["Tags"]]
    assert sorted(tags) == sorted(pages.tagged)


def test_token_of_another_installation_is_refused(world: World, pg_world: World) -> None:
    """The administrators of both installations are user 1 and ask the same question: only the
    installation's key tells their tokens apart."""
    a, b = world.admin.ec2, pg_world.admin.ec2
    token = a.describe_instance_types(MaxResults=5)["NextToken"]
    assert b.describe_instance_types(MaxResults=5)["NextToken"] != token
    refused(b.describe_instance_types, MaxResults=5, NextToken=token, codes=EC2_BAD_TOKEN)
    assert a.describe_instance_types(MaxResults=5, NextToken=token)["InstanceTypes"]
    name = new_bucket_name("tok-inst")
    for s3 in (world.admin.s3, pg_world.admin.s3):
        s3.create_bucket(Bucket=name)
        for key in KEYS[:3]:
            s3.put_object(Bucket=name, Key=key, Body=b"x")
    try:
        token = world.admin.s3.list_objects_v2(Bucket=name, MaxKeys=1)["NextContinuationToken"]
        refused(pg_world.admin.s3.list_objects_v2, Bucket=name, MaxKeys=1, ContinuationToken=token,
                codes={"InvalidArgument"}, status={400})
    finally:
        for s3 in (world.admin.s3, pg_world.admin.s3):
            empty_and_delete(s3, name)


def test_token_key_file_is_private(world: World, pg_world: World) -> None:
    keys = []
    for w in (world, pg_world):
        path = w.servers[0].data_dir / "token.key"
        assert path.stat().st_mode & 0o777 == 0o600
        keys.append(path.read_text())
    assert keys[0] != keys[1]
