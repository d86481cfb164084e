"""The registry of VMM nodes: what `ec2gw admin node add|list|show|update|remove` does.

A node is a libvirt URI (qemu+ssh, qemu+tcp, qemu+tls, qemu+unix, test+tcp, ...) with a capacity
in vCPUs and memory, a zone, the network pools it serves, the type of its domains and an active
flag. Capacity not given by the administrator is read from the node itself (libvirt's node info),
so registering a reachable node needs only its name and URI. The domain type is never detected:
libvirt advertises kvm on machines where KVM is unusable, so it is `qemu` unless the administrator
says `kvm` (test-driver URIs always run `test` domains, Xen URIs `xen` ones).

Removing a node that still has instances is refused: they would lose their node. With force, its
instances are marked terminated in the database (their domains on the node are left alone, as the
node may be gone for good) and their addresses are released. Either way the records of the images
cached on the node go too: a node added again under that name starts with none, and a cached
volume found there is reused only once its bytes are verified (compute/image_cache.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from backends.base import NodeInfo
from backends.filters import FILTERING_DOMAIN_TYPES
from backends.registry import driver_for
from ec2gw.compute.image_models import NodeImage
from ec2gw.compute.node_models import UnknownDomain
from ec2gw.compute.placement import LOCAL_NODE, OCCUPYING_STATES, split_pools, usage
from ec2gw.db.models import Instance, Node
from ec2gw.network import pools as address_pools
from ec2gw.network.models import Pool

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_DRIVERS = ("qemu", "test", "xen", "lxc", "vz", "bhyve", "ch")
_TRANSPORTS = ("", "ssh", "libssh", "libssh2", "tcp", "tls", "unix", "ext")
CONFIGURABLE_DOMAIN_TYPES = ("qemu", "kvm", "xen")
#: seconds the registry waits for a node to report its capacity
PROBE_TIMEOUT = 10.0


class NodeError(ValueError):
    """A registry request that cannot be carried out; the message says what to do instead."""


@dataclass
class NodeView:
    """A node as the administrator sees it: registration, health and what runs on it."""

    name: str
    uri: str
    zone: str
    pools: list[str]
    domain_type: str
    active: bool
    reachable: bool
    vcpus: int
    memory_mib: int
    used_vcpus: int = 0
    used_memory_mib: int = 0
    instances: int = 0
    #: MiB of node storage the saved memory of its hibernated instances may take (their memory, at most)
    saved_state_mib: int = 0
    unknown_domains: list[dict[str, Any]] = field(default_factory=list)
    last_error: str = ""
    #: whether the node filters its guests' traffic by their security groups (libvirt nwfilter)
    enforces_security_groups: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_name(name: str, what: str = "node name") -> str:
    if not _NAME_RE.match(name or ""):
        raise NodeError(f"{what} {name!r} is not valid: use 1-64 letters, digits, '.', '_' or '-', starting "
                        "with a letter or digit")
    return name


def check_uri(uri: str) -> str:
    """A libvirt URI such as qemu+ssh://host/system or test+tcp://10.77.0.1/default."""
    parts = urlsplit(uri)
    driver, _, transport = parts.scheme.partition("+")
    if driver not in _DRIVERS or transport not in _TRANSPORTS or not parts.path.startswith("/"):
        raise NodeError(f"{uri!r} is not a libvirt URI: use DRIVER[+TRANSPORT]://[HOST]/PATH, e.g. "
                        "qemu+ssh://host/system, qemu+tcp://10.0.0.5/system or test+tcp://10.77.0.1/default")
    if transport in ("ssh", "libssh", "libssh2", "tcp", "tls") and not parts.hostname:
        raise NodeError(f"{uri!r} names no host: a {transport} URI needs one, e.g. {driver}+{transport}://HOST{parts.path}")
    return uri


def is_test_uri(uri: str) -> bool:
    return urlsplit(uri).scheme.partition("+")[0] == "test"


