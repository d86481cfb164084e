"""What a provider gets with every request: who is calling, the request id, the service's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ec2gw.errors import dry_run_ok

if TYPE_CHECKING:
    from ec2gw.app import App
    from ec2gw.aws.gateway import Principal
    from ec2gw.config import Settings
    from ec2gw.db.session import Database


@dataclass
class RequestContext:
    app: App
    principal: Principal
    request_id: str
    version: str | None = None

    @property
    def db(self) -> Database:
        return self.app.db

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    def user_id(self) -> int:
        return self.principal.user_id

    def check_dry_run(self, dry_run: bool | None) -> None:
        """EC2's DryRun: the request was valid and permitted, so answer DryRunOperation."""
        if dry_run:
            raise dry_run_ok()
