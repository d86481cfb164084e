"""A signed request can be replayed only for a bounded time (issue 12, item 7).

An EC2 Signature Version 2 request signed with ``Expires`` instead of ``Timestamp`` used to be good
until that Expires, e.g. 2099; now an Expires more than ``sigv2_max_expires`` seconds (a setting,
default 1800) past the server time is refused as EC2 refuses an expired request (400 RequestExpired).
SigV4 presigned URLs keep their limit: X-Amz-Expires above 604800 is 400; S3 SigV2 presigned URLs get the same
week (an Expires further ahead is 400 AuthorizationQueryParametersError once the signature holds).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.auth import SigV2Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.live import LiveServer

ACTION = {"Action": "DescribeRegions", "Version": "2016-11-15"}


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def sigv2_url(server: LiveServer, **when: str) -> str:
    """An EC2 query signed by botocore's SigV2 signer with the given Expires or Timestamp."""
    admin = server.admin
    params = {**ACTION, "AWSAccessKeyId": admin.access_key, "SignatureVersion": "2",
              "SignatureMethod": "HmacSHA256", **when}
    url = server.ec2_url + "/"
    _, signature = SigV2Auth(Credentials(admin.access_key, admin.secret_key)).calc_signature(
        AWSRequest(method="GET", url=url), params)
    return f"{url}?{urllib.parse.urlencode({**params, 'Signature': signature})}"


def fetch(url: str) -> tuple[int, str, str]:
    """(status, error code or "", body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, "", resp.read().decode()
    except urllib.error.HTTPError as err:
        body = err.read().decode()
        m = re.search(r"<Code>([^<]*)</Code>", body)
        return err.code, m.group(1) if m else "", body


def test_sigv2_expires_in_2099_is_refused_as_expired(live: LiveServer) -> None:
    status, code, body = fetch(sigv2_url(live, Expires="2099-01-01T00:00:00Z"))
    assert (status, code) == (400, "RequestExpired"), body
    assert "1800 seconds" in body


def test_sigv2_expires_inside_the_window_and_timestamp_still_work(live: LiveServer) -> None:
    now = datetime.now(UTC)
    for when in ({"Expires": iso(now + timedelta(minutes=10))}, {"Expires": iso(now + timedelta(minutes=29))},
                 {"Timestamp": iso(now)}):
        status, _, body = fetch(sigv2_url(live, **when))
        assert status == 200, (when, body)
    status, code, _ = fetch(sigv2_url(live, Expires=iso(now - timedelta(seconds=5))))
    assert (status, code) == (400, "RequestExpired")
    status, code, _ = fetch(sigv2_url(live, Expires=iso(now + timedelta(minutes=31))))
    assert (status, code) == (400, "RequestExpired")


@pytest.fixture(scope="module")
def short_window(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server whose settings allow an Expires at most 60 seconds ahead."""
    srv = LiveServer(Path(tmp_path_factory.mktemp("short-window")), env={"EC2GW_SIGV2_MAX_EXPIRES": "60"}).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_setting_bounds_the_window(short_window: LiveServer) -> None:
    now = datetime.now(UTC)
    status, _, body = fetch(sigv2_url(short_window, Expires=iso(now + timedelta(seconds=45))))
    assert status == 200, body
    status, code, body = fetch(sigv2_url(short_window, Expires=iso(now + timedelta(minutes=5))))
    assert (status, code) == (400, "RequestExpired"), body
    assert "60 seconds" in body


def _presigned_ec2(server: LiveServer, expires: int) -> str:
    admin = server.admin
    req = AWSRequest(method="GET", url=f"{server.ec2_url}/?{urllib.parse.urlencode(ACTION)}")
    SigV4QueryAuth(Credentials(admin.access_key, admin.secret_key), "ec2", "us-east-1", expires=expires).add_auth(req)
    return str(req.url)


def test_sigv4_presigned_urls_keep_their_week(live: LiveServer) -> None:
    s3 = live.client("s3", signature_version="s3v4")
    bucket = f"replay-window-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    week = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604800)
    assert fetch(week)[0] == 200
    longer = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"},
                                       ExpiresIn=604801)
    assert fetch(longer)[:2] == (400, "AuthorizationQueryParametersError")
    assert fetch(_presigned_ec2(live, 604800))[0] == 200
    status, _, body = fetch(_presigned_ec2(live, 604801))
    assert status == 400 and "604800" in body


def test_sigv2_presigned_urls_get_the_same_week(live: LiveServer) -> None:
    """An S3 SigV2 presigned URL (Expires in epoch seconds) was good for as long as it said, e.g. years."""
    s3 = live.client("s3", signature_version="s3", s3={"addressing_style": "path"})
    bucket = f"replay-window-v2-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    week = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=604800)
    assert "Signature=" in week and "X-Amz-Signature" not in week
    assert fetch(week)[0] == 200
    years = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=10 * 365 * 86400)
    status, code, body = fetch(years)
    assert (status, code) == (400, "AuthorizationQueryParametersError"), body
    assert "a week" in body
