"""Security groups as network filters on a node: the translation, and the interface that defines them.

A node filters a guest's traffic with libvirt's network filters (nwfilter): named documents of
rules, defined on the node through the API, that a domain's <interface> references with
``<filterref filter=NAME><parameter name='IP' .../></filterref>``. This module is pure: it turns
security group rules into :class:`FilterSpec` objects (no libvirt, no database), so the
translation is testable on its own; backends/libvirt/filters.py defines them on a node.

What a guest's NIC gets (one filter per instance, ``ec2gw-i-<instance id>``, referenced by each
of its NICs with that NIC's address as ``IP``):

- libvirt's ``clean-traffic``: the guest sends only from its own MAC and from ``IP`` (ARP and
  IPv4 alike), no other layer-2 traffic: anti-spoofing, as Nimbus did with ebtables;
- DHCP to and from the guest, whatever the rules (priority 100);
- one filter per security group of the instance, ``ec2gw-sg-<group id>`` (accept rules at
  priority 500: the instance gets the union of its groups' rules, as on EC2);
- then drop everything else, in and out (priority 1000).

Accept rules match connection state (libvirt's default ``statematch``): the replies to an
admitted inbound connection go out, and the replies to an admitted outbound one come in, so
rules are stateful as EC2's are. A rule naming a group is expanded to one rule per address of
that group's members (the caller passes the members' addresses); a group with no members
admits nobody.
"""

from __future__ import annotations

import ipaddress
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backends.base import InvalidSpec

#: the domain types whose NICs libvirt filters (QEMU/KVM); not libvirt's test driver, not Xen (libxl)
FILTERING_DOMAIN_TYPES = ("qemu", "kvm")
GROUP_PREFIX = "ec2gw-sg-"
INSTANCE_PREFIX = "ec2gw-i-"
#: libvirt's own filter that keeps a guest to its MAC and its ``IP`` parameter
ANTI_SPOOFING = "clean-traffic"
DHCP_PRIORITY = 100
RULE_PRIORITY = 500
DROP_PRIORITY = 1000
#: IP protocol numbers nwfilter has an element for (its iptables layer, with connection state)
PROTOCOL_NUMBERS = {"1": "icmp", "2": "igmp", "6": "tcp", "17": "udp", "50": "esp", "51": "ah", "132": "sctp",
                    "136": "udplite"}
FILTER_PROTOCOLS = ("all", "tcp", "udp", "icmp", "igmp", "esp", "ah", "sctp", "udplite")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True, slots=True)
class FilterRule:
    """One nwfilter <rule>: ``action`` accept/drop/return, ``direction`` in (to the guest), out or
    inout, a ``protocol`` element (all, tcp, udp, icmp, ...) with its attributes (srcipaddr,
    srcipmask, dstportstart, type, ...) as sorted (name, value) pairs."""

    action: str
    direction: str
    protocol: str
    priority: int = RULE_PRIORITY
    attrs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.action not in ("accept", "drop", "reject", "return", "continue"):
            raise InvalidSpec(f"filter rule action {self.action!r} is not accept, drop, reject, return or continue")
        if self.direction not in ("in", "out", "inout"):
            raise InvalidSpec(f"filter rule direction {self.direction!r} is not in, out or inout")
        object.__setattr__(self, "attrs", tuple(sorted(self.attrs)))


@dataclass(slots=True)
class FilterSpec:
    """A named filter: filters it includes (``refs``, by name) and its own rules.

    ``uuid`` is the node's: a redefinition must carry the uuid the filter already has there, which
    the driver fills in. Two specs are the same filter when name, chain, refs and rules match.
    """

    name: str
    refs: list[str] = field(default_factory=list)
    rules: list[FilterRule] = field(default_factory=list)
    chain: str = "root"
    uuid: str | None = None

    def __post_init__(self) -> None:
        for name in (self.name, *self.refs):
            if not _NAME_RE.match(name):
                raise InvalidSpec(f"{name!r} is not a valid filter name (letters, digits, _ . : -)")

    def same_as(self, other: FilterSpec) -> bool:
        """True when ``other`` filters exactly as this one does (the uuid aside)."""
        return (self.name, self.chain, sorted(self.refs), sorted(self.rules, key=_rule_key)) == \
            (other.name, other.chain, sorted(other.refs), sorted(other.rules, key=_rule_key))


def _rule_key(r: FilterRule) -> tuple[int, str, str, str, tuple[tuple[str, str], ...]]:
    return (r.priority, r.direction, r.action, r.protocol, r.attrs)


@dataclass(frozen=True, slots=True)
class GroupRule:
    """A security group rule as the database keeps it: ``protocol`` -1 (all), tcp, udp, icmp or an
    IP protocol number; ports (ICMP: type and code; None or -1 for any); one peer, an IPv4 CIDR
    or a group whose members' addresses it admits."""

    egress: bool
    protocol: str
    from_port: int | None = None
    to_port: int | None = None
    cidr: str | None = None
    group: str | None = None


def group_filter_name(group_id: str) -> str:
    return GROUP_PREFIX + group_id


def instance_filter_name(instance_id: str) -> str:
    return INSTANCE_PREFIX + instance_id


def filter_protocol(protocol: str) -> str | None:
    """The nwfilter element for an EC2 protocol (-1, a name or a number); None when nwfilter has none."""
    text = protocol.strip().lower()
    if text in ("-1", "all"):
        return "all"
    if text in FILTER_PROTOCOLS:
        return text
    return PROTOCOL_NUMBERS.get(text)


