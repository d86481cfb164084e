"""What every Cumulus operation gets: the caller, the request, the store; and the operation registry.

Operations are typed functions registered by name (`@operation("PutObject")`), taking the context
and the input members as snake_case keyword arguments, returning a dict keyed by output members,
exactly as the EC2 providers do (ec2gw.aws.dispatch).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ec2gw.aws.dispatch import Registry
from ec2gw.caller_context import CallerContext
from ec2gw.errors import ServiceError

if TYPE_CHECKING:
    from ec2gw.aws.auth import AuthResult
    from ec2gw.aws.gateway import Principal
    from storage.blobstore import BlobStore
    from storage.host import Host, StorageQuota
    from storage.upload import UploadBody

#: the S3 operations; storage modules register into it at import
s3 = Registry()
operation = s3.operation


@dataclass
class S3Context(CallerContext):
    #: what Cumulus was given when it was built (storage/host.py)
    app: Host
    store: BlobStore
    principal: Principal | None
    request_id: str
    auth: AuthResult | None = None
    #: the request body as a verified stream (PutObject, UploadPart); built by the gateway on demand
    body_factory: Callable[[], UploadBody] | None = None
    #: "http://host:port" as the client addressed us (for Location in CompleteMultipartUpload)
    base_url: str = ""
    headers: Any = field(default_factory=dict)

    @property
    def storage_quota(self) -> StorageQuota:
        return self.app.storage_quota

    @property
    def user_id(self) -> int | None:
        return None if self.principal is None else self.principal.user_id

    @property
    def anonymous(self) -> bool:
        return self.principal is None

    @cached_property
    def body(self) -> UploadBody:
        if self.body_factory is None:
            raise ServiceError("MissingRequestBodyError", "Request Body is empty.", 400)
        return self.body_factory()


def no_such_bucket(name: str) -> ServiceError:
    return ServiceError("NoSuchBucket", "The specified bucket does not exist.", 404, BucketName=name)


def no_such_key(key: str) -> ServiceError:
    return ServiceError("NoSuchKey", "The specified key does not exist.", 404, Key=key)


def no_such_upload(upload_id: str) -> ServiceError:
    return ServiceError(
        "NoSuchUpload",
        "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been "
        "aborted or completed.",
        404,
        UploadId=upload_id,
    )


def access_denied(message: str = "Access Denied") -> ServiceError:
    return ServiceError("AccessDenied", message, 403)


def invalid_argument(message: str, name: str | None = None, value: Any = None) -> ServiceError:
    extra = {"ArgumentName": name, "ArgumentValue": str(value)} if name else {}
    return ServiceError("InvalidArgument", message, 400, **extra)


def invalid_request(message: str) -> ServiceError:
    return ServiceError("InvalidRequest", message, 400)


def check_version_id(version_id: str | None) -> None:
    """Buckets are unversioned: the only version of an object is "null"; any other versionId is
    refused (S3's answer on an unversioned bucket), never taken to mean the current object."""
    if version_id not in (None, "null"):
        raise invalid_argument("Invalid version id specified", "versionId", version_id)