def domain_type_for(uri: str, requested: str | None) -> str:
    """The domain type to register: `test` for test-driver URIs, `xen` for Xen ones (libvirt's libxl
    driver, xen://...), else what was asked (qemu by default)."""
    if is_test_uri(uri):
        if requested not in (None, "test"):
            raise NodeError(f"{uri} is libvirt's test driver, which runs only 'test' domains; leave out --domain-type")
        return "test"
    driver = urlsplit(uri).scheme.partition("+")[0]
    if driver == "xen":
        if requested not in (None, "xen"):
            raise NodeError(f"{uri} is libvirt's Xen driver, which runs only 'xen' domains; leave out --domain-type "
                            "or give xen")
        return "xen"
    if requested == "xen":
        raise NodeError(f"--domain-type xen needs a Xen node's URI, like xen+ssh://HOST/system or xen:///system; "
                        f"{uri} is libvirt's {driver} driver")
    if requested is None:
        return "qemu"
    if requested not in CONFIGURABLE_DOMAIN_TYPES:
        raise NodeError(f"domain type {requested!r} is not one of {', '.join(CONFIGURABLE_DOMAIN_TYPES)}: "
                        "kvm on hosts with hardware virtualization, qemu (TCG) elsewhere, xen on Xen hosts")
    return requested


def probe_capacity(uri: str, domain_type: str, timeout: float = PROBE_TIMEOUT) -> NodeInfo:
    """Ask the node for its memory and logical CPUs (NodeUnavailable when it does not answer)."""
    drv = driver_for(uri, domain_type, timeout=timeout)
    try:
        return drv.node_info()
    finally:
        drv.close()


def _existing_pools(s: Session) -> set[str]:
    return set(s.scalars(select(Pool.name)))


def check_pools(s: Session, names: list[str]) -> list[str]:
    known = _existing_pools(s)
    for name in names:
        if name not in known:
            raise NodeError(f"network pool {name!r} does not exist; add it first with "
                            f"`ec2gw admin pool add {name} FILE` (`ec2gw admin pool list` shows the pools)")
    return names


def add_node(s: Session, *, name: str, uri: str, zone: str, memory_mib: int | None = None, vcpus: int | None = None,
             pools: list[str] | None = None, domain_type: str | None = None,
             probe: Callable[[str, str], NodeInfo] | None = None) -> Node:
    """Register a node. ``probe`` reads capacity not given (called before anything is written)."""
    check_name(name)
    if name == LOCAL_NODE:
        raise NodeError(f"'{LOCAL_NODE}' is the implicit node used while none is registered; choose another name")
    check_name(zone, "zone name")
    check_uri(uri)
    dtype = domain_type_for(uri, domain_type)
    if s.get(Node, name) is not None:
        raise NodeError(f"node {name!r} already exists; `ec2gw admin node update {name}` changes it, "
                        f"`ec2gw admin node remove {name}` removes it")
    same = s.scalar(select(Node.name).where(Node.uri == uri))
    if same is not None:
        raise NodeError(f"node {same!r} already has URI {uri}; one node per URI, or its capacity would count twice")
    for value, what in ((memory_mib, "--memory"), (vcpus, "--vcpus")):
        if value is not None and value <= 0:
            raise NodeError(f"{what} must be a positive number, got {value}")
    check_pools(s, pools or [])
    if memory_mib is None or vcpus is None:
        if probe is None:
            raise NodeError("give --memory and --vcpus, or let the registry ask the node")
        info = probe(uri, dtype)
        memory_mib = memory_mib if memory_mib is not None else info.memory_mib
        vcpus = vcpus if vcpus is not None else info.vcpus
    node = Node(name=name, uri=uri, memory_mib=memory_mib, vcpus=vcpus, zone=zone, pools=",".join(pools or []),
                domain_type=dtype, active=True, reachable=True, last_error="")
    s.add(node)
    s.flush()
    return node


def get_node(s: Session, name: str) -> Node:
    node = s.get(Node, name)
    if node is None:
        known = ", ".join(s.scalars(select(Node.name).order_by(Node.name))) or "none"
        raise NodeError(f"there is no node {name!r}; registered nodes: {known} (`ec2gw admin node add` adds one)")
    return node


def update_node(s: Session, name: str, *, active: bool | None = None, memory_mib: int | None = None,
                vcpus: int | None = None) -> Node:
    """Change a node. Lowering capacity below what runs there is allowed: it only stops new placements."""
    node = get_node(s, name)
    for value, what in ((memory_mib, "--memory"), (vcpus, "--vcpus")):
        if value is not None and value <= 0:
            raise NodeError(f"{what} must be a positive number, got {value}")
    values: dict[str, Any] = {}
    if active is not None:
        values["active"] = active
    if memory_mib is not None:
        values["memory_mib"] = memory_mib
    if vcpus is not None:
        values["vcpus"] = vcpus
    if values:
        s.execute(update(Node).where(Node.name == name).values(**values))
        s.refresh(node)
    return node


def live_instances(s: Session, name: str) -> list[str]:
    return list(s.scalars(select(Instance.id).where(Instance.node_name == name, Instance.state != "terminated")
                          .order_by(Instance.id)))


