"""Odd but well-formed requests through the real gateway: each got an InternalError (500) once.

Every answer must be an AWS error document with a 4xx status (or a plain success), and a refused
request must leave nothing behind.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from lxml import etree

from tests.unit.ec2_inprocess import World, make_world


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def post(w: World, params: list[tuple[str, str]]) -> tuple[int, str]:
    """A SigV4-signed form POST as alice; (status, error code or "OK")."""
    body = urlencode([("Version", "2016-11-15"), *params]).encode()
    port = w.app.settings.ec2_port
    req = AWSRequest("POST", f"http://127.0.0.1:{port}/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(w.alice.access_key_id, w.alice.secret_access_key), "ec2", "us-east-1").add_auth(req)
    resp = w.ip.client.open("/", method="POST", headers=list(req.headers.items()), data=body,
                            environ_overrides={"SERVER_PORT": str(port), "HTTP_HOST": f"127.0.0.1:{port}"})
    doc = etree.fromstring(resp.get_data())
    return resp.status_code, doc.findtext("Errors/Error/Code") or "OK"


@pytest.mark.parametrize("value", ["9999", "9999-12", "9999-12-31", "9999-12-31T23", "9999-12-31T23:59:59.999", "9999-*"])
def test_launch_time_filter_at_the_end_of_the_calendar(w: World, value: str) -> None:
    """The end of a 9999 time range overflowed datetime (year 10000)."""
    w.add_instance("alice")
    assert post(w, [("Action", "DescribeInstances"), ("Filter.1.Name", "launch-time"), ("Filter.1.Value.1", value)]) == (200, "OK")
    w.add_image("alice", "disk")
    assert post(w, [("Action", "DescribeImages"), ("Filter.1.Name", "creation-date"), ("Filter.1.Value.1", value)]) == (200, "OK")


@pytest.mark.parametrize("value", ["9" * 30, "9223372036854775808", "2147483648", "-2147483649"])
def test_ami_launch_index_filter_with_a_huge_number(w: World, value: str) -> None:
    """SQLite cannot bind integers over 64 bits: OverflowError in the query."""
    w.add_instance("alice")
    params = [("Action", "DescribeInstances"), ("Filter.1.Name", "ami-launch-index"), ("Filter.1.Value.1", value)]
    assert post(w, params) == (400, "InvalidParameterValue")
    params[-1] = ("Filter.1.Value.1", "0")
    assert post(w, params) == (200, "OK")


def test_hundreds_of_wildcard_filter_values_are_filter_limit_exceeded(w: World) -> None:
    values = [(f"Filter.1.Value.{i}", f"*a{i}*") for i in range(1, 1001)]
    assert post(w, [("Action", "DescribeInstances"), ("Filter.1.Name", "tag:x"), *values]) == (400, "FilterLimitExceeded")
    assert post(w, [("Action", "DescribeInstances"), ("Filter.1.Name", "tag:x"), *values[:200]]) == (200, "OK")


@pytest.mark.parametrize("params", [
    [("Action", "CreateKeyPair"), ("KeyName", "a\x00b")],
    [("Action", "DescribeInstances"), ("Filter.1.Name", "instance-type"), ("Filter.1.Value.1", "t2\x00")],
    [("Action", "DescribeKeyPairs"), ("KeyName.1\x00", "x")],
    [("Action", "CreateKeyPair"), ("KeyName", "a\x01b")],
    [("Action", "CreateKeyPair"), ("KeyName", "a\x1fb")],
    [("Action", "CreateKeyPair"), ("KeyName", "k"), ("TagSpecification.1.ResourceType", "key-pair"),
     ("TagSpecification.1.Tag.1.Key", "n"), ("TagSpecification.1.Tag.1.Value", "v\ufffe")],
])
def test_characters_xml_cannot_carry_are_invalid_parameter_value(w: World, params: list[tuple[str, str]]) -> None:
    """NUL fits no EC2 parameter; PostgreSQL refuses it in text (a 500 there), XML cannot carry it back.
    Nor can the other C0 controls (but tab, LF, CR) or U+FFFE/U+FFFF: a key pair made with one would
    be listed under another name (U+FFFD in its place) and could not be deleted by that name."""
    assert post(w, params) == (400, "InvalidParameterValue")
    assert w.a.describe_key_pairs()["KeyPairs"] == []


def test_list_index_that_is_a_unicode_digit(w: World) -> None:
    assert post(w, [("Action", "DescribeInstances"), ("InstanceId.\u00b2", "i-12345678")]) == (400, "InvalidParameterValue")



def test_tab_and_newline_still_pass(w: World) -> None:
    assert post(w, [("Action", "CreateKeyPair"), ("KeyName", "k"), ("TagSpecification.1.ResourceType", "key-pair"),
                    ("TagSpecification.1.Tag.1.Key", "n"), ("TagSpecification.1.Tag.1.Value", "a\tb\nc\r")]) == (200, "OK")
    tags = w.a.describe_key_pairs(KeyNames=["k"])["KeyPairs"][0]["Tags"]
    assert tags == [{"Key": "n", "Value": "a\tb\nc\r"}]


def test_client_token_beyond_ascii_is_invalid_parameter_value(w: World) -> None:
    assert post(w, [("Action", "RunInstances"), ("ImageId", "ami-12345678"), ("MinCount", "1"), ("MaxCount", "1"),
                    ("ClientToken", "t\u00e9")]) == (400, "InvalidParameterValue")
