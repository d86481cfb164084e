"""The EC2 Query endpoint as a WSGI application: parse -> authenticate -> dispatch -> serialize.

This is the only module that sees HTTP. It knows nothing of the database: credentials come from
a `principal_lookup` callable and providers get whatever `make_context` builds.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote

from werkzeug.datastructures import EnvironHeaders

from ec2gw.aws import cloudwatch, sts
from ec2gw.aws.auth import RequestView, authenticate
from ec2gw.aws.body_input import (
    CLIENT_BODY_ERRORS,
    request_timeout,
    set_receive_timeout,
    stop_reading,
    timed_out,
)
from ec2gw.aws.dispatch import Registry
from ec2gw.aws.eucalyptus import (
    DEFAULT_EUCALYPTUS_VERSION,
    Capacity,
    is_eucalyptus_path,
    serialize_instance_types,
)
from ec2gw.aws.query_parser import parse_query
from ec2gw.aws.serializer import serialize_error, serialize_response
from ec2gw.aws.sigv2 import DEFAULT_MAX_EXPIRES
from ec2gw.aws.spec import has_operation, operation_model
from ec2gw.errors import ServiceError

log = logging.getLogger("ec2gw.ec2")

MAX_BODY = 2 * 1024 * 1024
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    user_id: int
    name: str
    account_id: str
    secret: str
    is_admin: bool = False
    group: str = "users"


def raw_path(environ: dict[str, Any]) -> str:
    """The path exactly as the client sent it (percent-encoded), as signatures need it."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path = raw.split("?", 1)[0]
        if path.startswith(("http://", "https://")):
            path = "/" + path.split("/", 3)[-1] if path.count("/") >= 3 else "/"
        return path or "/"
    return quote(environ.get("PATH_INFO", "/").encode("latin-1"), safe="-_.~/!$&'()*+,;=:@%") or "/"


def _body_read_errors() -> tuple[type[BaseException], ...]:
    """What a WSGI server's input stream raises for a body the client broke (bad chunk sizes, a
    chunked body cut off, a reset connection, a timeout), as opposed to a bug of ours."""
    errors: list[type[BaseException]] = [*CLIENT_BODY_ERRORS, ValueError]
    try:
        from werkzeug.exceptions import ClientDisconnected

        errors.append(ClientDisconnected)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


_BODY_READ_ERRORS = _body_read_errors()


