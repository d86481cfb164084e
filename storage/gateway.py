"""Cumulus's S3 endpoint as a WSGI application: parse -> authenticate -> dispatch -> serialize.

The only storage module that sees HTTP. Requests are path-style (`/bucket/key`). Object bodies
never pass through here as a whole: a PUT body is handed to the operation as a verifying stream
(storage/upload.py), a GET body goes back as the blob file itself (the server's sendfile when the
range lies in one blob) or as a chunk iterator, so memory does not grow with object size.
Errors become S3's <Error> document with the status S3 uses (no body for HEAD).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.model import OperationModel, Shape
from werkzeug.datastructures import EnvironHeaders

from ec2gw.aws.auth import AuthResult, RequestView, authenticate
from ec2gw.aws.body_input import set_receive_timeout, stop_reading
from ec2gw.aws.gateway import raw_path
from ec2gw.aws.restxml_parser import (
    MAX_XML_BODY,
    S3Request,
    S3Router,
    malformed_xml,
    parse_query,
    parse_request,
    split_key,
    split_path,
)
from ec2gw.aws.restxml_serializer import S3Response, serialize_error, serialize_response
from ec2gw.aws.spec import operation_model, service_model
from ec2gw.errors import ServiceError
from storage.api import registry
from storage.blobstore import CHUNK, DIRECT_READ_MIN, BlobStore, SegmentReader
from storage.context import S3Context
from storage.images import ensure_image_bucket
from storage.objects import parse_copy_source
from storage.records import bucket_owner_account
from storage.upload import UploadBody

if TYPE_CHECKING:
    from ec2gw.aws.gateway import Principal
    from storage.host import Host

log = logging.getLogger("ec2gw.cumulus")

#: operations whose XML body must carry Content-MD5 or a checksum (as S3 requires)
_NEEDS_DIGEST = frozenset({"DeleteObjects"})

_REASONS = {
    200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 411: "Length Required",
    412: "Precondition Failed", 413: "Request Entity Too Large", 416: "Requested Range Not Satisfiable",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}


class S3Gateway:
    """WSGI application for Cumulus, given its host (storage/host.py) when it is built."""

    def __init__(self, app: Host) -> None:
        self.app = app
        self.store = BlobStore(app.settings.data_dir / "cumulus", app.settings.cumulus_direct_io)
        self.store.sweep_tmp()  # temp files of uploads a crashed process never finished
        self.router = S3Router(service_model("s3"), registry.names())
        self._subresources, self._literals = _subresources(service_model("s3"))
        self._image_bucket_ready = False
        names = {"localhost", app.settings.advertised_host.lower(), app.settings.public_host.lower()}
        #: ".host" for every DNS name we answer to (addresses cannot carry a bucket label)
        self._vhost_suffixes = tuple(f".{n}" for n in names if n and not _is_address(n))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request_id = secrets.token_hex(8).upper()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        started = time.perf_counter()
        trace = {"operation": "-"}
        try:
            resp = self.handle(environ, method, request_id, trace)
        except ServiceError as err:
            resp = self.error_response(err, environ, method, request_id)
            log.info("%s %s %s -> %s %s", request_id, method, trace["operation"], err.status, err.code)
        except Exception:
            log.exception("%s %s failed", request_id, trace["operation"])
            internal = ServiceError("InternalError", "We encountered an internal error. Please try again.", 500)
            resp = self.error_response(internal, environ, method, request_id)
        else:
            log.debug("%s %s -> %s in %.1f ms", request_id, trace["operation"], resp.status,
                      (time.perf_counter() - started) * 1000)
        return self.send(environ, start_response, method, resp, request_id)

    # ------------------------------------------------------------------ request

    def handle(self, environ: dict[str, Any], method: str, request_id: str, trace: dict[str, str]) -> S3Response:
        path = raw_path(environ)
        query = environ.get("QUERY_STRING", "")
        try:
            query.encode("ascii")
        except UnicodeEncodeError:
            raise ServiceError("InvalidURI", "Couldn't parse the specified URI: percent-encode the query.", 400) from None
        headers = EnvironHeaders(environ)
        vhost_bucket = self.virtual_host_bucket(headers.get("Host"))
        bucket, key = split_path(path) if vhost_bucket is None else (vhost_bucket, split_key(path))
        s3req = S3Request(method, bucket, key, parse_query(query), headers)
        name = trace["operation"] = self.route(s3req)
        principal_box: list[Principal] = []

        def lookup_secret(access_key: str) -> str | None:
            p = self.app.principal_lookup(access_key)  # every request: a removed key stops at once
            principal_box[:] = [p] if p is not None else []
            return None if p is None else p.secret

        auth = self.authenticate(method, path, query, headers, bucket, key, lookup_secret, vhost_bucket)
        principal = principal_box[0] if auth.access_key is not None and principal_box else None
        if bucket is not None and bucket == self.app.settings.image_bucket and not self._image_bucket_ready:
            ensure_image_bucket(self.app)
            self._image_bucket_ready = True
        model = operation_model("s3", name)
        payload = _payload_member(model)

        sock = environ.get("gunicorn.socket")
        timed: list[Any] = []

        def body_factory() -> UploadBody:
            # a client that stops sending gets 400 RequestTimeout instead of holding a thread forever
            if sock is not None and not timed and set_receive_timeout(sock, self.app.settings.body_timeout):
                timed.append(sock)
            return UploadBody.from_request(environ["wsgi.input"], headers, auth.payload_hash, auth.chunk_signer)

        try:
            return self._dispatch(environ, s3req, name, model, payload, headers, principal, request_id, auth,
                                  body_factory)
        except ServiceError as err:
            if err.code == "RequestTimeout" and timed:
                stop_reading(timed[0])
            raise
        finally:
            if timed:
                set_receive_timeout(timed[0], 0)

    def _dispatch(self, environ: dict[str, Any], s3req: S3Request, name: str, model: OperationModel,
                  payload: Shape | None, headers: Any, principal: Principal | None, request_id: str,
                  auth: AuthResult, body_factory: Callable[[], UploadBody]) -> S3Response:
        xml = None
        if payload is not None and payload.type_name == "structure" and _has_body(environ, headers):
            xml = _xml_body(name, body_factory())
        try:
            params = parse_request(model, s3req, xml)
        except OverflowError:
            # a date within hours of year 1 or 9999 with a time zone (If-Modified-Since: Fri, 31 Dec
            # 9999 23:59:59 -2359, Expires, x-amz-object-lock-retain-until-date, ...): converting it to
            # UTC leaves datetime's range
            raise ServiceError("InvalidArgument", "A date in the request is out of range.", 400) from None
        _check_required(model, params)
        self.check_expected_owners(params)
        host = headers.get("Host") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '')}"
        ctx = S3Context(self.app, self.store, principal, request_id, auth,
                        body_factory if payload is not None and payload.type_name == "blob" else None,
                        f"{environ.get('wsgi.url_scheme', 'http')}://{host}", headers)
        return serialize_response(model, registry.call(name, ctx, params))

    def route(self, req: S3Request) -> str:
        """The operation, or 405 MethodNotAllowed / 501 NotImplemented as S3 answers them."""
        name = self.router.match(req)
        if name is not None and any(k in self._subresources and k not in self._literals[name] for k, _ in req.query):
            # a subresource that no operation has for this method (DELETE /bucket?acl, DELETE
            # /bucket/key?retention): the router would fall back on the plain operation and
            # delete the bucket or the object; S3 refuses the method
            name = None
        if name is None:
            err = ServiceError("MethodNotAllowed", "The specified method is not allowed against this resource.", 405,
                               Method=req.method, ResourceType={"object": "OBJECT", "bucket": "BUCKET"}.get(
                                   req.form, "SERVICE"))
            err.headers["Allow"] = ", ".join(self.router.methods_for(req.form))
            raise err
        if registry.get(name) is None:
            raise ServiceError("NotImplemented", f"Cumulus does not implement {name}; see storage/README.md for the "
                               "supported operations.", 501)
        return name

    def authenticate(self, method: str, path: str, query: str, headers: Any, bucket: str | None, key: str | None,
                     lookup_secret: Callable[[str], str | None], vhost_bucket: str | None) -> AuthResult:
        try:
            return authenticate(RequestView(method, path, query, headers), service="s3", lookup_secret=lookup_secret,
                                virtual_host_bucket=vhost_bucket)
        except ServiceError as err:
            # SigV2 signs a bucket as "/bucket/" (botocore's HmacV1Auth does, as S3 documents it); a
            # path-style request for the bucket itself arrives as "/bucket": try that rendering too
            sigv2 = (headers.get("Authorization") or "").startswith("AWS ") or "Signature=" in query
            if err.code != "SignatureDoesNotMatch" or not sigv2 or bucket is None or key is not None \
                    or path.endswith("/") or vhost_bucket is not None:
                raise
            return authenticate(RequestView(method, path + "/", query, headers), service="s3",
                                lookup_secret=lookup_secret)

    def check_expected_owners(self, params: dict[str, Any]) -> None:
        """x-amz-expected-bucket-owner / x-amz-source-expected-bucket-owner: 403 AccessDenied when
        the bucket (the copy source's) belongs to another account, as S3 answers; a client sends
        them so that nothing is written to, or read from, a bucket someone else owns."""
        checks = []
        if params.get("ExpectedBucketOwner") is not None and params.get("Bucket"):
            checks.append((params["Bucket"], params["ExpectedBucketOwner"]))
        if params.get("ExpectedSourceBucketOwner") is not None and params.get("CopySource"):
            checks.append((parse_copy_source(params["CopySource"])[0], params["ExpectedSourceBucketOwner"]))
        for bucket, expected in checks:
            owner = bucket_owner_account(self.app.db, bucket)
            if owner is not None and owner != str(expected).strip():
                raise ServiceError("AccessDenied", "Access Denied", 403)

    def virtual_host_bucket(self, host: str | None) -> str | None:
        """The bucket of a virtual-hosted request (`bucket.<our host name>`), None for path style."""
        if not host:
            return None
        name = host.rsplit(":", 1)[0].lower() if not host.endswith("]") else host
        for suffix in self._vhost_suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return None

    # ------------------------------------------------------------------ response

    def error_response(self, err: ServiceError, environ: dict[str, Any], method: str, request_id: str) -> S3Response:
        extra = dict(err.extra)
        extra.setdefault("Resource", raw_path(environ))
        body = b"" if method == "HEAD" else serialize_error(err.code, err.message, request_id, extra)
        headers = [("Content-Type", "application/xml"), *err.headers.items()]
        return S3Response(err.status, headers, body)

    def send(self, environ: dict[str, Any], start_response: Callable[..., Any], method: str, resp: S3Response,
             request_id: str) -> Iterable[bytes]:
        headers = [(k, v) for k, v in resp.headers]
        headers += [("x-amz-request-id", request_id), ("x-amz-id-2", request_id)]
        body = resp.body
        names = {k.lower() for k, _ in headers}
        if isinstance(body, SegmentReader):
            if "content-length" not in names:
                headers.append(("Content-Length", str(body.length)))
            start_response(f"{resp.status} {_REASONS.get(resp.status, 'OK')}", headers)
            if method == "HEAD":
                body.close()
                return []
            if body.length >= DIRECT_READ_MIN and (direct := body.direct_chunks()) is not None:
                return direct
            # gunicorn's wrapper sends exactly Content-Length bytes from the file's position (sendfile);
            # generic wrappers read to the end of the file, so they only get plain chunks
            wrapper = environ.get("wsgi.file_wrapper") if "gunicorn.socket" in environ else None
            single = body.take_single_file() if wrapper is not None else None
            if single is not None:
                return wrapper(single, CHUNK)  # type: ignore[misc]  # gunicorn: sendfile() from the position
            return _ChunkResponse(body)
        if isinstance(body, (bytes, bytearray)):
            if body or resp.status not in (204, 304):
                if "content-length" not in names:
                    headers.append(("Content-Length", str(len(body))))
            elif resp.status == 204:
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            start_response(f"{resp.status} {_REASONS.get(resp.status, 'OK')}", headers)
            return [] if method == "HEAD" or not body else [bytes(body)]
        raise TypeError(f"unexpected response body {type(body).__name__}")


def _subresources(model: Any) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """The query keys that name a subresource (`?acl`, `?uploads`, `?retention`: keys without a
    value in some operation's requestUri), and each operation's own."""
    every: set[str] = set()
    own: dict[str, frozenset[str]] = {}
    for name in model.operation_names:
        query = model.operation_model(name).http.get("requestUri", "").partition("?")[2]
        keys = [item.partition("=") for item in query.split("&") if item]
        own[name] = frozenset(k for k, _, _ in keys)
        every.update(k for k, eq, _ in keys if not eq)
    return frozenset(every), own


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def _payload_member(model: OperationModel) -> Shape | None:
    shape = model.input_shape
    name = shape.serialization.get("payload") if shape is not None else None
    return shape.members[name] if shape is not None and name else None


def _xml_body(operation: str, body: UploadBody) -> bytes:
    """The verified XML body of an operation that takes one."""
    if operation in _NEEDS_DIGEST and body.md5 is None and body.algorithm is None:
        raise ServiceError("InvalidRequest", "Missing required header for this request: Content-MD5", 400)
    return body.read_all(MAX_XML_BODY)


def _check_required(model: OperationModel, params: dict[str, Any]) -> None:
    shape = model.input_shape
    if shape is None:
        return
    for member in shape.required_members:
        if member not in params:
            if member == shape.serialization.get("payload"):
                raise malformed_xml("the request body is missing")
            raise ServiceError("InvalidRequest", f"Missing required parameter {member}.", 400)


def _has_body(environ: dict[str, Any], headers: Any) -> bool:
    length = (environ.get("CONTENT_LENGTH") or "").strip()
    if length:
        return length != "0"
    return "chunked" in (headers.get("Transfer-Encoding") or "").lower()


class _ChunkResponse:
    """The object's bytes as a WSGI iterable that closes its files when the server is done."""

    def __init__(self, reader: SegmentReader) -> None:
        self.reader = reader

    def __iter__(self) -> Iterator[bytes]:
        return self.reader.chunks()

    def close(self) -> None:
        self.reader.close()
