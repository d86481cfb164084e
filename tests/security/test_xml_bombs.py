"""XML bombs in every XML body Cumulus reads: entity expansion (billion laughs), external entities
(local files, URLs on loopback), external DTDs, parameter entities, XInclude, deep nesting.

The operations that read an XML body are taken from the server's registry and botocore's model
(an operation whose payload is a structure), so a new one is attacked too. Each bomb must be a
quick 4xx S3 error that neither reads a file, nor opens a connection, nor changes anything; the
server answers normally afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest

from storage.api import registry as s3_registry
from tests.functional.s3_fixtures import RawResponse, empty_and_delete, new_bucket_name, signed
from tests.security.conftest import Tenant

S3_MODEL = botocore.session.get_session().get_service_model("s3")


def xml_operations() -> dict[str, str]:
    """operation -> the root element of its XML body, for every implemented operation that reads one."""
    out = {}
    for name in s3_registry.names():
        shape = S3_MODEL.operation_model(name).input_shape
        payload = shape.serialization.get("payload") if shape is not None else None
        if payload and shape.members[payload].type_name == "structure":
            member = shape.members[payload]
            out[name] = str(member.serialization.get("name", payload))
    return out


XML_OPERATIONS = xml_operations()


class Listener:
    """A loopback TCP listener that counts connections (an external entity fetched would be one)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def bombs(root: str, port: int) -> dict[str, str]:
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    return {
        "billion-laughs": f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY lol0 "lol">{lol}]>'
                          f"<{root} {ns}><Key>&lol9;</Key></{root}>",
        "quadratic": f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY a "{"x" * 100_000}">]>'
                     f"<{root} {ns}><Key>{'&a;' * 30}</Key></{root}>",
        "xxe-file": f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                    f"<{root} {ns}><Object><Key>&xxe;</Key></Object><Key>&xxe;</Key></{root}>",
        "xxe-url": f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/e">]>'
                   f"<{root} {ns}><Key>&xxe;</Key></{root}>",
        "external-dtd": f'<?xml version="1.0"?><!DOCTYPE {root} SYSTEM "http://127.0.0.1:{port}/x.dtd">'
                        f"<{root} {ns}/>",
        "parameter-entity": f'<?xml version="1.0"?><!DOCTYPE {root} [<!ENTITY % p SYSTEM '
                            f'"http://127.0.0.1:{port}/p.dtd"> %p;]><{root} {ns}/>',
        "xinclude": f'<?xml version="1.0"?><{root} {ns} xmlns:xi="http://www.w3.org/2001/XInclude">'
                    f'<Key><xi:include href="file:///etc/passwd" parse="text"/></Key>'
                    f'<xi:include href="http://127.0.0.1:{port}/x"/></{root}>',
        "deep-nesting": f"<{root} {ns}>" + "<a>" * 50_000 + "</a>" * 50_000 + f"</{root}>",
        "schema-location": f'<{root} {ns} xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                           f'xsi:schemaLocation="http://s3.amazonaws.com/doc/2006-03-01/ '
                           f'http://127.0.0.1:{port}/s.xsd"/>',
        "utf16-entity": "",  # filled below: the same external entity, UTF-16 encoded
    }


@pytest.fixture(scope="module")
def targets(alice: Tenant) -> Iterator[dict[str, Any]]:
    bucket = new_bucket_name("bombs")
    alice.s3.create_bucket(Bucket=bucket)
    alice.s3.put_object(Bucket=bucket, Key="keep", Body=b"kept")
    upload = alice.s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    alice.s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"part")
    yield {"bucket": bucket, "upload": upload}
    empty_and_delete(alice.s3, bucket)


def request_for(op: str, bucket: str, upload: str, fresh: str) -> tuple[str, str]:
    """(method, path?query) of `op` on alice's bucket (a fresh bucket name for CreateBucket)."""
    http = S3_MODEL.operation_model(op).http
    uri = http["requestUri"]
    path = uri.replace("{Bucket}", fresh if op == "CreateBucket" else bucket).replace("{Key+}", "mp")
    if op == "CompleteMultipartUpload":
        path += ("&" if "?" in path else "?") + f"uploadId={upload}"
    if op == "PutObjectAcl":
        path = path.replace("/mp", "/keep")
    return http["method"], path


def test_the_xml_operations_are_found() -> None:
    assert {"PutBucketAcl", "PutObjectAcl", "CompleteMultipartUpload", "DeleteObjects", "CreateBucket"} <= set(
        XML_OPERATIONS), XML_OPERATIONS


@pytest.mark.parametrize("op", sorted(XML_OPERATIONS))
@pytest.mark.parametrize("bomb", sorted(bombs("R", 1)))
def test_xml_bombs_are_refused(live: Any, alice: Tenant, targets: dict[str, Any], listener: Listener, op: str,
                               bomb: str) -> None:
    root = XML_OPERATIONS[op]
    fresh = new_bucket_name("bomb")
    method, path = request_for(op, targets["bucket"], targets["upload"], fresh)
    if bomb == "utf16-entity":
        text = (f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE {root} [<!ENTITY xxe SYSTEM '
                f'"file:///etc/passwd">]><{root}><Key>&xxe;</Key></{root}>')
        body = text.encode("utf-16")
    else:
        body = bombs(root, listener.port)[bomb].encode()
    before = listener.connections
    headers = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(), "Content-Type": "application/xml"}
    started = time.monotonic()
    res: RawResponse = signed(live, alice, method, "/" + path.lstrip("/"), body=body, headers=headers)
    took = time.monotonic() - started
    if bomb in ("schema-location", "xinclude"):  # no DTD, no entity: the body may be taken, but nothing is fetched
        assert res.status < 500, (op, bomb, res.status, res.body[:400])
        if op == "CreateBucket" and res.status == 200:
            alice.s3.delete_bucket(Bucket=fresh)
    else:
        assert 400 <= res.status < 500 and res.code, (op, bomb, res.status, res.body[:400])
    assert b"root:" not in res.body and b"lollol" not in res.body, (op, bomb, res.body[:400])
    assert took < 10, f"{op} {bomb}: {took:.1f} s"
    time.sleep(0.05)
    assert listener.connections == before, f"{op} {bomb}: the server connected to the listener"
    s3 = alice.s3
    assert s3.get_object(Bucket=targets["bucket"], Key="keep")["Body"].read() == b"kept"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=targets["bucket"], Key="mp",
                                                   UploadId=targets["upload"]).get("Parts", [])] == [1]
    assert [g["Permission"] for g in s3.get_bucket_acl(Bucket=targets["bucket"])["Grants"]] == ["FULL_CONTROL"]
    assert [g["Permission"] for g in s3.get_object_acl(Bucket=targets["bucket"], Key="keep")["Grants"]] == [
        "FULL_CONTROL"]
    assert fresh not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
