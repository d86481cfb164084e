"""Property: random Query parameters at every implemented action give a well-formed AWS answer.

Requests are signed with botocore's SigV4 and go through the real gateway (parse, authenticate,
dispatch, serialize). Whatever the parameters, the answer is a 2xx/4xx with an XML document:
a `...Response` with a requestId, or AWS's error envelope. Never a 500.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ListShape, Shape, StructureShape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from ec2gw.aws.query_parser import wire_name
from ec2gw.aws.spec import operation_model
from tests.unit.ec2_inprocess import InProcess, make_app


def wire_paths(shape: Shape | None, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(wire path, scalar type) for every scalar reachable in `shape`, lists at index 1 and 2."""
    if shape is None or depth > 5:
        return []
    if isinstance(shape, StructureShape):
        out: list[tuple[str, str]] = []
        for name, member in shape.members.items():
            out += wire_paths(member, f"{prefix}{wire_name(member, name)}.", depth + 1)
        return out
    if isinstance(shape, ListShape):
        return wire_paths(shape.member, f"{prefix}1.", depth + 1) + wire_paths(shape.member, f"{prefix}2.", depth + 1)
    return [(prefix.rstrip("."), shape.type_name)]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[InProcess, Any]:
    ip = make_app(Path(tmp_path_factory.mktemp("fuzz")))
    user = ip.make_user("fuzzer")
    return ip, user


def _values(kind: str) -> st.SearchStrategy[str]:
    common = st.sampled_from(["", "true", "false", "0", "-1", "99999999999999999999", "i-12345678", "i-0123456789abcdef0",
                              "ami-12345678", "*", "\u00e9\u4e2d", "a" * 300, "us-east-1a", "t2.micro", "running"])
    by_kind = {
        "integer": st.integers(-5, 20000).map(str),
        "long": st.integers(-5, 2**40).map(str),
        "boolean": st.sampled_from(["true", "false", "TRUE", "yes"]),
        "timestamp": st.sampled_from(["2024-01-01T00:00:00Z", "1700000000", "not-a-time"]),
        "blob": st.sampled_from(["aGVsbG8=", "%%%", ""]),
    }
    return st.one_of(common, by_kind.get(kind, st.text(max_size=40)))


ACTIONS = sorted(__import__("ec2gw.app", fromlist=["load_providers"]).load_providers().names())


@st.composite
def query(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]]]:
    action = draw(st.sampled_from(ACTIONS))
    op = operation_model("ec2", action)
    paths = wire_paths(op.input_shape)
    params: list[tuple[str, str]] = [("Action", action), ("Version", "2016-11-15")]
    if paths:
        chosen = draw(st.lists(st.sampled_from(paths), max_size=8, unique=True))
        for path, kind in chosen:
            params.append((path, draw(_values(kind))))
    params += draw(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=12)), max_size=2))
    return action, params


def _send(ip: InProcess, user: Any, body: bytes) -> Any:
    url = f"http://127.0.0.1:{ip.app.settings.ec2_port}/"
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(user.access_key_id, user.secret_access_key), "ec2", "us-east-1").add_auth(req)
    return ip.client.open(path="/", method="POST", data=body, headers=list(req.headers.items()),
                          environ_overrides={"SERVER_PORT": str(ip.app.settings.ec2_port),
                                             "HTTP_HOST": f"127.0.0.1:{ip.app.settings.ec2_port}"})


def _check(resp: Any, action: str) -> None:
    assert resp.status_code < 500, resp.get_data(as_text=True)
    doc = etree.fromstring(resp.get_data())
    if resp.status_code == 200:
        assert doc.tag.endswith(f"{action}Response")
        assert doc.find("{*}requestId") is not None
    else:
        assert doc.tag == "Response"
        assert doc.findtext("Errors/Error/Code")
        assert doc.findtext("Errors/Error/Message")
        assert doc.findtext("RequestID")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(q=query())
def test_random_parameters_get_a_well_formed_answer(env: tuple[InProcess, Any], q: tuple[str, list[tuple[str, str]]]) -> None:
    ip, user = env
    action, params = q
    _check(_send(ip, user, urlencode(params).encode()), action)


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00garbage", b"Action=DescribeInstances&InstanceId.1=%ff%fe", b"Action=NoSuchThing",
     b"Action=DescribeInstances&Filter.1.Name=bogus&Filter.1.Value.1=x", b"&&&===", b"Action="],
)
def test_garbage_bodies_get_an_error_document(env: tuple[InProcess, Any], body: bytes) -> None:
    ip, user = env
    resp = _send(ip, user, body)
    assert 400 <= resp.status_code < 500
    doc = etree.fromstring(resp.get_data())
    assert doc.findtext("Errors/Error/Code") in {"InvalidParameterValue", "InvalidAction", "MissingAction"}
