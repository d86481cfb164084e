"""Cumulus runs on what it is given when it is built (storage/host.py), not on the EC2 application.

The gateway here is built on a small host of the test's own (settings, database, a caller lookup,
a storage quota rule), no ec2gw.app.App: who may call and how many bytes they may store are the
host's answers, driven through boto3 in process.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import null
from sqlalchemy.engine import Connection
from werkzeug.test import Client

from ec2gw import accounts
from ec2gw.aws.gateway import Principal
from ec2gw.config import Settings
from ec2gw.db.session import Database
from ec2gw.errors import ServiceError
from storage.gateway import S3Gateway


class _Raw(io.BytesIO):
    def stream(self, *_: Any, **__: Any) -> Any:
        yield self.read()


class TenBytes:
    """A quota rule of the test's own: everybody may hold 10 bytes."""

    def limit(self, conn: Connection, user_id: int) -> int | None:
        return 10

    def limit_columns(self, user_id: Any) -> tuple[Any, Any]:
        return null(), null()

    def effective_limit(self, user_value: int | None, group_value: int | None) -> int | None:
        return 10

    def exceeded(self, limit: int, used: int, extra_bytes: int) -> ServiceError:
        return ServiceError("QuotaExceeded", f"the test host allows {limit} bytes, not {used + extra_bytes}", 403)


@dataclass
class Host:
    settings: Settings
    db: Database
    storage_quota: TenBytes = field(default_factory=TenBytes)
    #: the access keys this host answers for
    known: dict[str, Principal] = field(default_factory=dict)

    def principal_lookup(self, access_key: str) -> Principal | None:
        return self.known.get(access_key)


@pytest.fixture
def world(tmp_path: Path) -> Any:
    settings = Settings(data_dir=tmp_path)
    db = Database(settings.db_url)
    db.create_schema()
    host = Host(settings, db)
    with db.session(write=True) as s:
        users = {name: accounts.create_user(s, name) for name in ("alice", "bob")}
        alice = accounts.get_user(s, "alice")
        host.known[alice.access_key] = Principal(alice.id, alice.name, alice.account_id, alice.secret_key,
                                                 alice.is_admin, alice.group)
    gateway = S3Gateway(host)

    def client(name: str) -> Any:
        user = users[name]
        c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{settings.s3_port}", region_name="us-east-1",
                         aws_access_key_id=user.access_key_id, aws_secret_access_key=user.secret_access_key,
                         config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))

        def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
            body = request.body.read() if hasattr(request.body, "read") else request.body
            resp = Client(gateway).open(
                path="/" + request.url.split("/", 3)[3], method=request.method, data=body or b"",
                headers=[(k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()],
                environ_overrides={"SERVER_PORT": str(settings.s3_port)})
            return AWSResponse(request.url, resp.status_code, dict(resp.headers), _Raw(resp.get_data()))

        c.meta.events.register("before-send.s3", send)
        return c

    yield client
    db.dispose()


def test_the_hosts_quota_rule_is_the_one_cumulus_applies(world: Any) -> None:
    a = world("alice")
    a.create_bucket(Bucket="given")
    a.put_object(Bucket="given", Key="ten", Body=b"x" * 10)
    assert a.get_object(Bucket="given", Key="ten")["Body"].read() == b"x" * 10
    with pytest.raises(ClientError) as err:
        a.put_object(Bucket="given", Key="one-more", Body=b"y")
    assert err.value.response["Error"]["Code"] == "QuotaExceeded"
    assert "the test host allows 10 bytes, not 11" in err.value.response["Error"]["Message"]
    a.delete_object(Bucket="given", Key="ten")
    a.put_object(Bucket="given", Key="one-more", Body=b"y")  # room again


def test_callers_are_whom_the_host_knows(world: Any) -> None:
    """bob is a user in the database, but the host does not answer for his key: refused."""
    with pytest.raises(ClientError) as err:
        world("bob").list_buckets()
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert world("alice").list_buckets()["Buckets"] == []
