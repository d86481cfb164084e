"""What Cumulus is given when it is built: the narrow services it uses of the rest of the cloud.

Cumulus does not import the EC2 application. The application hands it a host (`Host`: the
settings, the database, who is calling, the storage quota rule) when it builds the S3 gateway
and the Python object API, as nova hands a virt driver its VirtAPI. ec2gw.app.App is such a host
(and so is anything with these four members, e.g. in tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ec2gw.caller_context import ServiceParts

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from ec2gw.aws.gateway import Principal
    from ec2gw.errors import ServiceError


class StorageQuota(Protocol):
    """The storage quota rule: how many bytes a user may hold in Cumulus (ec2gw.quotas owns it).
    Hashable: Cumulus builds its statements once per rule."""

    def __hash__(self) -> int: ...

    def limit(self, conn: Connection, user_id: int) -> int | None:
        """The user's limit in bytes; None for no limit (and for an unknown user)."""
        ...

    def limit_columns(self, user_id: Any) -> tuple[Any, Any]:
        """Scalar subqueries of the user's and of their group's quota column, for a query of
        Cumulus's own (the commit reads them inside its write lock, in the statement it already runs)."""
        ...

    def effective_limit(self, user_value: int | None, group_value: int | None) -> int | None:
        """The limit from the values limit_columns() read (None: not set there)."""
        ...

    def exceeded(self, limit: int, used: int, extra_bytes: int) -> ServiceError:
        """The error (403 QuotaExceeded) for storing extra_bytes more with `used` already held."""
        ...


class Host(ServiceParts, Protocol):
    """Everything Cumulus uses of the service it runs in: the settings, the database and the token
    key (ServiceParts), and the members below."""

    @property
    def storage_quota(self) -> StorageQuota: ...

    def principal_lookup(self, access_key: str) -> Principal | None:
        """The caller owning `access_key` (None: no such key, or its user is disabled)."""
        ...