def remove_node(s: Session, name: str, *, force: bool = False) -> list[str]:
    """Remove a node; returns the instances that were marked terminated (only with ``force``)."""
    get_node(s, name)
    ids = live_instances(s, name)
    if ids and not force:
        shown = ", ".join(ids[:5]) + (" ..." if len(ids) > 5 else "")
        raise NodeError(f"node {name!r} still has {len(ids)} instance(s) ({shown}); terminate them first, or "
                        f"`ec2gw admin node update {name} --inactive` to stop new placements, or --force to "
                        "remove the node and mark its instances terminated")
    now = datetime.now(UTC)
    for iid in ids:
        s.execute(update(Instance).where(Instance.id == iid).values(
            state="terminated", task=None, terminated_at=now, reboot_pending=False, state_reason_code="Server.InternalError",
            state_reason_message=f"Server.InternalError: node {name} was removed by the administrator"))
        address_pools.release(s, iid)
    s.execute(delete(UnknownDomain).where(UnknownDomain.node_name == name))
    # the records of its cached images: a node added again under this name may be another machine,
    # and image_cache verifies a volume it finds there before it reuses it
    s.execute(delete(NodeImage).where(NodeImage.node_name == name))
    s.execute(delete(Node).where(Node.name == name))
    return ids


def enforces_security_groups(domain_type: str) -> bool:
    """QEMU/KVM nodes filter their guests' traffic by security group (libvirt's network filters);
    libvirt's test driver has no network filters and its libxl driver applies none to Xen guests."""
    return domain_type in FILTERING_DOMAIN_TYPES


def security_groups_line(domain_type: str) -> str:
    """What `admin node show` says about the node's enforcement of security groups."""
    if enforces_security_groups(domain_type):
        return ("security groups: enforced (libvirt network filters on each NIC: the instance's rules, "
                "anti-spoofing, DHCP, then drop)")
    why = ("libvirt's test driver has no network filters" if domain_type == "test"
           else f"libvirt applies no network filters to {domain_type} domains")
    return f"security groups: NOT enforced ({why}): rules are kept and shown, traffic is not filtered"


def _view(n: Node, used: tuple[int, int], count: int, unknown: list[dict[str, Any]], saved: int = 0) -> NodeView:
    return NodeView(name=n.name, uri=n.uri, zone=n.zone, pools=list(split_pools(n.pools)), domain_type=n.domain_type,
                    active=n.active, reachable=n.reachable, vcpus=n.vcpus, memory_mib=n.memory_mib, used_vcpus=used[0],
                    used_memory_mib=used[1], instances=count, saved_state_mib=saved, unknown_domains=unknown,
                    last_error=n.last_error, enforces_security_groups=enforces_security_groups(n.domain_type))


def _unknown(s: Session, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    q = select(UnknownDomain).where(UnknownDomain.node_name.in_(names)).order_by(UnknownDomain.domain)
    for u in s.scalars(q):
        out.setdefault(u.node_name, []).append(
            {"domain": u.domain, "state": u.state, "first_seen": u.first_seen.isoformat(),
             "last_seen": u.last_seen.isoformat()})
    return out


def list_nodes(s: Session) -> list[NodeView]:
    nodes = list(s.scalars(select(Node).order_by(Node.name)))
    names = [n.name for n in nodes]
    used = usage(s, names)
    counts = dict(s.execute(select(Instance.node_name, func.count()).where(
        Instance.node_name.in_(names), Instance.state.in_(OCCUPYING_STATES)).group_by(Instance.node_name)).all())
    unknown = _unknown(s, names)
    saved = dict(s.execute(select(Instance.node_name, func.sum(Instance.memory_mib)).where(
        Instance.node_name.in_(names), Instance.state == "stopped", Instance.hibernated.is_(True))
        .group_by(Instance.node_name)).all())
    return [_view(n, used.get(n.name, (0, 0)), int(counts.get(n.name, 0)), unknown.get(n.name, []),
                  int(saved.get(n.name) or 0)) for n in nodes]


def show_node(s: Session, name: str) -> dict[str, Any]:
    node = get_node(s, name)
    view = next(v for v in list_nodes(s) if v.name == node.name)
    rows = s.execute(select(Instance.id, Instance.state, Instance.instance_type).where(
        Instance.node_name == name, Instance.state != "terminated").order_by(Instance.id))
    data = view.as_dict()
    data["instance_ids"] = [{"id": i, "state": st, "type": t} for i, st, t in rows]
    return data
