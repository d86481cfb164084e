"""The running total of each user's Cumulus bytes (storage/usage.py) and the quota check made with it.

Every S3 path that adds, replaces or removes bytes goes through boto3 and the real gateway (in
process); after each step the total must equal a recount from the object and part rows, and the
storage quota must hold at commit, under concurrency too.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import text
from werkzeug.test import Client

from ec2gw import accounts, quotas
from ec2gw.app import App
from ec2gw.config import Settings
from storage import usage
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)

MiB = 1024 * 1024


class _Raw(io.BytesIO):
    """A response body botocore can stream() or read() (GetObject)."""

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self.read()


class S3World:
    def __init__(self, data_dir: Path, **settings: Any) -> None:
        self.app = App(Settings(data_dir=data_dir, **settings))
        self.app.db.create_schema()
        self.users: dict[str, accounts.UserRecord] = {}
        self.ids: dict[str, int] = {}
        with self.app.db.session(write=True) as s:
            for name in ("alice", "bob"):
                self.users[name] = accounts.create_user(s, name)
                self.ids[name] = accounts.get_user(s, name).id

    def send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        client = Client(self.app.wsgi)  # one per request: clients are used from several threads
        path = "/" + request.url.split("/", 3)[3]
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        resp = client.open(path=path, method=request.method, data=body or b"",
                           headers=[(k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()],
                           environ_overrides={"SERVER_PORT": str(self.app.settings.s3_port)})
        return AWSResponse(request.url, resp.status_code, dict(resp.headers), _Raw(resp.get_data()))

    def s3(self, name: str) -> Any:
        user = self.users[name]
        c = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.app.settings.s3_port}", region_name="us-east-1",
                         aws_access_key_id=user.access_key_id, aws_secret_access_key=user.secret_access_key,
                         config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}))
        c.meta.events.register("before-send.s3", self.send)
        return c

    def totals(self) -> dict[int, int]:
        """The running totals, after checking they equal a recount from the rows."""
        with self.app.db.session() as s:
            kept = {uid: n for uid, n in s.execute(text("SELECT user_id, bytes FROM s3_usage")) if n}
        with self.app.db.session(write=True) as s:
            counted = usage.recount(s)
        assert kept == {uid: n for uid, n in counted.items() if n}
        return kept

    def total(self, name: str) -> int:
        return self.totals().get(self.ids[name], 0)


@pytest.fixture
def w(tmp_path: Path) -> Any:
    world = S3World(tmp_path)
    yield world
    world.app.db.dispose()


def test_put_overwrite_copy_delete(w: S3World) -> None:
    a = w.s3("alice")
    a.create_bucket(Bucket="u-a")
    a.put_object(Bucket="u-a", Key="k", Body=b"x" * 1000)
    assert w.total("alice") == 1000
    a.put_object(Bucket="u-a", Key="k", Body=b"x" * 300)  # an overwrite counts the new size only
    assert w.total("alice") == 300
    a.put_object(Bucket="u-a", Key="k2", Body=b"y" * 2 * MiB)  # the pipelined (large body) path
    assert w.total("alice") == 300 + 2 * MiB
    a.copy_object(Bucket="u-a", Key="k3", CopySource="u-a/k")
    assert w.total("alice") == 600 + 2 * MiB
    a.delete_object(Bucket="u-a", Key="k2")
    assert w.total("alice") == 600
    a.delete_objects(Bucket="u-a", Delete={"Objects": [{"Key": "k"}, {"Key": "k3"}, {"Key": "missing"}]})
    assert w.total("alice") == 0


def test_other_users_bytes_are_their_own(w: S3World) -> None:
    a, b = w.s3("alice"), w.s3("bob")
    a.create_bucket(Bucket="shared-rw", ACL="public-read-write")
    b.put_object(Bucket="shared-rw", Key="by-bob", Body=b"b" * 500)
    assert w.total("bob") == 500 and w.total("alice") == 0
    a.put_object(Bucket="shared-rw", Key="by-bob", Body=b"a" * 200)  # alice replaces bob's object
    assert w.total("bob") == 0 and w.total("alice") == 200
    b.delete_object(Bucket="shared-rw", Key="by-bob")
    assert w.total("alice") == 0


def test_multipart_parts_count_until_complete_or_abort(w: S3World) -> None:
    a = w.s3("alice")
    a.create_bucket(Bucket="mpu")
    up = a.create_multipart_upload(Bucket="mpu", Key="obj")["UploadId"]
    e1 = a.upload_part(Bucket="mpu", Key="obj", UploadId=up, PartNumber=1, Body=b"1" * 5 * MiB)["ETag"]
    a.upload_part(Bucket="mpu", Key="obj", UploadId=up, PartNumber=2, Body=b"2" * 100)
    assert w.total("alice") == 5 * MiB + 100
    e2 = a.upload_part(Bucket="mpu", Key="obj", UploadId=up, PartNumber=2, Body=b"2" * 40)["ETag"]  # replaced
    a.upload_part(Bucket="mpu", Key="obj", UploadId=up, PartNumber=3, Body=b"3" * 70)  # left out of Complete
    assert w.total("alice") == 5 * MiB + 110
    a.complete_multipart_upload(Bucket="mpu", Key="obj", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
    assert w.total("alice") == 5 * MiB + 40
    up2 = a.create_multipart_upload(Bucket="mpu", Key="obj")["UploadId"]
    e = a.upload_part(Bucket="mpu", Key="obj", UploadId=up2, PartNumber=1, Body=b"z" * 10)["ETag"]
    assert w.total("alice") == 5 * MiB + 50
    a.complete_multipart_upload(Bucket="mpu", Key="obj", UploadId=up2, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e}]})  # replaces the first multipart object
    assert w.total("alice") == 10
    up3 = a.create_multipart_upload(Bucket="mpu", Key="gone")["UploadId"]
    a.upload_part(Bucket="mpu", Key="gone", UploadId=up3, PartNumber=1, Body=b"g" * 1000)
    assert w.total("alice") == 1010
    a.abort_multipart_upload(Bucket="mpu", Key="gone", UploadId=up3)
    assert w.total("alice") == 10
    a.create_bucket(Bucket="mpu2")
    up4 = a.create_multipart_upload(Bucket="mpu2", Key="left")["UploadId"]
    a.upload_part(Bucket="mpu2", Key="left", UploadId=up4, PartNumber=1, Body=b"l" * 777)
    assert w.total("alice") == 787
    a.delete_bucket(Bucket="mpu2")  # unfinished uploads go with the bucket
    assert w.total("alice") == 10


def test_quota_is_checked_at_commit_and_frees_with_deletes(w: S3World) -> None:
    with w.app.db.session(write=True) as s:
        quotas.set_quota(s, "alice", storage_bytes=1000)
    a = w.s3("alice")
    a.create_bucket(Bucket="quo")
    a.put_object(Bucket="quo", Key="a", Body=b"a" * 600)
    with pytest.raises(ClientError) as err:
        a.put_object(Bucket="quo", Key="b", Body=b"b" * 401)  # small bodies are checked at commit only
    assert err.value.response["Error"]["Code"] == "QuotaExceeded"
    assert [o["Key"] for o in a.list_objects_v2(Bucket="quo")["Contents"]] == ["a"]
    assert w.total("alice") == 600
    assert not list((w.app.settings.data_dir / "cumulus" / "tmp").iterdir())
    a.put_object(Bucket="quo", Key="a", Body=b"a" * 1000)  # an overwrite counts only what it adds
    assert w.total("alice") == 1000
    with w.app.db.session(write=True) as s:
        quotas.set_quota(s, "alice", storage_bytes=500)  # now over quota: shrinking is still allowed
    a.put_object(Bucket="quo", Key="a", Body=b"a" * 700)
    with pytest.raises(ClientError):
        a.put_object(Bucket="quo", Key="a", Body=b"a" * 701)
    up = a.create_multipart_upload(Bucket="quo", Key="m")["UploadId"]
    with pytest.raises(ClientError) as err:
        a.upload_part(Bucket="quo", Key="m", UploadId=up, PartNumber=1, Body=b"p" * 10)
    assert err.value.response["Error"]["Code"] == "QuotaExceeded"
    a.delete_object(Bucket="quo", Key="a")
    e = a.upload_part(Bucket="quo", Key="m", UploadId=up, PartNumber=1, Body=b"p" * 400)["ETag"]
    a.complete_multipart_upload(Bucket="quo", Key="m", UploadId=up, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": e}]})
    assert w.total("alice") == 400
    with w.app.db.session() as s:
        assert quotas.report(s, w.app.settings, "alice", usage.total)["usage"]["storage_bytes"] == 400


def _race(w: S3World, threads: int = 8, size: int = 300) -> list[str]:
    """`threads` PUTs of `size` bytes by alice at the same moment, each in its own thread."""
    barrier = threading.Barrier(threads)
    outcomes: list[str] = []

    def put(i: int) -> None:
        c = w.s3("alice")
        barrier.wait(30)
        try:
            c.put_object(Bucket="race", Key=f"k{i}", Body=b"r" * size)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(exc.response["Error"]["Code"])

    pool = [threading.Thread(target=put, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(120)
    return sorted(outcomes)


def test_concurrent_puts_never_pass_the_quota(w: S3World) -> None:
    with w.app.db.session(write=True) as s:
        quotas.set_quota(s, "alice", storage_bytes=1000)
    w.s3("alice").create_bucket(Bucket="race")
    assert _race(w) == ["QuotaExceeded"] * 5 + ["ok"] * 3
    assert w.total("alice") == 900


@pytest.mark.slow
def test_concurrent_puts_never_pass_the_quota_postgresql(tmp_path: Path, postgres_url: str) -> None:  # noqa: F811
    world = S3World(tmp_path, database_url=postgres_url)
    try:
        with world.app.db.session(write=True) as s:
            quotas.set_quota(s, "alice", storage_bytes=1000)
        world.s3("alice").create_bucket(Bucket="race")
        assert _race(world) == ["QuotaExceeded"] * 5 + ["ok"] * 3
        assert world.total("alice") == 900
        with world.app.db.session(write=True) as s:
            quotas.set_quota(s, "alice", storage_bytes="default")
        a = world.s3("alice")
        a.delete_objects(Bucket="race", Delete={"Objects": [{"Key": f"k{i}"} for i in range(8)]})
        assert world.total("alice") == 0
        test_other_users_bytes_are_their_own(world)  # the row locks and upserts of PostgreSQL
        test_multipart_parts_count_until_complete_or_abort(world)
    finally:
        world.app.db.dispose()


def test_rows_from_before_the_total_are_counted(w: S3World) -> None:
    """Objects stored without a running total (a database that predates it) count all the same."""
    from storage.models import Bucket, Object

    with w.app.db.session(write=True) as s:
        bucket = Bucket(name="old-rows", owner_id=w.ids["alice"])
        s.add(bucket)
        s.flush()
        s.add(Object(bucket_id=bucket.id, key="old", owner_id=w.ids["alice"], size=5000, etag="x",
                     segments_json="[]"))
    with w.app.db.session() as s:
        assert usage.total(s, w.ids["alice"]) == 5000  # no row yet: counted from the objects
    w.s3("alice").put_object(Bucket="old-rows", Key="new", Body=b"n" * 10)
    assert w.total("alice") == 5010
