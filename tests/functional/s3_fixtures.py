"""Fixtures and helpers for the Cumulus functional tests (imported by tests/functional/test_s3_*.py).

The live server is the session's `server` fixture (tests/functional/conftest.py): `ec2gw serve`
on free loopback ports. Here: a second user, fresh buckets, a TLS server, and signed raw HTTP
requests for the cases no SDK sends (hand-built aws-chunked bodies, cut-off bodies, bad digests).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from tests.live import Creds, LiveServer

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_names = itertools.count()


@pytest.fixture(scope="session")
def alice(server: LiveServer) -> Creds:
    return server.make_user(f"alice{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def bob(server: LiveServer) -> Creds:
    return server.make_user(f"bob{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def s3_alice(server: LiveServer, alice: Creds) -> Any:
    return server.client("s3", alice)


@pytest.fixture(scope="session")
def s3_bob(server: LiveServer, bob: Creds) -> Any:
    return server.client("s3", bob)


@pytest.fixture(scope="session")
def s3_anon(server: LiveServer) -> Any:
    from botocore import UNSIGNED

    return boto3.client("s3", endpoint_url=server.s3_url, region_name="us-east-1",
                        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}))


def new_bucket_name(tag: str = "t") -> str:
    return f"{tag}-{next(_names)}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bucket(s3_alice: Any) -> Iterator[str]:
    """A fresh bucket of alice's, emptied and removed after the test."""
    name = new_bucket_name()
    s3_alice.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3_alice, name)


def empty_and_delete(client: Any, name: str) -> None:
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        for up in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(Bucket=name, Key=up["Key"], UploadId=up["UploadId"])
        client.delete_bucket(Bucket=name)
    except client.exceptions.NoSuchBucket:
        pass


def error_code(exc: Any) -> tuple[str, int]:
    """(Code, HTTP status) of a botocore ClientError."""
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


# --------------------------------------------------------------------------- raw signed HTTP


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def code(self) -> str:
        import re

        m = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return m.group(1).decode() if m else ""


def sign(creds: Creds, method: str, url: str, headers: dict[str, str], payload_hash: str,
         when: datetime | None = None) -> dict[str, str]:
    """Headers of a SigV4-signed S3 request (x-amz-content-sha256 = payload_hash), botocore's way."""
    when = when or datetime.now(UTC)
    parts = urlsplit(url)
    req = AWSRequest(method=method, url=url, headers={
        **headers, "Host": parts.netloc, "x-amz-content-sha256": payload_hash,
        "X-Amz-Date": when.strftime("%Y%m%dT%H%M%SZ")})
    signer = S3SigV4Auth(Credentials(creds.access_key, creds.secret_key), "s3", "us-east-1")
    req.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
    cr = signer.canonical_request(req)
    sts = signer.string_to_sign(req, cr)
    sig = signer.signature(sts, req)
    scope = f"{when:%Y%m%d}/us-east-1/s3/aws4_request"
    req.headers["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                    f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(req))}, "
                                    f"Signature={sig}")
    return dict(req.headers.items())


def signing_key(secret: str, date: str) -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in ("us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def send(url: str, method: str, headers: dict[str, str], body: bytes | None = None, timeout: float = 30,
         address: str | None = None) -> RawResponse:
    """The request as built (Host included in `headers`), to `address` or the URL's host."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(address or parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def signed(server: LiveServer, creds: Creds, method: str, path: str, body: bytes = b"",
           headers: dict[str, str] | None = None, payload_hash: str | None = None) -> RawResponse:
    """One signed request with a plain body (payload hash defaults to the body's real SHA-256)."""
    url = server.s3_url + path
    hdrs = dict(headers or {})
    if body or method in ("PUT", "POST"):
        hdrs.setdefault("Content-Length", str(len(body)))
    all_headers = sign(creds, method, url, hdrs, payload_hash or hashlib.sha256(body).hexdigest())
    return send(url, method, all_headers, body)


def aws_chunked(data: bytes, chunk: int, trailers: dict[str, str] | None = None,
                signer: tuple[bytes, str, str, str] | None = None) -> bytes:
    """An aws-chunked body; with `signer` (key, amz date, scope, seed signature) every chunk is signed."""
    out = bytearray()
    prev = signer[3] if signer else ""
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for piece in pieces:
        if signer:
            key, amz_date, scope, _ = signer
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev, EMPTY_SHA256,
                             hashlib.sha256(piece).hexdigest()])
            prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            out += f"{len(piece):x};chunk-signature={prev}\r\n".encode()
        else:
            out += f"{len(piece):x}\r\n".encode()
        if piece:
            out += piece + b"\r\n"
    for k, v in (trailers or {}).items():
        out += f"{k}:{v}\r\n".encode()
    out += b"\r\n"
    return bytes(out)


def cut_off_put(server: LiveServer, creds: Creds, path: str, announced: int, sent: bytes) -> None:
    """A PUT that announces `announced` bytes, sends `sent` and closes the connection."""
    url = server.s3_url + path
    headers = sign(creds, "PUT", url, {"Content-Length": str(announced)}, "UNSIGNED-PAYLOAD")
    with socket.create_connection(("127.0.0.1", server.s3_port), timeout=10) as sock:
        head = f"PUT {urlsplit(url).path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode() + sent)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass


def temp_files(server: LiveServer) -> list[Path]:
    return list((server.data_dir / "cumulus" / "tmp").iterdir())


def blob_count(server: LiveServer) -> int:
    return sum(1 for _ in (server.data_dir / "cumulus" / "blobs").rglob("*") if _.is_file())


def key_path(key: str) -> str:
    return quote(key, safe="/~")


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(Path(tmp_path_factory.mktemp("ec2gw-tls")), extra_args=["--tls"], scheme="https").start()
    try:
        yield srv
    finally:
        srv.stop()


def tls_client(srv: LiveServer, **config: Any) -> Any:
    creds = srv.admin
    return boto3.client(
        "s3", endpoint_url=srv.s3_url, region_name="us-east-1", aws_access_key_id=creds.access_key,
        aws_secret_access_key=creds.secret_key, verify=str(srv.data_dir / "certs" / "ca.pem"),
        config=Config(retries={"max_attempts": 1}, **config),
    )
