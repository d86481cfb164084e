"""The application factory: settings -> database, providers, gateways, one WSGI callable.

One App per process. Gunicorn builds it in each worker after forking, so no database connection
or libvirt connection is ever shared across processes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backends.base import DomainNotFound, DriverError, NodeUnavailable
from ec2gw import accounts, quotas, token_key
from ec2gw.api.context import RequestContext
from ec2gw.api.regions import eucalyptus_availability
from ec2gw.aws import dispatch
from ec2gw.aws.gateway import Ec2Gateway, Principal
from ec2gw.compute.drivers import DriverPool
from ec2gw.compute.placement import NodeRef, node_ref
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node
from ec2gw.db.session import Database
from ec2gw.errors import ServiceError
from ec2gw.network import selection
from storage.gateway import S3Gateway
from storage.service import CumulusService

log = logging.getLogger("ec2gw")

API_MODULES = ("regions", "instances", "instance_actions", "images", "keypairs", "tags", "security_groups", "addresses",
               "create_image", "metrics", "vpcs", "interfaces", "volumes", "volume_attachments", "snapshots")


def load_providers() -> dispatch.Registry:
    for name in API_MODULES:
        try:
            importlib.import_module(f"ec2gw.api.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ec2gw.api.{name}":
                raise
    return dispatch.ec2


class App:
    def __init__(self, settings: Settings, db: Database | None = None) -> None:
        self.settings = settings
        self.db = db or Database(settings.db_url)
        self.drivers = DriverPool()
        self.registry = load_providers()
        #: Cumulus's quota rule, given to Cumulus with the rest of its host (storage/host.py: this App)
        self.storage_quota = quotas.StorageQuotaRule(settings)
        self.ec2 = Ec2Gateway(self.registry, self.principal_lookup, self.make_context, settings.body_timeout,
                              sigv2_max_expires=settings.sigv2_max_expires,
                              eucalyptus_version=settings.eucalyptus_version,
                              eucalyptus_capacity=eucalyptus_availability,
                              cloudwatch_registry=dispatch.cloudwatch)
        self.s3 = S3Gateway(self)
        #: Cumulus's Python API, for the providers and the compute worker (ec2gw/compute/cumulus.py)
        self.cumulus = CumulusService(self, self.s3.store)

    @cached_property
    def token_key(self) -> bytes:
        """The installation's key for pagination tokens (<data dir>/token.key, made on first use)."""
        return token_key.load_or_create(self.settings.data_dir)

    def principal_lookup(self, access_key: str) -> Principal | None:
        with self.db.engine.connect() as conn:
            u = accounts.by_access_key(conn, access_key)
        if u is None:
            return None
        return Principal(u.id, u.name, u.account_id, u.secret_key, u.is_admin, u.group)

    def make_context(self, principal: Principal, request_id: str, version: str | None) -> RequestContext:
        return RequestContext(self, principal, request_id, version)

    # -- services the providers use -----------------------------------------------------------
    def instance_limit(self, principal: Principal) -> int:
        """How many instances the caller may have (quotas refine this)."""
        return quotas.instance_limit(self.db, self.settings, principal)

    def assign_addresses(self, s: Session, instances: list[Instance], slots: list[NodeRef],
                         min_count: int | None = None, requested: Sequence[selection.NicRequest] | None = None,
                         map_public: bool = True) -> list[Instance]:
        """Addresses (one NIC per distinct pool its type and node call for, or per ``requested``
        subnet) for as many new instances as the pools allow, at least ``min_count``; returns those
        that got them."""
        return selection.assign(s, self.settings, instances, slots, min_count, requested, map_public)

    def node_reachability(self, s: Session) -> dict[str, bool]:
        return {name: ok for name, ok in s.execute(select(Node.name, Node.reachable))}

    def console_output(self, node_name: str | None, instance_id: str) -> bytes:
        with self.db.session() as s:
            node = node_ref(s, self.settings, node_name)
            row = s.get(Node, node.name)
            if row is not None and not row.reachable:
                raise ServiceError(
                    "ServiceUnavailable",
                    f"The node {node.name} running {instance_id} does not answer; try again when it is back.",
                    status=503,
                )
        try:
            return self.drivers.get(node).console_output(instance_id)
        except DomainNotFound:
            return b""
        except NodeUnavailable as exc:
            raise ServiceError(
                "ServiceUnavailable", f"The node running {instance_id} does not answer ({exc}); try again later.", status=503
            ) from None
        except DriverError as exc:  # the node answered but could not hand out the log
            log.warning("console of %s on node %s: %s", instance_id, node.name, exc)
            raise ServiceError(
                "ServiceUnavailable",
                f"The node could not read the console of {instance_id}; try again later, or ask the administrator "
                "(the service log names the cause).",
                status=503,
            ) from None

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Both endpoints in one callable: the listener's port decides which answers."""
        port = str(environ.get("SERVER_PORT", ""))
        if port == str(self.settings.s3_port):
            return self.s3(environ, start_response)
        return self.ec2(environ, start_response)

    __call__ = wsgi
