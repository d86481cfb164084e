"""EC2 Query requests -> operation input, by walking the operation's input shape.

The wire name of a member is its `queryName`, else its capitalized `locationName`, else its
member name, as botocore's EC2Serializer writes them; list elements are `Name.1`, `Name.2`, ...
Unknown parameters are ignored (clients add optional parameters freely); values that do not fit
their shape are InvalidParameterValue, absent required members MissingParameter.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from ec2gw.errors import ServiceError, missing_parameter

#: parameters that belong to the protocol or to authentication, never to the operation
PROTOCOL_PARAMS = frozenset(
    {
        "Action", "Version", "AWSAccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
        "Timestamp", "Expires", "SecurityToken", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
        "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token",
    }
)

#: the range of the protocol's integer types (32- and 64-bit signed, as AWS reads them)
_INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}

_Node = dict[Any, Any]  # segment -> node; the leaf value lives under the key None


def wire_name(shape: Shape, member_name: str) -> str:
    ser = shape.serialization
    if "queryName" in ser:
        return str(ser["queryName"])
    if "name" in ser:
        name = str(ser["name"])
        return name[0].upper() + name[1:]
    return member_name


def parse_query(operation: OperationModel, params: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Turn flat Query parameters into the nested input of `operation`, keyed by member names."""
    tree: _Node = {}
    for key, value in params:
        if key in PROTOCOL_PARAMS or not key:
            continue
        node = tree
        for seg in key.split("."):
            node = node.setdefault(seg, {})
            if not isinstance(node, dict):
                break
        else:
            node[None] = value
    shape = operation.input_shape
    if shape is None:
        return {}
    return _structure(shape, tree, "")


def _child(node: _Node, name: str) -> _Node | None:
    found = node.get(name)
    if found is not None:
        return found
    lower = name.lower()
    for key, value in node.items():
        if key is not None and key.lower() == lower:
            return value
    return None


def _structure(shape: StructureShape, node: _Node, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for member_name, member_shape in shape.members.items():
        wire = wire_name(member_shape, member_name)
        child = _child(node, wire)
        if child is None and wire != member_name:
            child = _child(node, member_name)
        if child is None:
            continue
        out[member_name] = _value(member_shape, child, f"{path}{wire}")
    for required in shape.required_members:
        if required not in out:
            raise missing_parameter(f"{path}{wire_name(shape.members[required], required)}")
    return out


def _value(shape: Shape, node: _Node, path: str) -> Any:
    if isinstance(shape, StructureShape):
        if None in node:
            raise ServiceError(
                "InvalidParameterValue",
                f"Parameter {path} is a structure: send its members ({path}.Member=...), not a value.",
            )
        return _structure(shape, node, path + ".")
    if isinstance(shape, ListShape):
        return _list(shape, node, path)
    if isinstance(shape, MapShape):
        return _map(shape, node, path)
    if None not in node:
        raise ServiceError("InvalidParameterValue", f"Parameter {path} needs a value, not sub-parameters.")
    return _scalar(shape, node[None], path)


def _list(shape: ListShape, node: _Node, path: str) -> list[Any]:
    items: list[tuple[int, _Node]] = []
    for key, child in node.items():
        if key is None:
            # a list sent without an index: accept it as a one-element list
            items.append((0, {None: child}))
            continue
        # ASCII digits only: str.isdigit() also accepts '²' or '①', which int() refuses
        if not (key.isascii() and key.isdigit()) or int(key) < 1 or int(key) > 100000:
            raise ServiceError(
                "InvalidParameterValue",
                f"Parameter {path}.{key} is not valid: list elements are numbered {path}.1, {path}.2, ...",
            )
        items.append((int(key), child))
    items.sort(key=lambda kv: kv[0])
    return [_value(shape.member, child, f"{path}.{i}") for i, child in items]


def _map(shape: MapShape, node: _Node, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    key_name = shape.serialization.get("keyName", "key")
    value_name = shape.serialization.get("valueName", "value")
    for idx, entry in sorted(node.items(), key=lambda kv: str(kv[0])):
        if idx is None or not isinstance(entry, dict):
            continue
        k = _child(entry, key_name)
        v = _child(entry, value_name)
        if k is None or None not in k:
            raise missing_parameter(f"{path}.{idx}.{key_name}")
        out[str(k[None])] = _value(shape.value, v, f"{path}.{idx}.{value_name}") if v is not None else None
    return out


def _scalar(shape: Shape, raw: str, path: str) -> Any:
    kind = shape.type_name
    if kind == "string":
        return raw
    if kind in ("integer", "long"):
        text = raw.strip()
        try:
            # ASCII digits only: int() would also take '1_000' or non-ASCII digits such as '١٢'
            if not text.isascii() or "_" in text:
                raise ValueError(text)
            number = int(text)
        except ValueError:
            raise ServiceError(
                "InvalidParameterValue", f"Value ({raw}) for parameter {path} is invalid. Expected an integer."
            ) from None
        low, high = _INT_RANGES[kind]
        if not low <= number <= high:
            # beyond the wire type's range: AWS refuses it, and the database could not store or compare it
            raise ServiceError(
                "InvalidParameterValue",
                f"Value ({raw[:40]}) for parameter {path} is invalid. Expected an integer between {low} and {high}.",
            )
        return number
    if kind == "boolean":
        word = raw.strip().lower()
        if word in ("true", "1"):
            return True
        if word in ("false", "0"):
            return False
        raise ServiceError(
            "InvalidParameterValue", f"Value ({raw}) for parameter {path} is invalid. Expected true or false."
        )
    if kind in ("double", "float"):
        try:
            return float(raw)
        except ValueError:
            raise ServiceError(
                "InvalidParameterValue", f"Value ({raw}) for parameter {path} is invalid. Expected a number."
            ) from None
    if kind == "timestamp":
        return parse_timestamp(raw, path)
    if kind == "blob":
        try:
            return base64.b64decode(raw.encode(), validate=False)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise ServiceError(
                "InvalidParameterValue", f"Value for parameter {path} is invalid. Expected base64 data."
            ) from None
    return raw


def parse_timestamp(raw: str, path: str) -> datetime:
    text = raw.strip()
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), tz=UTC)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise ServiceError(
            "InvalidParameterValue",
            f"Value ({raw}) for parameter {path} is invalid. Expected an ISO 8601 time such as 2024-01-31T12:00:00Z.",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
