"""S3 (rest-xml) responses from botocore output shapes, and S3's error document.

What: `serialize_response` turns a provider's result dict (keyed by output-shape members) into a
status, headers and a body. Header members go to their `locationName` header (timestamps as HTTP
dates), the `headers` map member to prefixed headers (x-amz-meta-*); a streaming payload (the Body
of GetObject) is handed through untouched so it can stream from disk; the remaining members become
an XML document whose element names, flattened lists and attributes come from the model.

Why: as for EC2 (pattern 1), walking the model instead of hand-writing XML templates keeps us
byte-compatible with what botocore's own parser reads. The model does not name the root element
of S3 responses (Smithy's @xmlName is dropped in botocore's JSON), so that one fact per operation
is kept in ROOT_ELEMENTS below, as S3's documentation names them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from functools import cache
from typing import Any

from botocore.model import ListShape, MapShape, OperationModel, Shape, StructureShape

from ec2gw.aws.restxml_parser import xml_member_name

S3_NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"

#: root element of each operation's XML response (S3 API reference)
ROOT_ELEMENTS = {
    "ListBuckets": "ListAllMyBucketsResult",
    "ListObjects": "ListBucketResult",
    "ListObjectsV2": "ListBucketResult",
    "ListObjectVersions": "ListVersionsResult",
    "CreateMultipartUpload": "InitiateMultipartUploadResult",
    "CompleteMultipartUpload": "CompleteMultipartUploadResult",
    "ListParts": "ListPartsResult",
    "ListMultipartUploads": "ListMultipartUploadsResult",
    "DeleteObjects": "DeleteResult",
    "GetBucketAcl": "AccessControlPolicy",
    "GetObjectAcl": "AccessControlPolicy",
    "GetBucketVersioning": "VersioningConfiguration",
    "GetBucketTagging": "Tagging",
    "GetObjectTagging": "Tagging",
}

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"})
# characters XML 1.0 cannot carry: S3 writes them as character references; clients asking for
# encoding-type=url never see them
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

Emit = Callable[[list[str], Any], None]


#: anything xml_escape changes; most values (keys, ETags, dates) have none, and one search is
#: cheaper than the translation (a listing escapes several values per key)
_NEEDS_ESCAPE = re.compile('[&<>"\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]')


def xml_escape(text: str) -> str:
    if not _NEEDS_ESCAPE.search(text):
        return text
    text = text.translate(_ESCAPES)
    if _INVALID_XML.search(text):
        text = _INVALID_XML.sub(lambda m: f"&#x{ord(m.group()):X};", text)
    return text


def iso_timestamp(value: datetime) -> str:
    """S3's XML timestamps: 2009-10-12T17:50:30.000Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def http_date(value: datetime) -> str:
    """RFC 7231 date for headers: Wed, 12 Oct 2009 17:50:00 GMT."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_datetime(value.astimezone(UTC), usegmt=True)


def header_value(text: str) -> str:
    """A header value WSGI can send: UTF-8 text travels as its bytes (as clients sent it to us)."""
    text = text.replace("\r", " ").replace("\n", " ")
    try:
        text.encode("latin-1")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8").decode("latin-1")


# --------------------------------------------------------------------------- scalars


def _header_scalar(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        if isinstance(value, datetime):
            fmt = shape.serialization.get("timestampFormat") or shape.metadata.get("timestampFormat")
            return iso_timestamp(value) if fmt == "iso8601" else http_date(value)
        return header_value(str(value))
    if kind == "blob":
        return base64.b64encode(value).decode()
    return header_value(str(value))


def _xml_scalar(shape: Shape) -> Callable[[Any], str]:
    kind = shape.type_name
    if kind == "boolean":
        return lambda v: "true" if v else "false"
    if kind == "timestamp":
        return lambda v: iso_timestamp(v) if isinstance(v, datetime) else xml_escape(str(v))
    if kind == "blob":
        return lambda v: base64.b64encode(v if isinstance(v, bytes) else str(v).encode()).decode()
    if kind in ("integer", "long", "double", "float"):
        return str
    return lambda v: xml_escape(v if isinstance(v, str) else str(v))


# --------------------------------------------------------------------------- XML plans


def _body_members(shape: StructureShape) -> list[tuple[str, Shape]]:
    return [(n, m) for n, m in shape.members.items() if not m.serialization.get("location")]


@cache
def _plan(shape: Shape) -> Emit:
    """A function appending the XML content of a value of `shape` (without its own element)."""
    if isinstance(shape, StructureShape):
        elements: list[tuple[str, Shape, Emit]] = []
        attributes: list[tuple[str, str]] = []
        for name, member in _body_members(shape):
            if member.serialization.get("xmlAttribute"):
                attributes.append((name, member.serialization.get("name", name)))
                continue
            elements.append((name, member, _element_plan(member, xml_member_name(member, name))))

        def emit_struct(out: list[str], value: Any) -> None:
            for name, _member, emit in elements:
                v = value.get(name)
                if v is not None:
                    emit(out, v)

        emit_struct.attributes = attributes  # type: ignore[attr-defined]
        return emit_struct
    if isinstance(shape, ListShape):
        item_tag = shape.member.serialization.get("name", "member")
        item = _element_plan(shape.member, item_tag)

        def emit_list(out: list[str], value: Any) -> None:
            for v in value:
                item(out, v)

        return emit_list
    if isinstance(shape, MapShape):
        key_tag = shape.key.serialization.get("name", "key")
        value_tag = shape.value.serialization.get("name", "value")
        key_plan, value_plan = _element_plan(shape.key, key_tag), _element_plan(shape.value, value_tag)

        def emit_map(out: list[str], value: Any) -> None:
            for k, v in value.items():
                out.append("<entry>")
                key_plan(out, k)
                value_plan(out, v)
                out.append("</entry>")

        return emit_map
    scalar = _xml_scalar(shape)
    return lambda out, value: out.append(scalar(value))


def _open_tag(shape: Shape, tag: str, value: Any) -> str:
    """The start tag, with the namespace declaration and attributes the shape asks for."""
    parts = [tag]
    ns = shape.serialization.get("xmlNamespace")
    if isinstance(ns, dict) and ns.get("uri"):
        prefix = ns.get("prefix")
        parts.append(f'xmlns:{prefix}="{ns["uri"]}"' if prefix else f'xmlns="{ns["uri"]}"')
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for name, attr in getattr(_plan(shape), "attributes", []):
            if value.get(name) is not None:
                parts.append(f'{attr}="{xml_escape(str(value[name]))}"')
    return "<" + " ".join(parts) + ">"


def _decorated(shape: Shape) -> bool:
    """Whether the start tag of this shape carries a namespace declaration or attributes."""
    if shape.serialization.get("xmlNamespace"):
        return True
    return isinstance(shape, StructureShape) and bool(getattr(_plan(shape), "attributes", None))


def _element_plan(shape: Shape, tag: str) -> Emit:
    """Emit a value as element(s) named `tag`; a flattened list repeats the element per item."""
    content = _plan(shape)
    if isinstance(shape, ListShape) and shape.serialization.get("flattened"):
        item_content = _plan(shape.member)
        simple_item = not _decorated(shape.member)

        def emit_flat(out: list[str], value: Any) -> None:
            for v in value:
                out.append(f"<{tag}>" if simple_item else _open_tag(shape.member, tag, v))
                item_content(out, v)
                out.append(f"</{tag}>")

        return emit_flat
    simple = not _decorated(shape)
    open_plain, close = f"<{tag}>", f"</{tag}>"

    def emit(out: list[str], value: Any) -> None:
        out.append(open_plain if simple else _open_tag(shape, tag, value))
        content(out, value)
        out.append(close)

    return emit


# --------------------------------------------------------------------------- responses


@dataclass
class S3Response:
    """What the gateway sends: status, headers and a body (bytes, or a stream for object data)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Any = b""