def _peers(rule: GroupRule, members: Mapping[str, Sequence[str]]) -> list[tuple[str, int] | None]:
    """The peer networks of a rule as (address, prefix); None stands for everyone (0.0.0.0/0)."""
    if rule.cidr is not None:
        net = ipaddress.IPv4Network(rule.cidr, strict=False)
        return [None] if net.prefixlen == 0 else [(str(net.network_address), net.prefixlen)]
    if rule.group is not None:
        return [(str(ipaddress.IPv4Address(ip)), 32) for ip in sorted(set(members.get(rule.group, ())))]
    return []


def _port_attrs(protocol: str, rule: GroupRule) -> list[tuple[str, str]]:
    low, high = rule.from_port, rule.to_port
    if protocol in ("tcp", "udp", "sctp", "udplite"):
        if low is None or high is None or low < 0 or (low, high) == (0, 65535):
            return []
        return [("dstportstart", str(low)), ("dstportend", str(high))]
    if protocol == "icmp":
        out = []
        if low is not None and low >= 0:
            out.append(("type", str(low)))
            if high is not None and high >= 0:
                out.append(("code", str(high)))
        return out
    return []


def translate_rule(rule: GroupRule, members: Mapping[str, Sequence[str]]) -> list[FilterRule]:
    """The accept rules for one security group rule ([] when its peer group has no members).

    Ingress rules match the packet's source (``srcipaddr``/``srcipmask``), egress rules its
    destination; ports are always the destination's (the guest's for ingress, the remote one's
    for egress). Raises ValueError for a protocol nwfilter cannot express (see :func:`filter_protocol`).
    """
    protocol = filter_protocol(rule.protocol)
    if protocol is None:
        raise ValueError(f"IP protocol {rule.protocol} has no nwfilter element; only {', '.join(FILTER_PROTOCOLS)} "
                         "(or their numbers) are enforced")
    side = "dst" if rule.egress else "src"
    ports = _port_attrs(protocol, rule)
    out = []
    for peer in _peers(rule, members):
        attrs = list(ports)
        if peer is not None:
            attrs += [(f"{side}ipaddr", peer[0]), (f"{side}ipmask", str(peer[1]))]
        out.append(FilterRule("accept", "out" if rule.egress else "in", protocol, RULE_PRIORITY, tuple(attrs)))
    return out


@dataclass
class Translation:
    """A group's filter and the rules of the group that could not be enforced, with why."""

    spec: FilterSpec
    skipped: list[tuple[GroupRule, str]] = field(default_factory=list)


def group_filter(group_id: str, rules: Iterable[GroupRule], members: Mapping[str, Sequence[str]]) -> Translation:
    """The filter of one security group: an accept rule per rule and peer address.

    ``members`` maps a group id to the IPv4 addresses of the instances in it, for the rules that
    name a group (the group itself, for a default group's rule). Rules are ordered so that the
    same rules always give the same document.
    """
    out: list[FilterRule] = []
    skipped: list[tuple[GroupRule, str]] = []
    for rule in rules:
        try:
            out.extend(translate_rule(rule, members))
        except ValueError as exc:
            skipped.append((rule, str(exc)))
    unique = sorted(set(out), key=_rule_key)
    return Translation(FilterSpec(group_filter_name(group_id), rules=unique), skipped)


def instance_filter(instance_id: str, group_ids: Iterable[str]) -> FilterSpec:
    """The filter every NIC of the instance references: anti-spoofing, DHCP, its groups, then drop."""
    dhcp = [FilterRule("accept", "out", "udp", DHCP_PRIORITY, (("srcportstart", "68"), ("dstportstart", "67"))),
            FilterRule("accept", "in", "udp", DHCP_PRIORITY, (("srcportstart", "67"), ("dstportstart", "68")))]
    drop = [FilterRule("drop", "in", "all", DROP_PRIORITY), FilterRule("drop", "out", "all", DROP_PRIORITY)]
    refs = [ANTI_SPOOFING, *sorted({group_filter_name(g) for g in group_ids})]
    return FilterSpec(instance_filter_name(instance_id), refs=refs, rules=dhcp + drop)


def nic_parameters(ip: str) -> dict[str, str]:
    """The parameters a NIC's filter reference carries: its address, for clean-traffic."""
    return {"IP": str(ipaddress.IPv4Address(ip))}


class FilterDriver(ABC):
    """Network filters of one node (libvirt's nwfilter)."""

    @abstractmethod
    def define(self, spec: FilterSpec) -> bool:
        """Define the filter, or redefine it (keeping its uuid on the node) when it differs.

        A redefinition applies at once to every running guest whose NICs use the filter, directly
        or through another filter (libvirt re-instantiates their rules: about 2 s on a busy node).
        Returns True when something was written, False when the node had that filter already.
        """

    @abstractmethod
    def get(self, name: str) -> FilterSpec | None:
        """The filter as the node has it (uuid included), or None."""

    @abstractmethod
    def names(self, prefix: str = "") -> list[str]:
        """Names of the node's filters starting with ``prefix``, sorted."""

    @abstractmethod
    def undefine(self, name: str) -> bool:
        """Remove the filter. Missing: True. Still used by a guest or another filter: False
        (the node refuses; nothing changes)."""

    def ensure(self, specs: Iterable[FilterSpec]) -> int:
        """Define each of ``specs`` that the node lacks or has otherwise, referenced filters first
        when they are in ``specs`` (define them in order: groups, then the instance's filter).
        Returns how many were written."""
        return sum(1 for spec in specs if self.define(spec))
