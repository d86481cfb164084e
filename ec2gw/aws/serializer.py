"""EC2 response XML from botocore output shapes, and AWS's error envelope.

Element names come from each member's `locationName`, lists are wrapped `<item>` elements, the
namespace is the one of the Version the client sent. Serialization plans are compiled once per
shape, so large listings (a thousand instances) stay cheap.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"})
# characters XML 1.0 cannot carry at all
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Emit = Callable[[list[str], Any], None]


# anything xml_escape would change; most values (ids, names, addresses) hold none of it
_NEEDS_ESCAPE = re.compile("[&<>\"\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_escape(text: str) -> str:
    if not _NEEDS_ESCAPE.search(text):
        return text
    text = text.translate(_ESCAPES)
    if _INVALID_XML.search(text):
        text = _INVALID_XML.sub("\ufffd", text)
    return text


def namespace(version: str | None, default: str) -> str:
    v = version if version and _VERSION_RE.match(version) else default
    return f"http://ec2.amazonaws.com/doc/{v}/"


def format_timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _scalar_emitter(shape: Shape) -> Callable[[Any], str]:
    kind = shape.type_name
    if kind == "boolean":
        return lambda v: "true" if v else "false"
    if kind == "timestamp":
        return lambda v: format_timestamp(v) if isinstance(v, datetime) else xml_escape(str(v))
    if kind == "blob":
        return lambda v: base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()
    if kind in ("integer", "long", "double", "float"):
        return str
    return lambda v: xml_escape(v if isinstance(v, str) else str(v))


def _is_scalar(shape: Shape) -> bool:
    return not isinstance(shape, (StructureShape, ListShape, MapShape))


@cache
def _plan(shape: Shape) -> Emit:
    """A function appending the children of a value of `shape` (without its own element)."""
    if isinstance(shape, StructureShape):
        # (member name, open tag, close tag, plan for containers, text function for scalars), in the
        # shape's member order: AWS writes members so, and clients such as libcloud take the first
        # matching element (TerminateInstances' currentState before previousState would be misread)
        members: dict[str, tuple[int, str, str, str, Emit | None, Callable[[Any], str] | None]] = {}
        for index, (name, member) in enumerate(shape.members.items()):
            tag = member.serialization.get("name", name)
            scalar = _scalar_emitter(member) if _is_scalar(member) else None
            members[name] = (index, name, f"<{tag}>", f"</{tag}>", None if scalar else _plan(member), scalar)
        # the members a result holds, in model order, per set of keys: results of one kind share
        # their keys, so a listing sorts once, not once per item
        orders: dict[tuple[str, ...], list[tuple[int, str, str, str, Emit | None, Callable[[Any], str] | None]]] = {}

        def emit_struct(out: list[str], value: Any) -> None:
            keys = tuple(value)
            order = orders.get(keys)
            if order is None:
                order = sorted(members[k] for k in keys if k in members)
                if len(orders) < 64:
                    orders[keys] = order
            for _, name, open_tag, close_tag, child, scalar in order:
                v = value[name]
                if v is None:
                    continue
                if scalar is not None:
                    out.append(open_tag + scalar(v) + close_tag)
                else:
                    out.append(open_tag)
                    child(out, v)  # type: ignore[misc]
                    out.append(close_tag)

        return emit_struct
    if isinstance(shape, ListShape):
        tag = shape.member.serialization.get("name", "item")
        open_tag, close_tag = f"<{tag}>", f"</{tag}>"
        child = _plan(shape.member)

        def emit_list(out: list[str], value: Any) -> None:
            for item in value:
                out.append(open_tag)
                child(out, item)
                out.append(close_tag)

        return emit_list
    if isinstance(shape, MapShape):
        key_plan, value_plan = _plan(shape.key), _plan(shape.value)

        def emit_map(out: list[str], value: Any) -> None:
            for k, v in value.items():
                out.append("<item><key>")
                key_plan(out, k)
                out.append("</key><value>")
                value_plan(out, v)
                out.append("</value></item>")

        return emit_map
    scalar = _scalar_emitter(shape)
    return lambda out, value: out.append(scalar(value))


def serialize_response(
    operation: OperationModel, result: dict[str, Any], request_id: str, version: str | None
) -> bytes:
    """The XML document of a successful EC2 response."""
    ns = namespace(version, operation.service_model.api_version)
    root = f"{operation.name}Response"
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<{root} xmlns="{ns}">', f"<requestId>{request_id}</requestId>"]
    if operation.output_shape is not None and result:
        _plan(operation.output_shape)(out, result)
    elif operation.output_shape is None:
        out.append("<return>true</return>")
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def serialize_error(code: str, message: str, request_id: str) -> bytes:
    """AWS's EC2 error envelope."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message>"
        f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
    ).encode()