def serialize_response(op: OperationModel, result: dict[str, Any]) -> S3Response:
    """The HTTP response of a successful operation.

    A result may carry `_status` (e.g. 206 for a range) and `_headers` (protocol headers the model
    does not describe, such as Content-Range on HEAD or x-amz-bucket-region); any other key that is
    not a member of the output shape is ignored.
    """
    status = int(result.get("_status") or op.http.get("responseCode", 200))
    headers: list[tuple[str, str]] = list(result.get("_headers") or [])
    shape = op.output_shape
    body: Any = b""
    if shape is None:
        return S3Response(status, headers, body)
    payload_name = shape.serialization.get("payload")
    for name, member in shape.members.items():
        value = result.get(name)
        if value is None:
            continue
        loc = member.serialization.get("location")
        if loc == "header":
            headers.append((member.serialization.get("name", name), _header_scalar(member, value)))
        elif loc == "headers":
            prefix = member.serialization.get("name", name)
            for k, v in value.items():
                headers.append((header_value(prefix + k), header_value(str(v))))
    if payload_name is not None:
        member = shape.members[payload_name]
        value = result.get(payload_name)
        if member.type_name == "blob" or member.serialization.get("streaming"):
            return S3Response(status, headers, value if value is not None else b"")
        if isinstance(member, StructureShape) and value is not None:
            tag = member.serialization.get("name", payload_name)
            body = _document(tag, member, value)
    elif op.name == "GetBucketLocation":
        # S3's one bare-text document: <LocationConstraint>region</LocationConstraint>
        text = xml_escape(result.get("LocationConstraint") or "")
        body = f'<?xml version="1.0" encoding="UTF-8"?>\n<LocationConstraint xmlns="{S3_NAMESPACE}">{text}</LocationConstraint>'.encode()
    elif _body_members(shape) and any(result.get(n) is not None for n, _ in _body_members(shape)):
        body = _document(ROOT_ELEMENTS.get(op.name, op.name + "Result"), shape, result)
    if body:
        headers.append(("Content-Type", "application/xml"))
    return S3Response(status, headers, body)


def _document(root: str, shape: StructureShape, value: dict[str, Any]) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n', f'<{root} xmlns="{S3_NAMESPACE}">']
    _plan(shape)(out, value)
    out.append(f"</{root}>")
    return "".join(out).encode("utf-8")


def serialize_error(code: str, message: str, request_id: str, extra: dict[str, str] | None = None) -> bytes:
    """S3's error document: <Error><Code/><Message/>...<RequestId/><HostId/></Error>."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<Error>', f"<Code>{xml_escape(code)}</Code>",
           f"<Message>{xml_escape(message)}</Message>"]
    for k, v in (extra or {}).items():
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", k):
            out.append(f"<{k}>{xml_escape(str(v))}</{k}>")
    out.append(f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>")
    return "".join(out).encode("utf-8")
