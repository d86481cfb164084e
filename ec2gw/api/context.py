"""What a provider gets with every request: who is calling, the request id, the service's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ec2gw.caller_context import CallerContext, ServiceParts
from ec2gw.errors import dry_run_ok
from ec2gw.images import ImageServices

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.orm import Session

    from ec2gw.aws.gateway import Principal
    from ec2gw.compute.placement import NodeRef
    from ec2gw.db.models import Instance
    from ec2gw.network.selection import NicRequest


class Services(ImageServices, ServiceParts, Protocol):
    """The parts of the service the providers use (ec2gw.app.App builds them and is one): the image
    rules' settings, database and Cumulus, the token key, and the rest below."""

    def instance_limit(self, principal: Principal) -> int: ...

    def assign_addresses(self, s: Session, instances: list[Instance], slots: list[NodeRef],
                         min_count: int | None = None, requested: Sequence[NicRequest] | None = None,
                         map_public: bool = True) -> list[Instance]: ...

    def node_reachability(self, s: Session) -> dict[str, bool]: ...

    def console_output(self, node_name: str | None, instance_id: str) -> bytes: ...


@dataclass
class RequestContext(CallerContext):
    app: Services
    principal: Principal
    request_id: str
    version: str | None = None

    @property
    def user_id(self) -> int:
        return self.principal.user_id

    def check_dry_run(self, dry_run: bool | None) -> None:
        """EC2's DryRun: the request was valid and permitted, so answer DryRunOperation."""
        if dry_run:
            raise dry_run_ok()
