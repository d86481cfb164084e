"""S3 (rest-xml) requests -> (operation, input parameters), by walking botocore's s3 model.

What: `S3Router` finds the operation of a request from its method, its path form (`/`, `/{Bucket}`,
`/{Bucket}/{Key+}`), the literal query keys of the operation's requestUri (`?uploads`, `?list-type=2`)
and the query parameters and headers the input shape requires (`uploadId`, `x-amz-copy-source`);
the most specific match wins. `parse_request` then reads every input member from where the model
puts it (uri, querystring, header, headers prefix map, XML payload). A streaming blob payload (the
Body of PutObject / UploadPart) is never read here: the caller passes the body stream through.

Why: the model is the protocol specification that botocore itself serializes requests from, so
reading requests the same way keeps us in step with every client built on it (pattern 2).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from botocore.model import ListShape, MapShape, OperationModel, ServiceModel, Shape, StructureShape
from lxml import etree

from ec2gw.errors import ServiceError

#: largest XML request body we read (CompleteMultipartUpload with 10,000 parts fits comfortably)
MAX_XML_BODY = 4 * 1024 * 1024


class HeaderMap(Protocol):
    """Case-insensitive request headers (werkzeug's EnvironHeaders / Headers)."""

    def get(self, key: str, /) -> str | None:
        """The header's value (any case of the name), else None."""

    def items(self) -> Iterable[tuple[str, str]]:
        """Every (name, value)."""


@dataclass(frozen=True)
class Route:
    """One operation's place in the URL space."""

    operation: str
    method: str
    form: str  # "service" | "bucket" | "object"
    literals: tuple[tuple[str, str | None], ...]  # query keys (with a required value or None)
    required_query: tuple[str, ...]
    required_headers: tuple[str, ...]

    @property
    def specificity(self) -> int:
        return len(self.literals) + len(self.required_query) + len(self.required_headers)


@dataclass
class S3Request:
    """The parts of an S3 request the parser reads, already split and percent-decoded."""

    method: str
    bucket: str | None
    key: str | None
    query: list[tuple[str, str]]
    headers: HeaderMap
    _qdict: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for k, v in self.query:
            self._qdict.setdefault(k, v)

    @property
    def form(self) -> str:
        if self.bucket is None:
            return "service"
        return "bucket" if self.key is None else "object"

    def query_value(self, name: str) -> str | None:
        return self._qdict.get(name)


def split_path(raw_path: str) -> tuple[str | None, str | None]:
    """Path-style `/bucket/key...` -> (bucket, key), percent-decoded as UTF-8.

    The key is everything after the first slash following the bucket, kept verbatim: `//a`,
    `../b` and a trailing `/` are part of the key, never interpreted as a file path.
    """
    path = raw_path if raw_path.startswith("/") else "/" + raw_path
    rest = path[1:]
    if not rest:
        return None, None
    bucket_part, sep, key_part = rest.partition("/")
    try:
        bucket = unquote(bucket_part, errors="strict")
        key = unquote(key_part, errors="strict") if sep and key_part else None
    except UnicodeDecodeError:
        raise ServiceError(
            "InvalidURI", "Couldn't parse the specified URI: its percent-escapes are not valid UTF-8.", 400
        ) from None
    if not bucket:
        raise ServiceError("InvalidURI", "Couldn't parse the specified URI: the bucket name is empty.", 400)
    return bucket, key


def split_key(raw_path: str) -> str | None:
    """The key of a virtual-hosted request: the whole path after its leading slash (None for "/")."""
    try:
        return unquote(raw_path[1:], errors="strict") if len(raw_path) > 1 else None
    except UnicodeDecodeError:
        raise ServiceError(
            "InvalidURI", "Couldn't parse the specified URI: its percent-escapes are not valid UTF-8.", 400
        ) from None


def parse_query(raw_query: str) -> list[tuple[str, str]]:
    """The query's (name, value) pairs; `+` is a space, escapes must be UTF-8."""
    try:
        return parse_qsl(raw_query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ServiceError(
            "InvalidURI", "Couldn't parse the specified URI: the query holds escapes that are not valid UTF-8.", 400
        ) from None


class S3Router:
    """Operation lookup for rest-xml requests, built once from the service model."""

    def __init__(self, model: ServiceModel, implemented: Iterable[str] = ()) -> None:
        self.implemented = frozenset(implemented)
        self._routes: dict[tuple[str, str], list[Route]] = {}
        for name in model.operation_names:
            route = _route_of(model.operation_model(name))
            if route is not None:
                self._routes.setdefault((route.method, route.form), []).append(route)
        for routes in self._routes.values():
            # most specific first; among equals prefer what we implement, then the plain S3 name
            # (ListBuckets before ListDirectoryBuckets)
            routes.sort(key=lambda r: (-r.specificity, r.operation not in self.implemented, len(r.operation)))

    def match(self, req: S3Request) -> str | None:
        """The operation name for the request, or None if no operation has this method and path form."""
        headers = req.headers
        for route in self._routes.get((req.method, req.form), []):
            if any(
                (v := req.query_value(k)) is None or (want is not None and v != want) for k, want in route.literals
            ):
                continue
            if any(req.query_value(k) is None for k in route.required_query):
                continue
            if any(headers.get(h) is None for h in route.required_headers):
                continue
            return route.operation
        return None

    def methods_for(self, form: str) -> list[str]:
        return sorted({m for (m, f) in self._routes if f == form})


def _route_of(op: OperationModel) -> Route | None:
    uri = op.http.get("requestUri", "/")
    path, _, literal_query = uri.partition("?")
    forms = {"/": "service", "/{Bucket}": "bucket", "/{Bucket}/{Key+}": "object"}
    form = forms.get(path)
    if form is None:
        return None
    literals: list[tuple[str, str | None]] = []
    for item in filter(None, literal_query.split("&")):
        k, eq, v = item.partition("=")
        literals.append((k, v if eq else None))
    req_q: list[str] = []
    req_h: list[str] = []
    shape = op.input_shape
    if shape is not None:
        for name in shape.required_members:
            ser = shape.members[name].serialization
            if ser.get("location") == "querystring":
                req_q.append(ser.get("name", name))
            elif ser.get("location") == "header":
                req_h.append(ser.get("name", name))
    return Route(op.name, op.http.get("method", "GET"), form, tuple(literals), tuple(req_q), tuple(req_h))


# --------------------------------------------------------------------------- scalar decoding


def _invalid(name: str, value: str, why: str) -> ServiceError:
    return ServiceError("InvalidArgument", f"{name} has an invalid value {value[:100]!r}: {why}", 400,
                        ArgumentName=name, ArgumentValue=value[:1024])


def parse_http_date(value: str) -> datetime | None:
    """An RFC 7231 date (also RFC 850 / asctime forms), or None if it is not one."""
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_iso8601(value: str) -> datetime | None:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _timestamp(shape: Shape, value: str, default_format: str) -> datetime | str:
    """A datetime when the text is a date; otherwise the raw text (the operation decides)."""
    fmt = shape.serialization.get("timestampFormat") or shape.metadata.get("timestampFormat") or default_format
    parsed = parse_http_date(value) if fmt == "rfc822" else None
    if parsed is None and fmt == "unixTimestamp":
        try:
            parsed = datetime.fromtimestamp(float(value), UTC)
        except (ValueError, OverflowError):
            parsed = None
    if parsed is None:
        parsed = parse_iso8601(value) or parse_http_date(value)
    return parsed if parsed is not None else value


def _scalar(shape: Shape, name: str, value: str, default_ts: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(value.strip())
        except ValueError:
            raise _invalid(name, value, "expected an integer.") from None
    if kind in ("float", "double"):
        try:
            return float(value)
        except ValueError:
            raise _invalid(name, value, "expected a number.") from None
    if kind == "boolean":
        low = value.strip().lower()
        if low not in ("true", "false"):
            raise _invalid(name, value, "expected true or false.")
        return low == "true"
    if kind == "timestamp":
        return _timestamp(shape, value, default_ts)
    if kind == "blob":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(name, value, "expected base64.") from None
    return value


def header_text(value: str) -> str:
    """WSGI hands headers over as latin-1; S3 clients send UTF-8 bytes (x-amz-meta-*): recover them."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


# --------------------------------------------------------------------------- the request


def parse_request(op: OperationModel, req: S3Request, payload: bytes | None = None) -> dict[str, Any]:
    """The operation's input parameters, keyed by member name (as botocore's client takes them).

    `payload` is the body of an operation whose payload is an XML structure; a streaming payload
    member (Body) is left out for the caller to add.
    """
    shape = op.input_shape
    params: dict[str, Any] = {}
    if shape is None:
        return params
    payload_name = shape.serialization.get("payload")
    headers = req.headers
    for name, member in shape.members.items():
        ser = member.serialization
        loc = ser.get("location")
        wire = ser.get("name", name)
        if loc == "uri":
            value = req.bucket if wire == "Bucket" else req.key if wire == "Key" else None
            if value is not None:
                params[name] = value
        elif loc == "querystring":
            if isinstance(member, MapShape):
                params[name] = dict(req.query)
                continue
            if isinstance(member, ListShape):
                values = [v for k, v in req.query if k == wire]
                if values:
                    params[name] = [_scalar(member.member, wire, v, "iso8601") for v in values]
                continue
            raw = req.query_value(wire)
            if raw is not None:
                params[name] = _scalar(member, wire, raw, "iso8601")
        elif loc == "header":
            raw = headers.get(wire)
            if raw is None:
                continue
            if isinstance(member, ListShape):
                params[name] = [_scalar(member.member, wire, v.strip(), "rfc822") for v in raw.split(",") if v.strip()]
            else:
                params[name] = _scalar(member, wire, header_text(raw), "rfc822")
        elif loc == "headers":
            prefix = wire.lower()
            found = {
                k.lower()[len(prefix):]: header_text(v)
                for k, v in headers.items()
                if k.lower().startswith(prefix) and len(k) > len(prefix)
            }
            if found:
                params[name] = found
        elif name == payload_name and isinstance(member, StructureShape) and payload:
            params[name] = parse_xml_payload(member, payload)
    return params


# --------------------------------------------------------------------------- XML payloads

_XML_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False, remove_comments=True
)


def malformed_xml(detail: str = "") -> ServiceError:
    return ServiceError(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema"
        + (f" ({detail})." if detail else "."),
        400,
    )


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def xml_member_name(shape: Shape, member_name: str) -> str:
    """The element name of a structure member, as botocore's rest-xml code spells it."""
    if isinstance(shape, ListShape) and shape.serialization.get("flattened"):
        inner = shape.member.serialization.get("name")
        if inner:
            return str(inner)
    return str(shape.serialization.get("name", member_name))


def parse_xml_payload(shape: StructureShape, data: bytes) -> dict[str, Any]:
    """An XML request body -> a dict of the structure's members; MalformedXML when it does not fit."""
    if len(data) > MAX_XML_BODY:
        raise malformed_xml(f"the body is larger than {MAX_XML_BODY} bytes")
    try:
        root = etree.fromstring(data, _XML_PARSER)
    except etree.XMLSyntaxError as exc:
        raise malformed_xml(str(exc).split(",")[0]) from None
    if root is None:
        raise malformed_xml("the body is empty")
    if root.getroottree().docinfo.doctype:
        raise malformed_xml("document type declarations are not accepted")
    expected = shape.serialization.get("name")
    if expected and _local(root.tag) != expected:
        raise malformed_xml(f"the root element must be {expected}, not {_local(root.tag)}")
    return _structure(shape, root)


def _children(node: Any) -> list[Any]:
    return [c for c in node if isinstance(c.tag, str)]


def _structure(shape: StructureShape, node: Any) -> dict[str, Any]:
    by_name: dict[str, list[Any]] = {}
    for child in _children(node):
        by_name.setdefault(_local(child.tag), []).append(child)
    out: dict[str, Any] = {}
    for name, member in shape.members.items():
        if member.serialization.get("location"):
            continue
        if member.serialization.get("xmlAttribute"):
            attr = member.serialization.get("name", name)
            for k, v in node.attrib.items():
                if _local(k) == attr.split(":")[-1]:
                    out[name] = v
            continue
        nodes = by_name.get(xml_member_name(member, name))
        if not nodes:
            continue
        if isinstance(member, ListShape) and member.serialization.get("flattened"):
            out[name] = [_value(member.member, n) for n in nodes]
        else:
            if len(nodes) > 1:
                raise malformed_xml(f"element {xml_member_name(member, name)} appears more than once")
            out[name] = _value(member, nodes[0])
    return out


def _value(shape: Shape, node: Any) -> Any:
    if isinstance(shape, StructureShape):
        return _structure(shape, node)
    if isinstance(shape, ListShape):
        item = shape.member.serialization.get("name", "member")
        return [_value(shape.member, c) for c in _children(node) if _local(c.tag) == item]
    if isinstance(shape, MapShape):
        out: dict[str, Any] = {}
        for entry in _children(node):
            k = v = None
            for c in _children(entry):
                if _local(c.tag) == shape.key.serialization.get("name", "key"):
                    k = c.text or ""
                elif _local(c.tag) == shape.value.serialization.get("name", "value"):
                    v = _value(shape.value, c)
            if k is not None:
                out[k] = v
        return out
    text = node.text or ""
    if _children(node):
        raise malformed_xml(f"element {_local(node.tag)} must hold text, not elements")
    try:
        return _scalar(shape, _local(node.tag), text, "iso8601")
    except ServiceError:
        raise malformed_xml(f"element {_local(node.tag)} has an invalid value") from None