class _CheckedStream:
    """wsgi.input whose failures are the client's: IncompleteBody or RequestTimeout (400) instead
    of an InternalError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int) -> bytes:
        try:
            return bytes(self._stream.read(size))
        except _BODY_READ_ERRORS as exc:
            if timed_out(exc):
                raise request_timeout() from None
            raise ServiceError(
                "IncompleteBody",
                f"The request body could not be read ({type(exc).__name__}: it is malformed or was cut off); "
                "resend the whole request.",
            ) from None


def read_body_in_time(environ: dict[str, Any], limit: int, timeout: float) -> bytes:
    """read_body() with a receive timeout on the connection (gunicorn's socket) while it reads: a
    client that stops sending gets 400 RequestTimeout after `timeout` seconds of silence and the
    connection ends, instead of holding a server thread."""
    sock = environ.get("gunicorn.socket")
    if sock is None or not set_receive_timeout(sock, timeout):
        return read_body(environ, limit)
    try:
        return read_body(environ, limit)
    except ServiceError as err:
        if err.code == "RequestTimeout":
            stop_reading(sock)
        raise
    finally:
        set_receive_timeout(sock, 0)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The whole request body, refusing oversize and cut-off bodies with AWS-style errors."""
    stream = _CheckedStream(environ["wsgi.input"])
    length_header = environ.get("CONTENT_LENGTH") or ""
    if length_header.strip():
        try:
            length = int(length_header)
        except ValueError:
            raise ServiceError("InvalidRequest", "The Content-Length header is not a number.") from None
        if length > limit:
            raise ServiceError(
                "RequestEntityTooLarge",
                f"The request body is {length} bytes; at most {limit} are accepted. Send fewer or smaller parameters.",
                status=413,
            )
        chunks, got = [], 0
        while got < length:
            chunk = stream.read(min(_READ_CHUNK, length - got))
            if not chunk:
                raise ServiceError(
                    "IncompleteBody",
                    f"The request body ended after {got} of the {length} bytes announced in Content-Length; resend the whole request.",
                )
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    if environ.get("wsgi.input_terminated") or environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        data = bytearray()
        while True:
            chunk = stream.read(_READ_CHUNK)
            if not chunk:
                return bytes(data)
            data += chunk
            if len(data) > limit:
                raise ServiceError(
                    "RequestEntityTooLarge",
                    f"The request body is larger than {limit} bytes. Send fewer or smaller parameters.",
                    status=413,
                )
    return b""


def decode_params(data: str, where: str) -> list[tuple[str, str]]:
    try:
        pairs = parse_qsl(data, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ServiceError(
            "InvalidParameterValue", f"The {where} holds percent-escapes that are not valid UTF-8; encode parameters as UTF-8."
        ) from None
    for name, value in pairs:
        # A character XML 1.0 cannot carry (NUL and the other C0 controls but tab, LF and CR; lone
        # surrogates; U+FFFE/U+FFFF) could not be answered back as sent: a key pair or tag would be
        # listed under another name than the one it was made with. PostgreSQL cannot store NUL at all.
        bad = _NOT_XML.search(name) or _NOT_XML.search(value)
        if bad:
            shown = _NOT_XML.sub(lambda m: f"%{ord(m.group()):02X}" if ord(m.group()) < 0x80 else "?", name)[:100]
            raise ServiceError(
                "InvalidParameterValue",
                f"The parameter {shown} holds the control character U+{ord(bad.group()):04X}, which no EC2 "
                "parameter takes; remove it.",
            )
    return pairs


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class Ec2Gateway:
    """WSGI application for the EC2 Query API."""

    def __init__(
        self,
        registry: Registry,
        principal_lookup: Callable[[str], Principal | None],
        make_context: Callable[[Principal, str, str | None], Any],
        body_timeout: float = 20.0,
        sigv2_max_expires: int = DEFAULT_MAX_EXPIRES,
        eucalyptus_version: str = DEFAULT_EUCALYPTUS_VERSION,
        eucalyptus_capacity: Capacity | None = None,
        cloudwatch_registry: Registry | None = None,
    ) -> None:
        self.registry = registry
        #: the CloudWatch operations (metrics) served beside EC2's; None serves none
        self.cloudwatch_registry = cloudwatch_registry
        #: seconds past the server time a SigV2 Expires may lie (Settings.sigv2_max_expires)
        self.sigv2_max_expires = sigv2_max_expires
        #: the release named in the namespace of Eucalyptus-form answers (ec2gw.aws.eucalyptus)
        self.eucalyptus_version = eucalyptus_version
        #: capacity per instance type and zone, for Eucalyptus's DescribeInstanceTypes with Availability
        self.eucalyptus_capacity = eucalyptus_capacity
        #: seconds a request body may stay silent (read_body_in_time)
        self.body_timeout = body_timeout
        self.principal_lookup = principal_lookup
        self.make_context = make_context

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = str(uuid.uuid4())
        started = time.perf_counter()
        action = "-"
        content_type = "text/xml;charset=UTF-8"
        extra_headers: list[tuple[str, str]] = []
        try:
            action, status, body = self.handle(environ, request_id)
            if environ.get(_PROTOCOL_KEY) == "json":
                content_type = cloudwatch.JSON_CONTENT_TYPE
        except ServiceError as err:
            status, body, content_type, extra_headers = self._error(environ, err.code, err.message, err.status, request_id)
            log.info("%s %s -> %s %s", request_id, action, err.status, err.code)
        except Exception:  # a bug: logged with its traceback, the client gets AWS's InternalError
            log.exception("%s %s failed", request_id, action)
            status, body, content_type, extra_headers = self._error(
                environ, "InternalError" if environ.get(_PROTOCOL_KEY) is None else "InternalServiceError",
                "The server hit an unexpected error; the request id identifies it in the service log.", 500, request_id)
        else:
            log.debug("%s %s -> %s in %.1f ms", request_id, action, status, (time.perf_counter() - started) * 1000)
        start_response(
            f"{status} {_REASONS.get(status, 'Error')}",
            [
                ("Content-Type", content_type),
                ("Content-Length", str(len(body))),
                ("x-amzn-RequestId", request_id),
                ("Server", "ec2gw"),
                *extra_headers,
            ],
        )
        return [body]

    @staticmethod
    def _error(environ: dict[str, Any], code: str, message: str, status: int,
               request_id: str) -> tuple[int, bytes, str, list[tuple[str, str]]]:
        """The error document of the request's protocol: EC2's, or CloudWatch's JSON or Query one."""
        protocol = environ.get(_PROTOCOL_KEY)
        if protocol == "json":
            return (status, cloudwatch.serialize_error_json(code, message), cloudwatch.JSON_CONTENT_TYPE,
                    [("x-amzn-query-error", f"{code};{cloudwatch.error_type(status)}")])
        if protocol == "query":
            return status, cloudwatch.serialize_error_query(code, message, status, request_id), "text/xml;charset=UTF-8", []
        return status, serialize_error(code, message, request_id), "text/xml;charset=UTF-8", []

    def handle(self, environ: dict[str, Any], request_id: str) -> tuple[str, int, bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method not in ("GET", "POST"):
            raise ServiceError("InvalidAction", f"The EC2 Query API takes GET or POST requests, not {method}.", status=405)
        query_string = environ.get("QUERY_STRING", "")
        try:
            query_string.encode("ascii")
        except UnicodeEncodeError:
            raise ServiceError("InvalidParameterValue", "The query string holds raw non-ASCII bytes; percent-encode it.") from None
        body = read_body_in_time(environ, MAX_BODY, self.body_timeout) if method == "POST" else b""
        params = decode_params(query_string, "query string")
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if body and ctype in ("application/x-www-form-urlencoded", ""):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ServiceError(
                    "InvalidParameterValue", "The request body is not valid UTF-8; send urlencoded UTF-8 parameters."
                ) from None
            params += decode_params(text, "request body")
        headers: Any = EnvironHeaders(environ)
        view = RequestView(method=method, path=raw_path(environ), query=query_string, headers=headers)
        protocol = cloudwatch.protocol_of(headers, params)
        environ[_PROTOCOL_KEY] = protocol
        principal_box: list[Principal] = []

        def lookup_secret(access_key: str) -> str | None:
            p = self.principal_lookup(access_key)
            if p is None:
                return None
            principal_box[:] = [p]
            return p.secret

        identity = protocol is None and sts.is_sts(params)
        service = (sts.SIGNING_NAME if identity else "ec2") if protocol is None else cloudwatch.SIGNING_NAME
        auth = authenticate(view, service=service,
                            lookup_secret=lookup_secret, form_body=body, sigv2_max_expires=self.sigv2_max_expires)
        if not principal_box or principal_box[0] is None or auth.access_key is None:
            raise ServiceError("AuthFailure", "AWS was not able to validate the provided access credentials.", status=401)
        principal = principal_box[0]
        if protocol is not None:
            return self._cloudwatch(protocol, principal, headers, params, body, request_id)
        if identity:
            return sts.ACTION, 200, sts.caller_identity(principal.account_id, principal.name, auth.access_key, request_id)
        values = dict(params)
        action = values.get("Action", "")
        if not action:
            raise ServiceError("MissingAction", "The request must contain the parameter Action (e.g. Action=DescribeInstances).")
        if self.registry.get(action) is None or not has_operation("ec2", action):
            raise ServiceError(
                "InvalidAction", f"The action {action} is not valid for this web service; see the README for the supported actions."
            )
        model = operation_model("ec2", action)
        inputs = parse_query(model, params)
        version = values.get("Version")
        ctx = self.make_context(principal, request_id, version)
        result = self.registry.call(action, ctx, inputs)
        if action == "DescribeInstanceTypes" and is_eucalyptus_path(view.path):
            availability = None
            if self.eucalyptus_capacity is not None and values.get("Availability", "").lower() == "true":
                availability = self.eucalyptus_capacity(ctx, [t["InstanceType"] for t in result.get("InstanceTypes", [])])
            return action, 200, serialize_instance_types(result, request_id, self.eucalyptus_version, availability)
        return action, 200, serialize_response(model, result, request_id, version)


    def _cloudwatch(self, protocol: str, principal: Principal, headers: Any, params: list[tuple[str, str]],
                    body: bytes, request_id: str) -> tuple[str, int, bytes]:
        """A CloudWatch request (ec2gw/aws/cloudwatch.py), authenticated."""
        action = cloudwatch.json_action(headers) if protocol == "json" else dict(params).get("Action", "")
        if not action:
            raise ServiceError("MissingAction", "The request must name its action (X-Amz-Target: "
                               f"{cloudwatch.TARGET_PREFIX}GetMetricStatistics, or Action=GetMetricStatistics).")
        if self.cloudwatch_registry is None or self.cloudwatch_registry.get(action) is None \
                or not has_operation(cloudwatch.SERVICE, action):
            raise ServiceError("InvalidAction", f"The action {action[:64]} is not valid for this endpoint's CloudWatch "
                               "API; it serves ListMetrics, GetMetricStatistics and GetMetricData.")
        model = operation_model(cloudwatch.SERVICE, action)
        if protocol == "json":
            inputs = cloudwatch.parse_json(model, body)
        else:
            inputs = cloudwatch.parse_query_form(model, [(k, v) for k, v in params if k not in _QUERY_META])
        ctx = self.make_context(principal, request_id, cloudwatch.API_VERSION)
        result = self.cloudwatch_registry.call(action, ctx, inputs)
        if protocol == "json":
            return action, 200, cloudwatch.serialize_json(model, result)
        return action, 200, cloudwatch.serialize_query(model, result, request_id)


#: where handle() notes a request's protocol for the error answer: None (EC2), "json" or "query" (CloudWatch)
_PROTOCOL_KEY = "ec2gw.protocol"
#: Query-protocol parameters that are no operation input
_QUERY_META = frozenset({"Action", "Version", "AWSAccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
                         "Timestamp", "Expires", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date",
                         "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"})

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 412: "Precondition Failed", 413: "Request Entity Too Large",
    500: "Internal Server Error", 503: "Service Unavailable",
}
