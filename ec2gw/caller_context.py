"""What the EC2 providers' and Cumulus's request contexts share: the service's database and
settings, and the caller's continuation tokens (ec2gw/api/context.py, storage/context.py)."""

from __future__ import annotations

from typing import Protocol

from ec2gw.aws.gateway import Principal
from ec2gw.aws.pagination import Tokens
from ec2gw.config import Settings
from ec2gw.db.session import Database


class ServiceParts(Protocol):
    """The parts of the service every request context reaches (ec2gw.app.App is one)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def db(self) -> Database: ...

    @property
    def token_key(self) -> bytes: ...


class CallerContext:
    """A request's service (``app``) and caller (``principal``, None for an anonymous one); the
    dataclasses built on it hold both."""

    app: ServiceParts
    principal: Principal | None

    @property
    def db(self) -> Database:
        return self.app.db

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @property
    def tokens(self) -> Tokens:
        """NextTokens (continuation tokens) for this caller under the installation's key."""
        return Tokens(self.app.token_key, "anonymous" if self.principal is None else f"user:{self.principal.user_id}")
