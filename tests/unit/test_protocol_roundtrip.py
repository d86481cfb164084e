"""The protocol engine against botocore itself, in both directions.

botocore's client serializer builds the requests our parser must read; botocore's client parser
must read the XML our serializer writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from botocore.parsers import EC2QueryParser
from botocore.serialize import EC2Serializer

from ec2gw.aws.query_parser import parse_query
from ec2gw.aws.serializer import serialize_error, serialize_response
from ec2gw.aws.spec import operation_model, service_model
from ec2gw.errors import ServiceError
from tests.unit.shape_values import sample

OPERATIONS = [
    "RunInstances", "DescribeInstances", "DescribeInstanceStatus", "TerminateInstances", "StopInstances",
    "StartInstances", "RebootInstances", "GetConsoleOutput", "DescribeInstanceAttribute", "ModifyInstanceAttribute",
    "CreateTags", "DeleteTags", "DescribeTags", "CreateKeyPair", "ImportKeyPair", "DescribeKeyPairs", "DeleteKeyPair",
    "DescribeImages", "RegisterImage", "DeregisterImage", "DescribeImageAttribute", "DescribeSecurityGroups",
    "DescribeRegions", "DescribeAvailabilityZones", "DescribeAccountAttributes", "DescribeInstanceTypes", "CreateImage",
    "DescribeVpcs", "DescribeSubnets", "DescribeNetworkInterfaces", "CreateSecurityGroup", "DeleteSecurityGroup",
    "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress", "DescribeSecurityGroupRules",
]


def _normalize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _flat(serialized: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in serialized["body"].items()]


@pytest.mark.parametrize("name", OPERATIONS)
def test_parser_reads_what_botocore_sends(name: str) -> None:
    op = operation_model("ec2", name)
    params = sample(op.input_shape) if op.input_shape is not None else {}
    serialized = EC2Serializer().serialize_to_request(params, op)
    parsed = parse_query(op, _flat(serialized))
    assert _normalize(parsed) == _normalize(params)


@pytest.mark.parametrize("name", OPERATIONS)
def test_botocore_reads_what_we_write(name: str) -> None:
    op = operation_model("ec2", name)
    if op.output_shape is None:
        body = serialize_response(op, {}, "req-1", "2016-11-15")
        assert b"<return>true</return>" in body
        return
    result = sample(op.output_shape)
    body = serialize_response(op, result, "req-1", "2016-11-15")
    parsed = EC2QueryParser().parse({"body": body, "headers": {}, "status_code": 200}, op.output_shape)
    meta = parsed.pop("ResponseMetadata")
    assert meta["RequestId"] == "req-1"
    assert _normalize(parsed) == _normalize(result)


def test_namespace_follows_the_clients_version() -> None:
    op = operation_model("ec2", "DescribeRegions")
    assert b'xmlns="http://ec2.amazonaws.com/doc/2014-10-01/"' in serialize_response(op, {}, "r", "2014-10-01")
    default = service_model("ec2").api_version
    assert f'xmlns="http://ec2.amazonaws.com/doc/{default}/"'.encode() in serialize_response(op, {}, "r", "garbage<>")


def test_error_envelope_is_read_by_botocore() -> None:
    body = serialize_error("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist <&>", "req-9")
    parsed = EC2QueryParser().parse({"body": body, "headers": {}, "status_code": 400}, None)
    assert parsed["Error"] == {"Code": "InvalidInstanceID.NotFound", "Message": "The instance ID 'i-1' does not exist <&>"}
    assert parsed["ResponseMetadata"]["RequestId"] == "req-9"


def test_missing_required_member_is_missing_parameter() -> None:
    op = operation_model("ec2", "RunInstances")
    with pytest.raises(ServiceError) as err:
        parse_query(op, [("ImageId", "ami-12345678"), ("MinCount", "1")])
    assert err.value.code == "MissingParameter" and "MaxCount" in err.value.message


@pytest.mark.parametrize(
    "params, code",
    [
        ([("MinCount", "one"), ("MaxCount", "1")], "InvalidParameterValue"),
        ([("MinCount", "1"), ("MaxCount", "1"), ("DryRun", "maybe")], "InvalidParameterValue"),
        ([("MinCount", "1"), ("MaxCount", "1"), ("SecurityGroupId.x", "sg-1")], "InvalidParameterValue"),
        ([("MinCount", "1"), ("MaxCount", "1"), ("Placement", "us-east-1a")], "InvalidParameterValue"),
    ],
)
def test_ill_typed_values_are_refused(params: list[tuple[str, str]], code: str) -> None:
    with pytest.raises(ServiceError) as err:
        parse_query(operation_model("ec2", "RunInstances"), params)
    assert err.value.code == code


@pytest.mark.parametrize("name", ["InstanceId.\u00b2", "InstanceId.\u2460", "InstanceId.\u0661", "InstanceId.0",
                                  "InstanceId.99999999999", "InstanceId.-1", "InstanceId.a"])
def test_list_indexes_are_ascii_numbers_from_1(name: str) -> None:
    """'²' or '①' pass str.isdigit() but int() refuses them: that was an InternalError."""
    with pytest.raises(ServiceError) as err:
        parse_query(operation_model("ec2", "DescribeInstances"), [(name, "i-12345678")])
    assert err.value.code == "InvalidParameterValue"


@pytest.mark.parametrize("value", ["2147483648", "-2147483649", "9" * 30, "1_0", "\u0661\u0660", "1e3", ""])
def test_integers_outside_the_wire_range_or_not_ascii_digits_are_refused(value: str) -> None:
    """An EC2 integer is 32-bit: bigger ones reached the database (SQLite refuses ints over 64 bits)."""
    with pytest.raises(ServiceError) as err:
        parse_query(operation_model("ec2", "DescribeInstances"), [("MaxResults", value)])
    assert err.value.code == "InvalidParameterValue"
    assert parse_query(operation_model("ec2", "DescribeInstances"), [("MaxResults", " 2147483647 ")]) == {
        "MaxResults": 2147483647}


def test_lists_are_ordered_by_index_and_unknown_parameters_ignored() -> None:
    op = operation_model("ec2", "DescribeInstances")
    parsed = parse_query(
        op,
        [("InstanceId.2", "i-2"), ("InstanceId.10", "i-10"), ("InstanceId.1", "i-1"), ("Bogus", "x"),
         ("Filter.1.Name", "tag:Name"), ("Filter.1.Value.2", "b"), ("Filter.1.Value.1", "a")],
    )
    assert parsed == {"InstanceIds": ["i-1", "i-2", "i-10"], "Filters": [{"Name": "tag:Name", "Values": ["a", "b"]}]}
