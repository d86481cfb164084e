"""Security group rules: IpPermissions in, rules out, and the shapes EC2 gives them.

A rule is one row: direction, protocol, port range (ICMP: type and code) and one peer, an IPv4
CIDR or a group whose members it admits. IpPermissions group rules by protocol and ports, as EC2
shows them; AuthorizeSecurityGroup* refuses a rule the group already has (InvalidPermission.Duplicate)
and Revoke* one it does not have (InvalidPermission.NotFound), as EC2 does for VPC groups.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ec2gw import ids
from ec2gw.db.models import SecurityGroup, SecurityGroupRule
from ec2gw.errors import ServiceError, invalid_value

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_NAMED = {"-1": "-1", "all": "-1", "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp", "icmp": "icmp", "1": "icmp"}
ALL_IPV4 = "0.0.0.0/0"


@dataclass(frozen=True)
class Rule:
    """A rule as asked for (or stored): what makes two rules the same, and its description."""

    egress: bool
    protocol: str
    from_port: int | None
    to_port: int | None
    cidr: str | None
    group: str | None
    description: str = ""

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.egress, self.protocol, self.from_port, self.to_port, self.cidr, self.group)

    def text(self) -> str:
        """EC2's words for the rule in InvalidPermission errors."""
        ports = "" if self.from_port is None else f", from port: {self.from_port}, to port: {self.to_port}"
        proto = "ALL" if self.protocol == "-1" else self.protocol.upper()
        return f"peer: {self.cidr or self.group}, {proto}{ports}, ALLOW"


def of_row(r: SecurityGroupRule) -> Rule:
    return Rule(r.egress, r.protocol, r.from_port, r.to_port, r.cidr_ipv4, r.referenced_group_id, r.description)


def protocol_of(value: Any) -> str:
    text = str(value).strip().lower()
    if text in _NAMED:
        return _NAMED[text]
    if text.isdigit() and 0 <= int(text) <= 255:
        return text
    raise invalid_value("IpProtocol", value, "Use tcp, udp, icmp, -1 (all) or a protocol number 0-255.")


def _ports(protocol: str, from_port: Any, to_port: Any) -> tuple[int | None, int | None]:
    if protocol in ("tcp", "udp"):
        if from_port is None or to_port is None:
            raise invalid_value("FromPort/ToPort", f"{from_port}/{to_port}",
                                f"Give both FromPort and ToPort (0-65535) for {protocol.upper()}.")
        low, high = int(from_port), int(to_port)
        if not (0 <= low <= 65535 and 0 <= high <= 65535) or low > high:
            raise invalid_value("FromPort/ToPort", f"{low}/{high}",
                                "Ports are 0-65535 and FromPort may not be larger than ToPort.")
        return low, high
    if protocol == "icmp":
        kind = -1 if from_port is None else int(from_port)
        code = -1 if to_port is None else int(to_port)
        if not (-1 <= kind <= 255 and -1 <= code <= 255):
            raise invalid_value("FromPort/ToPort", f"{kind}/{code}",
                                "For ICMP, FromPort is the type and ToPort the code, each -1 (all) or 0-255.")
        if kind == -1 and code != -1:
            raise invalid_value("ToPort", code, "An ICMP code needs an ICMP type (FromPort); use -1 for both for all ICMP.")
        return kind, code
    return None, None


def _cidr(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Network(str(value), strict=True))
    except ValueError:
        raise invalid_value("CidrIp", value,
                            "Give an IPv4 network such as 203.0.113.0/24 (no host bits set; 0.0.0.0/0 for everyone).") from None


def _group_ref(s: Session, owner_id: int, account_id: str, pair: dict[str, Any]) -> str:
    user = pair.get("UserId")
    gid, name = pair.get("GroupId"), pair.get("GroupName")
    if user not in (None, "", account_id):
        raise ServiceError("InvalidGroup.NotFound",
                           f"The security group '{gid or name}' of account {user} does not exist for you; rules can "
                           "name your own groups only.")
    if gid:
        ids.check_id(gid, "sg")
        found = s.scalar(select(SecurityGroup.id).where(SecurityGroup.owner_id == owner_id, SecurityGroup.id == gid))
    elif name:
        found = s.scalar(select(SecurityGroup.id).where(SecurityGroup.owner_id == owner_id, SecurityGroup.name == name))
    else:
        raise ServiceError("MissingParameter", "Each UserIdGroupPairs entry needs a GroupId (or GroupName).")
    if found is None:
        raise ServiceError("InvalidGroup.NotFound",
                           f"The security group '{gid or name}' does not exist; DescribeSecurityGroups lists yours.")
    return str(found)


