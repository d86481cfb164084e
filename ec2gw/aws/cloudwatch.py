"""CloudWatch's wire protocols, for the metrics API served on the EC2 port.

botocore's `cloudwatch` model lists the protocols smithy-rpc-v2-cbor, json and query; botocore
(and so boto3 and the aws CLI) picks `json`: a POST of a JSON document with
`X-Amz-Target: GraniteServiceVersion20100801.<Operation>`, answered in JSON; errors are
`{"__type": ..., "message": ...}` with the Query-style code in the `x-amzn-query-error` header
(the model is awsQueryCompatible). Older SDKs and hand-made requests use the Query protocol: a form
(or query string) with `Action=GetMetricStatistics&Version=2010-08-01`, lists as
`Statistics.member.1`, answered in XML, errors in the `<ErrorResponse>` envelope.

The gateway tells CloudWatch requests from EC2 ones by that header, or by the service the request
is signed for (`monitoring`), or by a CloudWatch action with CloudWatch's Version.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from ec2gw.aws.serializer import xml_escape
from ec2gw.errors import ServiceError

SERVICE = "cloudwatch"
SIGNING_NAME = "monitoring"
API_VERSION = "2010-08-01"
TARGET_PREFIX = "GraniteServiceVersion20100801."
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
XML_NAMESPACE = f"http://monitoring.amazonaws.com/doc/{API_VERSION}/"
_SCOPE_RE = re.compile(r"Credential=[^/,\s]*/\d{8}/[^/,\s]*/([^/,\s]+)/aws4_request")


def protocol_of(headers: Any, params: list[tuple[str, str]]) -> str | None:
    """"json" or "query" for a CloudWatch request, None for an EC2 one."""
    if (headers.get("X-Amz-Target") or "").startswith(TARGET_PREFIX):
        return "json"
    scope = _SCOPE_RE.search(headers.get("Authorization") or "")
    if scope is not None:
        return "query" if scope.group(1) == SIGNING_NAME else None
    values = dict(params)
    credential = values.get("X-Amz-Credential", "").split("/")
    if len(credential) == 5:
        return "query" if credential[3] == SIGNING_NAME else None
    if values.get("Version") == API_VERSION and values.get("Action") in ("ListMetrics", "GetMetricStatistics", "GetMetricData"):
        return "query"
    return None


def json_action(headers: Any) -> str:
    return str(headers.get("X-Amz-Target") or "")[len(TARGET_PREFIX):]


# --------------------------------------------------------------------------- input


def _bad(path: str, value: Any, what: str) -> ServiceError:
    shown = json.dumps(value)[:80] if not isinstance(value, str) else value[:80]
    return ServiceError("InvalidParameterValue", f"The parameter {path} must be {what} (got {shown}).")


def _timestamp(path: str, value: Any) -> datetime:
    if isinstance(value, bool):
        raise _bad(path, value, "a time (seconds since the epoch, or ISO 8601 like 2026-12-06T04:00:00Z)")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or abs(value) > 1e11:
            raise _bad(path, value, "a time (seconds since the epoch)")
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            if re.fullmatch(r"-?\d+(\.\d+)?", text):
                return _timestamp(path, float(text))
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _bad(path, value, "a time (ISO 8601 like 2026-12-06T04:00:00Z, or seconds since the epoch)") from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    raise _bad(path, value, "a time")


def from_json(shape: Shape, value: Any, path: str) -> Any:
    """A JSON value checked and converted along its botocore shape (timestamps become datetimes)."""
    kind = shape.type_name
    if isinstance(shape, StructureShape):
        if not isinstance(value, dict):
            raise _bad(path, value, "an object")
        out = {}
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                out[name] = from_json(member, value[name], f"{path}.{name}" if path else name)
        return out
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            raise _bad(path, value, "a list")
        return [from_json(shape.member, v, f"{path}.member.{i + 1}") for i, v in enumerate(value)]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            raise _bad(path, value, "an object")
        return {str(k): from_json(shape.value, v, f"{path}.{k}") for k, v in value.items()}
    if kind == "timestamp":
        return _timestamp(path, value)
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _bad(path, value, "an integer")
        return value
    if kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad(path, value, "a number")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _bad(path, value, "true or false")
        return value
    if not isinstance(value, str):
        raise _bad(path, value, "a string")
    return value


def parse_json(model: OperationModel, body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError):
        raise ServiceError("InvalidParameterValue", "The request body is not a JSON document; send the "
                           "operation's parameters as a JSON object (application/x-amz-json-1.0).") from None
    inputs = from_json(model.input_shape, doc, "") if model.input_shape is not None else {}
    _check_required(model.input_shape, inputs, "")
    return dict(inputs)


def _from_flat(shape: Shape, prefix: str, flat: dict[str, str], keys: set[str]) -> Any:
    if isinstance(shape, StructureShape):
        out = {}
        for name, member in shape.members.items():
            key = f"{prefix}.{name}" if prefix else name
            if key in flat or any(k.startswith(key + ".") for k in keys):
                out[name] = _from_flat(member, key, flat, keys)
        return out
    if isinstance(shape, ListShape):
        items = []
        i = 1
        while f"{prefix}.member.{i}" in flat or any(k.startswith(f"{prefix}.member.{i}.") for k in keys):
            items.append(_from_flat(shape.member, f"{prefix}.member.{i}", flat, keys))
            i += 1
        return items
    value = flat.get(prefix, "")
    kind = shape.type_name
    if kind == "timestamp":
        return _timestamp(prefix, value)
    if kind in ("integer", "long"):
        try:
            return int(value)
        except ValueError:
            raise _bad(prefix, value, "an integer") from None
    if kind in ("double", "float"):
        try:
            return float(value)
        except ValueError:
            raise _bad(prefix, value, "a number") from None
    if kind == "boolean":
        if value.lower() not in ("true", "false"):
            raise _bad(prefix, value, "true or false")
        return value.lower() == "true"
    return value


def parse_query_form(model: OperationModel, params: list[tuple[str, str]]) -> dict[str, Any]:
    """The Query protocol's parameters (Dimensions.member.1.Name=...) along the input shape."""
    flat = dict(params)
    inputs = _from_flat(model.input_shape, "", flat, set(flat)) if model.input_shape is not None else {}
    _check_required(model.input_shape, inputs, "")
    return dict(inputs)


