"""boto3 EC2 clients that talk to an in-process App through the real gateway, without sockets.

botocore builds and signs each request as usual; a `before-send` hook hands the prepared request to
the WSGI app with werkzeug's test client and gives botocore the response to parse. So every request
goes through parsing, SigV4 verification, dispatch and serialization exactly as over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
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

    def ec2(self, user: accounts.UserRecord, validate: bool = True) -> Any:
        """A client for `user`; validate=False lets it send values botocore would refuse itself."""
        c = boto3.client(
            "ec2",
            endpoint_url=f"http://127.0.0.1:{self.app.settings.ec2_port}",
            region_name="us-east-1",
            aws_access_key_id=user.access_key_id,
            aws_secret_access_key=user.secret_access_key,
            config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
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


@dataclass
class World:
    """Two users, alice and bob, each with a client, on one in-process App."""

    ip: InProcess
    alice: accounts.UserRecord
    bob: accounts.UserRecord
    a: Any  # alice's EC2 client
    b: Any  # bob's EC2 client

    @property
    def app(self) -> App:
        return self.ip.app

    def user_id(self, name: str) -> int:
        with self.app.db.session() as s:
            return accounts.get_user(s, name).id

    def add_image(self, owner: str, name: str, *, kind: str = "machine", public: bool = False, **kw: Any) -> str:
        """An image as registration would leave it: its row and its owner's 1 KiB object in Cumulus
        (a launch checks that the owner may still read it)."""
        import io

        from ec2gw import ids
        from ec2gw.db.models import Image

        prefix = {"machine": "ami", "kernel": "aki", "ramdisk": "ari"}[kind]
        image_id = ids.new_id(prefix)
        owner_id = self.user_id(owner)
        self.app.cumulus.put_file(owner_id, "Repo", f"VMS/{owner}/{name}", io.BytesIO(b"\0" * 1024), 1024)
        with self.app.db.session(write=True) as s:
            s.add(Image(id=image_id, owner_id=owner_id, name=name, kind=kind, is_public=public,
                        location=f"Repo/VMS/{owner}/{name}", size_bytes=1024, **kw))
        return image_id

    def add_instance(self, owner: str, *, state: str = "running", terminated_seconds_ago: float | None = None) -> str:
        """An instance row (no hypervisor involved), e.g. to tag it."""
        from datetime import datetime, timedelta

        from ec2gw import ids
        from ec2gw.db.models import Instance, Reservation

        iid, rid = ids.new_id("i"), ids.new_id("r")
        with self.app.db.session(write=True) as s:
            uid = accounts.get_user(s, owner).id
            s.add(Reservation(id=rid, owner_id=uid))
            s.flush()
            terminated_at = None
            if terminated_seconds_ago is not None:
                terminated_at = datetime.now(UTC) - timedelta(seconds=terminated_seconds_ago)
            s.add(Instance(id=iid, owner_id=uid, reservation_id=rid, image_id="ami-12345678", instance_type="m1.small",
                           vcpus=1, memory_mib=512, state=state, availability_zone="us-east-1a",
                           terminated_at=terminated_at))
        return iid


def make_world(data_dir: Path, **settings: Any) -> World:
    """As a started service has it: the administrator (who owns the image bucket), then alice and bob."""
    ip = make_app(data_dir, **settings)
    with ip.app.db.session(write=True) as s:
        accounts.ensure_admin(s)
    alice, bob = ip.make_user("alice"), ip.make_user("bob")
    return World(ip, alice, bob, ip.ec2(alice), ip.ec2(bob))


def error_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str]:
    """(code, message) of the ClientError the call raises; fails the test if it raises none."""
    from botocore.exceptions import ClientError

    try:
        call(*args, **kwargs)
    except ClientError as exc:
        return exc.response["Error"]["Code"], exc.response["Error"]["Message"]
    raise AssertionError(f"{getattr(call, '__name__', call)} succeeded, an error was expected")


def at_once(w: World, user: accounts.UserRecord, calls: list[Callable[[Any], Any]], timeout: float = 120) -> list[Any]:
    """Each call, given an EC2 client of `user` of its own, on a thread of its own (so in a
    transaction of its own), all released together; what each returned, or the code of the error it
    raised, in the order they finished. Fails the test if one of them hangs."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = []

    def run(call: Callable[[Any], Any]) -> None:
        client = InProcess(w.app, Client(w.app.wsgi)).ec2(user)
        barrier.wait(30)
        try:
            outcomes.append(call(client))
        except Exception as exc:  # noqa: BLE001  (the code is what the test looks at)
            outcomes.append(getattr(exc, "response", {}).get("Error", {}).get("Code", repr(exc)))

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a call hung"
    return outcomes