def rules_of(s: Session, owner_id: int, account_id: str, egress: bool, permissions: list[dict[str, Any]] | None,
             legacy: dict[str, Any]) -> list[Rule]:
    """The rules IpPermissions (or the older top-level CidrIp/IpProtocol/FromPort/ToPort/
    SourceSecurityGroupName) ask for, checked."""
    perms = list(permissions or [])
    if any(legacy.get(k) is not None for k in ("ip_protocol", "cidr_ip", "source_security_group_name")):
        if perms:
            raise ServiceError("InvalidParameterCombination",
                               "Give the rules either as IpPermissions or as IpProtocol/CidrIp/FromPort/ToPort, not both.")
        pair = {"GroupName": legacy["source_security_group_name"], "UserId": legacy.get("source_security_group_owner_id")}
        perms = [{"IpProtocol": legacy.get("ip_protocol") or "-1", "FromPort": legacy.get("from_port"),
                  "ToPort": legacy.get("to_port"),
                  "IpRanges": [{"CidrIp": legacy["cidr_ip"]}] if legacy.get("cidr_ip") else [],
                  "UserIdGroupPairs": [pair] if legacy.get("source_security_group_name") else []}]
    if not perms:
        raise ServiceError("MissingParameter", "Give at least one rule in IpPermissions (IpProtocol, ports and IpRanges "
                                               "or UserIdGroupPairs).")
    out: list[Rule] = []
    for perm in perms:
        if perm.get("IpProtocol") is None:
            raise ServiceError("MissingParameter", "Every IpPermissions entry needs an IpProtocol (tcp, udp, icmp or -1).")
        protocol = protocol_of(perm["IpProtocol"])
        low, high = _ports(protocol, perm.get("FromPort"), perm.get("ToPort"))
        if perm.get("Ipv6Ranges") or perm.get("PrefixListIds"):
            raise invalid_value("IpPermissions", "Ipv6Ranges/PrefixListIds",
                                "Only IPv4 CIDRs (IpRanges) and groups (UserIdGroupPairs) are supported here.")
        ranges, pairs = perm.get("IpRanges") or [], perm.get("UserIdGroupPairs") or []
        if not ranges and not pairs:
            raise ServiceError("MissingParameter",
                               "An IpPermissions entry needs a peer: IpRanges (CidrIp) or UserIdGroupPairs (GroupId).")
        for r in ranges:
            if r.get("CidrIp") is None:
                raise ServiceError("MissingParameter", "Each IpRanges entry needs a CidrIp.")
            out.append(Rule(egress, protocol, low, high, _cidr(r["CidrIp"]), None, _description(r)))
        for pair in pairs:
            out.append(Rule(egress, protocol, low, high, None, _group_ref(s, owner_id, account_id, pair), _description(pair)))
    return out


def _description(item: dict[str, Any]) -> str:
    text = item.get("Description") or ""
    if len(text) > 255:
        raise invalid_value("Description", text[:20] + "...", "Rule descriptions are at most 255 characters.")
    return str(text)


def permissions(rules: list[SecurityGroupRule], account_id: str) -> list[dict[str, Any]]:
    """Rules as IpPermissions: one entry per protocol and port range, its peers listed in it."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in sorted(rules, key=lambda r: (r.created_at, r.id)):
        key = (r.protocol, r.from_port, r.to_port)
        perm = out.get(key)
        if perm is None:
            perm = out[key] = {"IpProtocol": r.protocol, "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [],
                               "UserIdGroupPairs": []}
            if r.from_port is not None:
                perm.update(FromPort=r.from_port, ToPort=r.to_port)
        if r.cidr_ipv4:
            perm["IpRanges"].append({"CidrIp": r.cidr_ipv4, **({"Description": r.description} if r.description else {})})
        else:
            perm["UserIdGroupPairs"].append({"GroupId": r.referenced_group_id, "UserId": account_id,
                                             **({"Description": r.description} if r.description else {})})
    return list(out.values())


def rule_item(r: SecurityGroupRule, account_id: str) -> dict[str, Any]:
    """The SecurityGroupRule shape (DescribeSecurityGroupRules, Authorize*'s answer)."""
    item: dict[str, Any] = {
        "SecurityGroupRuleId": r.id, "GroupId": r.group_id, "GroupOwnerId": account_id, "IsEgress": r.egress,
        "IpProtocol": r.protocol,
        "FromPort": -1 if r.from_port is None else r.from_port, "ToPort": -1 if r.to_port is None else r.to_port,
        "Description": r.description or None, "Tags": [],
    }
    if r.cidr_ipv4:
        item["CidrIpv4"] = r.cidr_ipv4
    else:
        item["ReferencedGroupInfo"] = {"GroupId": r.referenced_group_id, "UserId": account_id}
    return item


def default_rules(group_id: str) -> list[SecurityGroupRule]:
    """A default group's rules: all traffic from the group's members, all traffic out."""
    return [
        SecurityGroupRule(id=ids.new_id("sgr"), group_id=group_id, egress=False, protocol="-1", referenced_group_id=group_id,
                          description=""),
        egress_all(group_id),
    ]


def egress_all(group_id: str) -> SecurityGroupRule:
    """The rule every new group starts with: all traffic out."""
    return SecurityGroupRule(id=ids.new_id("sgr"), group_id=group_id, egress=True, protocol="-1", cidr_ipv4=ALL_IPV4,
                             description="")


def new_row(group_id: str, rule: Rule) -> SecurityGroupRule:
    return SecurityGroupRule(id=ids.new_id("sgr"), group_id=group_id, egress=rule.egress, protocol=rule.protocol,
                             from_port=rule.from_port, to_port=rule.to_port, cidr_ipv4=rule.cidr,
                             referenced_group_id=rule.group, description=rule.description)