def _check_required(shape: Shape | None, value: Any, path: str) -> None:
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name in shape.required_members:
            if name not in value:
                where = f"{path}.{name}" if path else name
                raise ServiceError("MissingParameter", f"The parameter {where} must be specified.")
        for name, member in shape.members.items():
            if name in value:
                _check_required(member, value[name], f"{path}.{name}" if path else name)
    elif isinstance(shape, ListShape) and isinstance(value, list):
        for i, item in enumerate(value):
            _check_required(shape.member, item, f"{path}.member.{i + 1}")


# --------------------------------------------------------------------------- output


def _to_json(shape: Shape, value: Any) -> Any:
    if isinstance(shape, StructureShape):
        return {k: _to_json(shape.members[k], v) for k, v in value.items() if k in shape.members and v is not None}
    if isinstance(shape, ListShape):
        return [_to_json(shape.member, v) for v in value]
    if isinstance(shape, MapShape):
        return {k: _to_json(shape.value, v) for k, v in value.items()}
    if shape.type_name == "timestamp" and isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return value


def serialize_json(model: OperationModel, result: dict[str, Any]) -> bytes:
    out = _to_json(model.output_shape, result) if model.output_shape is not None else {}
    return json.dumps(out, separators=(",", ":")).encode()


def _iso(value: datetime) -> str:
    value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + (f".{value.microsecond // 1000:03d}Z" if value.microsecond else "Z")


def _xml(shape: Shape, value: Any, out: list[str]) -> None:
    if isinstance(shape, StructureShape):
        for name, member in shape.members.items():
            v = value.get(name)
            if v is None:
                continue
            out.append(f"<{name}>")
            _xml(member, v, out)
            out.append(f"</{name}>")
    elif isinstance(shape, ListShape):
        for item in value:
            out.append("<member>")
            _xml(shape.member, item, out)
            out.append("</member>")
    elif shape.type_name == "timestamp" and isinstance(value, datetime):
        out.append(_iso(value))
    elif shape.type_name == "boolean":
        out.append("true" if value else "false")
    elif isinstance(value, float):
        out.append(repr(value))
    else:
        out.append(xml_escape(str(value)))


def serialize_query(model: OperationModel, result: dict[str, Any], request_id: str) -> bytes:
    name = model.name
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<{name}Response xmlns="{XML_NAMESPACE}">', f"<{name}Result>"]
    if model.output_shape is not None:
        _xml(model.output_shape, result, out)
    out.append(f"</{name}Result><ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{name}Response>")
    return "".join(out).encode("utf-8")


def error_type(status: int) -> str:
    return "Receiver" if status >= 500 else "Sender"


def serialize_error_json(code: str, message: str) -> bytes:
    return json.dumps({"__type": code, "message": message}).encode()


def serialize_error_query(code: str, message: str, status: int, request_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ErrorResponse xmlns="{XML_NAMESPACE}"><Error><Type>{error_type(status)}</Type>'
        f"<Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
