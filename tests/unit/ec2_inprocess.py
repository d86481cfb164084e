"""boto3 EC2 clients that talk to an in-process App through the real gateway, without sockets.

botocore builds and signs each request as usual; a `before-send` hook hands the prepared request to
the WSGI app with werkzeug's test client and gives botocore the response to parse. So every request
goes through parsing, SigV4 verification, dispatch and serialization exactly as over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config
from werkzeug.test import Client

from ec2gw import accounts
from ec2gw.app import App
from ec2gw.config import Settings


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, *_: Any, **__: Any) -> Any:
        yield self._body


@dataclass
class InProcess:
    app: App
    client: Client

    def send(self, request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        host_port = request.url.split("/")[2]
        path = "/" + request.url.split("/", 3)[3] if request.url.count("/") >= 3 else "/"
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        resp = self.client.open(
            path=path,
            method=request.method,
            headers=[(k, v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()],
            data=body,
            environ_overrides={"SERVER_PORT": str(self.app.settings.ec2_port), "HTTP_HOST": host_port},
        )
        return AWSResponse(request.url, resp.status_code, dict(resp.headers), _Raw(resp.get_data()))

    def ec2(self, user: accounts.UserRecord) -> Any:
        c = boto3.client(
            "ec2",
            endpoint_url=f"http://127.0.0.1:{self.app.settings.ec2_port}",
            region_name="us-east-1",
            aws_access_key_id=user.access_key_id,
            aws_secret_access_key=user.secret_access_key,
            config=Config(retries={"max_attempts": 1}),
        )
        c.meta.events.register("before-send.ec2", self.send)
        return c

    def make_user(self, name: str, **kw: Any) -> accounts.UserRecord:
        with self.app.db.session(write=True) as s:
            return accounts.create_user(s, name, **kw)


def make_app(data_dir: Path, **settings: Any) -> InProcess:
    app = App(Settings(data_dir=data_dir, **settings))
    app.db.create_schema()
    return InProcess(app, Client(app.wsgi))
