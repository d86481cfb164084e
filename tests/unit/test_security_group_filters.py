"""Security group rules -> libvirt network filters: the pure translation (backends/filters.py), the
filter XML, the NIC's filter reference, and what the database asks of a node (network/group_filters.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from lxml import etree
from sqlalchemy import select, update

from backends.base import NicSpec
from backends.filters import (
    DROP_PRIORITY,
    FilterRule,
    GroupRule,
    group_filter,
    instance_filter,
    nic_parameters,
    translate_rule,
)
from backends.libvirt.config_filter import filter_xml, parse_filter
from backends.libvirt.designer import nic_config
from ec2gw.compute.filter_sync import FilterSync
from ec2gw.compute.migration_models import InstanceMigration
from ec2gw.compute.placement import NodeRef
from ec2gw.db.models import Image, Instance
from ec2gw.network import group_filters
from tests.unit.ec2_inprocess import World, make_world
from tests.unit.fake_node import FakeNode


def one(rule: GroupRule, members: dict[str, list[str]] | None = None) -> list[tuple[str, str, str, dict[str, str]]]:
    return [(r.action, r.direction, r.protocol, dict(r.attrs)) for r in translate_rule(rule, members or {})]


def test_tcp_port_range_from_a_cidr() -> None:
    assert one(GroupRule(False, "tcp", 8000, 8080, cidr="203.0.113.0/24")) == [
        ("accept", "in", "tcp", {"dstportstart": "8000", "dstportend": "8080", "srcipaddr": "203.0.113.0",
                                 "srcipmask": "24"})]


def test_udp_single_port_from_a_host() -> None:
    assert one(GroupRule(False, "udp", 53, 53, cidr="10.1.2.3/32")) == [
        ("accept", "in", "udp", {"dstportstart": "53", "dstportend": "53", "srcipaddr": "10.1.2.3", "srcipmask": "32"})]


def test_everyone_and_every_port_need_no_attributes() -> None:
    assert one(GroupRule(False, "tcp", 0, 65535, cidr="0.0.0.0/0")) == [("accept", "in", "tcp", {})]
    assert one(GroupRule(False, "-1", cidr="0.0.0.0/0")) == [("accept", "in", "all", {})]


def test_icmp_type_and_code() -> None:
    assert one(GroupRule(False, "icmp", 8, 0, cidr="0.0.0.0/0")) == [("accept", "in", "icmp", {"type": "8", "code": "0"})]
    assert one(GroupRule(False, "icmp", 3, -1, cidr="0.0.0.0/0")) == [("accept", "in", "icmp", {"type": "3"})]
    assert one(GroupRule(False, "icmp", -1, -1, cidr="0.0.0.0/0")) == [("accept", "in", "icmp", {})]


def test_protocol_numbers_and_the_ones_nwfilter_lacks() -> None:
    assert one(GroupRule(False, "6", 22, 22, cidr="0.0.0.0/0"))[0][2] == "tcp"
    assert one(GroupRule(False, "50", cidr="0.0.0.0/0")) == [("accept", "in", "esp", {})]
    with pytest.raises(ValueError, match="IP protocol 47 has no nwfilter element"):
        translate_rule(GroupRule(False, "47", cidr="0.0.0.0/0"), {})
    done = group_filter("sg-1", [GroupRule(False, "47", cidr="0.0.0.0/0"), GroupRule(False, "tcp", 22, 22,
                                                                                     cidr="0.0.0.0/0")], {})
    assert [r.protocol for r in done.spec.rules] == ["tcp"]
    assert [(r.protocol, why[:14]) for r, why in done.skipped] == [("47", "IP protocol 47")]


def test_egress_matches_the_destination() -> None:
    assert one(GroupRule(True, "tcp", 443, 443, cidr="198.51.100.0/24")) == [
        ("accept", "out", "tcp", {"dstportstart": "443", "dstportend": "443", "dstipaddr": "198.51.100.0",
                                  "dstipmask": "24"})]
    assert one(GroupRule(True, "-1", cidr="0.0.0.0/0")) == [("accept", "out", "all", {})]


def test_a_referenced_group_becomes_its_members_addresses() -> None:
    members = {"sg-web": ["10.0.0.7", "10.0.0.5", "10.0.0.7"]}
    assert one(GroupRule(False, "tcp", 5432, 5432, group="sg-web"), members) == [
        ("accept", "in", "tcp", {"dstportstart": "5432", "dstportend": "5432", "srcipaddr": ip, "srcipmask": "32"})
        for ip in ("10.0.0.5", "10.0.0.7")]
    assert one(GroupRule(False, "tcp", 5432, 5432, group="sg-empty"), members) == []  # no members: nobody
    assert one(GroupRule(True, "udp", 1, 2, group="sg-web"), members)[0][3]["dstipaddr"] == "10.0.0.5"


def test_the_default_group() -> None:
    rules = [GroupRule(False, "-1", group="sg-d"), GroupRule(True, "-1", cidr="0.0.0.0/0")]
    spec = group_filter("sg-d", rules, {"sg-d": ["10.0.0.9", "10.0.0.8"]}).spec
    assert spec.name == "ec2gw-sg-sg-d" and spec.refs == []
    assert [(r.direction, r.protocol, dict(r.attrs)) for r in spec.rules] == [
        ("in", "all", {"srcipaddr": "10.0.0.8", "srcipmask": "32"}),
        ("in", "all", {"srcipaddr": "10.0.0.9", "srcipmask": "32"}),
        ("out", "all", {})]
    # the same rules in another order give the same document
    assert filter_xml(group_filter("sg-d", rules[::-1], {"sg-d": ["10.0.0.8", "10.0.0.9"]}).spec) == filter_xml(spec)


def test_the_instance_filter_combines_anti_spoofing_dhcp_groups_and_drop() -> None:
    spec = instance_filter("i-1", ["sg-b", "sg-a", "sg-b"])
    assert spec.name == "ec2gw-i-i-1"
    assert spec.refs == ["clean-traffic", "ec2gw-sg-sg-a", "ec2gw-sg-sg-b"]
    dhcp = [r for r in spec.rules if r.action == "accept"]
    assert {(r.direction, dict(r.attrs)["srcportstart"], dict(r.attrs)["dstportstart"]) for r in dhcp} == {
        ("out", "68", "67"), ("in", "67", "68")}
    assert all(r.priority < 500 for r in dhcp)  # before any group rule
    drops = [(r.direction, r.protocol, r.priority) for r in spec.rules if r.action == "drop"]
    assert drops == [("in", "all", DROP_PRIORITY), ("out", "all", DROP_PRIORITY)]
    assert instance_filter("i-2", []).refs == ["clean-traffic"]  # no group: anti-spoofing, DHCP, nothing else


def test_filter_xml_round_trip_and_uuid() -> None:
    spec = group_filter("sg-x", [GroupRule(False, "tcp", 80, 80, cidr="10.0.0.0/8")], {}).spec
    instance = instance_filter("i-9", ["sg-x"])
    instance.uuid = "0465bf4e-5b1c-4b7a-9d8e-0f0f0f0f0f0f"
    root = etree.fromstring(filter_xml(instance))
    assert (root.get("name"), root.get("chain"), root.findtext("uuid")) == ("ec2gw-i-i-9", "root", instance.uuid)
    assert [r.get("filter") for r in root.findall("filterref")] == ["clean-traffic", "ec2gw-sg-sg-x"]
    rule = etree.fromstring(filter_xml(spec)).find("rule")
    assert rule is not None and (rule.get("action"), rule.get("direction"), rule.get("priority")) == ("accept", "in", "500")
    assert dict(rule[0].attrib) == {"dstportend": "80", "dstportstart": "80", "srcipaddr": "10.0.0.0", "srcipmask": "8"}
    for s in (spec, instance):
        back = parse_filter(filter_xml(s))
        assert back.same_as(s) and back.uuid == s.uuid
    other = parse_filter(filter_xml(spec))
    other.rules[0] = FilterRule("accept", "in", "tcp", 500, (("dstportstart", "81"),))
    assert not other.same_as(spec)


def test_the_nic_references_the_filter_on_qemu_and_kvm_only() -> None:
    nic = NicSpec(mac="52:54:00:00:00:01", network="net", filter="ec2gw-i-i-1", filter_params=nic_parameters("10.0.0.4"))
    el = etree.fromstring(nic_config(nic, "qemu").to_xml())
    ref = el.find("filterref")
    assert ref is not None and ref.get("filter") == "ec2gw-i-i-1"
    assert [(p.get("name"), p.get("value")) for p in ref.findall("parameter")] == [("IP", "10.0.0.4")]
    assert nic_config(nic, "kvm").filterref == "ec2gw-i-i-1"
    for kind in ("test", "xen"):
        assert etree.fromstring(nic_config(nic, kind).to_xml()).find("filterref") is None
    from backends.libvirt.config import GuestInterface

    assert GuestInterface.from_xml(etree.tostring(el)).filter_params == {"IP": "10.0.0.4"}


# --------------------------------------------------------------------------- from the database


@pytest.fixture
def w(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _launch(w: World, client: Any, node: str, **kw: Any) -> tuple[str, str]:
    with w.app.db.session() as s:  # one public image for every launch
        found = s.scalar(select(Image.id).where(Image.name == "img"))
    image_id = found or w.add_image("alice", "img", public=True)
    inst = client.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, **kw)
    iid = inst["Instances"][0]["InstanceId"]
    with w.app.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id == iid).values(node_name=node))
    return iid, inst["Instances"][0]["PrivateIpAddress"]


def test_what_a_node_needs_follows_groups_rules_and_members(w: World) -> None:
    default = w.a.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    web = w.a.create_security_group(GroupName="web", Description="web")["GroupId"]
    db = w.a.create_security_group(GroupName="db", Description="db")["GroupId"]
    w.a.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}])
    w.a.authorize_security_group_ingress(GroupId=web, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    plain, plain_ip = _launch(w, w.a, "n1")  # no group named: the default group
    dbi, _ = _launch(w, w.a, "n1", SecurityGroupIds=[db])
    webi, web_ip = _launch(w, w.a, "n2", SecurityGroupIds=[web])
    bobi, _ = _launch(w, w.b, "n1")  # bob's instance: his default group, with his own members only

    def wanted(node: str) -> dict[str, Any]:
        with w.app.db.session() as s:
            return {f.name: f for f in group_filters.node_filters(s, node).specs}

    n1 = wanted("n1")
    bobs = w.b.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    assert set(n1) == {f"ec2gw-sg-{g}" for g in (default, db, bobs)} | {f"ec2gw-i-{i}" for i in (plain, dbi, bobi)}
    assert n1[f"ec2gw-i-{plain}"].refs == ["clean-traffic", f"ec2gw-sg-{default}"]
    assert n1[f"ec2gw-i-{dbi}"].refs == ["clean-traffic", f"ec2gw-sg-{db}"]
    # db admits 5432 from web's member (on another node); default admits its own members (alice's only)
    assert [dict(r.attrs).get("srcipaddr") for r in n1[f"ec2gw-sg-{db}"].rules if r.direction == "in"] == [web_ip]
    assert [dict(r.attrs).get("srcipaddr") for r in n1[f"ec2gw-sg-{default}"].rules if r.direction == "in"] == [plain_ip]
    assert set(wanted("n2")) == {f"ec2gw-sg-{web}", f"ec2gw-i-{webi}"}
    # membership changes: the web member terminated -> db admits nobody; a second default member appears
    w.a.terminate_instances(InstanceIds=[webi])
    with w.app.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id == webi).values(state="terminated"))
    _, second_ip = _launch(w, w.a, "n3")
    n1 = wanted("n1")
    assert [r for r in n1[f"ec2gw-sg-{db}"].rules if r.direction == "in"] == []
    assert sorted(dict(r.attrs)["srcipaddr"] for r in n1[f"ec2gw-sg-{default}"].rules if r.direction == "in") == \
        sorted([plain_ip, second_ip])
    assert wanted("n2") == {}  # nothing left there
    # a revoke changes the group's filter
    w.a.revoke_security_group_egress(GroupId=db, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert [r for r in wanted("n1")[f"ec2gw-sg-{db}"].rules if r.direction == "out"] == []


# --------------------------------------------------------------------------- the worker's pass


class _Drivers:
    def __init__(self, node: FakeNode) -> None:
        self.node = node

    def get(self, _ref: NodeRef) -> FakeNode:
        return self.node


class _Worker:
    def __init__(self, w: World, node: FakeNode) -> None:
        self.db, self.drivers = w.app.db, _Drivers(node)
        self.filters = FilterSync(self)  # type: ignore[arg-type]


def test_the_pass_writes_changes_only_and_removes_what_is_unused(w: World) -> None:
    node, ref = FakeNode(), NodeRef("n1", "qemu+tcp://10.0.0.9/system", "qemu", "z", ())
    worker = _Worker(w, node)
    sync = worker.filters
    iid, _ = _launch(w, w.a, "n1")
    node.filters.filters["ec2gw-i-i-0000000000000dead"] = instance_filter("i-0000000000000dead", [])  # left over
    assert sync.sync_node(ref) == 2  # the default group's filter and the instance's
    assert sorted(node.filters.filters) == sorted([f"ec2gw-i-{iid}", *(f"ec2gw-sg-{g}" for g in _groups(w, iid))])
    writes = node.filters.writes
    assert sync.sync_node(ref) == 0 and node.filters.writes == writes  # nothing changed: nothing written
    default = _groups(w, iid)[0]
    w.a.authorize_security_group_ingress(GroupId=default, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}])
    assert sync.sync_node(ref) == 1  # the group's filter, redefined
    assert any(dict(r.attrs).get("dstportstart") == "80" for r in node.filters.filters[f"ec2gw-sg-{default}"].rules)
    # a move to another node under way: that node keeps the instance's filters (libvirt needs them there)
    other, ref2 = FakeNode(), NodeRef("n2", "qemu+tcp://10.0.0.8/system", "qemu", "z", ())
    with w.app.db.session(write=True) as s:
        s.add(InstanceMigration(instance_id=iid, source="n1", destination="n2", kind="live", state="running"))
    worker.drivers.node = other
    sync.sync_node(ref2)
    assert f"ec2gw-i-{iid}" in other.filters.filters
    with w.app.db.session(write=True) as s:
        s.execute(update(InstanceMigration).values(state="failed"))
    sync.sync_node(ref2)
    assert other.filters.filters == {}  # the move failed: nothing of it left there
    worker.drivers.node = node
    node.filters.used.add(f"ec2gw-i-{iid}")  # the domain still runs with it: terminate, not yet destroyed
    with w.app.db.session(write=True) as s:
        s.execute(update(Instance).where(Instance.id == iid).values(state="terminated"))
    sync.sync_node(ref)
    assert f"ec2gw-i-{iid}" in node.filters.filters  # refused while in use, tried again on the next pass
    node.filters.used.clear()
    sync.sync_node(ref)
    assert node.filters.filters == {}


def test_membership_changes_reach_the_node_through_both_operations(w: World) -> None:
    """ModifyInstanceAttribute Groups and ModifyNetworkInterfaceAttribute Groups (boto3) change the
    instance's filter on the node's next pass, and the peers' filters that name the groups."""
    node, ref = FakeNode(), NodeRef("n1", "qemu+tcp://10.0.0.9/system", "qemu", "z", ())
    sync = _Worker(w, node).filters
    web = w.a.create_security_group(GroupName="web", Description="web")["GroupId"]
    db = w.a.create_security_group(GroupName="db", Description="db")["GroupId"]
    w.a.authorize_security_group_ingress(GroupId=db, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}])
    dbi, _ = _launch(w, w.a, "n1", SecurityGroupIds=[db])
    app, app_ip = _launch(w, w.a, "n1")  # the default group first
    default = _groups(w, app)[0]
    sync.sync_node(ref)

    def sources(group: str) -> list[str]:
        return [dict(r.attrs)["srcipaddr"] for r in node.filters.filters[f"ec2gw-sg-{group}"].rules
                if r.direction == "in"]

    assert node.filters.filters[f"ec2gw-i-{app}"].refs == ["clean-traffic", f"ec2gw-sg-{default}"]
    assert sources(db) == [] and f"ec2gw-sg-{web}" not in node.filters.filters
    w.a.modify_instance_attribute(InstanceId=app, Groups=[web])
    assert sync.sync_node(ref) >= 2  # app's filter, db's (web has a member now), web's new filter
    assert node.filters.filters[f"ec2gw-i-{app}"].refs == ["clean-traffic", f"ec2gw-sg-{web}"]
    assert sources(db) == [app_ip], "db admits web's new member"
    assert f"ec2gw-sg-{web}" in node.filters.filters
    eni = w.a.describe_instances(InstanceIds=[app])["Reservations"][0]["Instances"][0]["NetworkInterfaces"][0]
    w.a.modify_network_interface_attribute(NetworkInterfaceId=eni["NetworkInterfaceId"], Groups=[default])
    assert sync.sync_node(ref) >= 2
    assert node.filters.filters[f"ec2gw-i-{app}"].refs == ["clean-traffic", f"ec2gw-sg-{default}"]
    assert sources(db) == [], "app left web: db admits nobody"
    assert f"ec2gw-sg-{web}" not in node.filters.filters, "no member of web on the node: its filter left"
    assert sources(default) == [app_ip], "the default group admits its own members"
    # another user cannot move alice's instance into groups, nor see her interface
    for call, kw, code in ((w.b.modify_instance_attribute, {"InstanceId": app, "Groups": [web]},
                            "InvalidInstanceID.NotFound"),
                           (w.b.modify_network_interface_attribute,
                            {"NetworkInterfaceId": eni["NetworkInterfaceId"], "Groups": [web]},
                            "InvalidNetworkInterfaceID.NotFound")):
        with pytest.raises(ClientError) as err:
            call(**kw)
        assert err.value.response["Error"]["Code"] == code
    assert sync.sync_node(ref) == 0, "nothing changed"


def _groups(w: World, iid: str) -> list[str]:
    inst = w.a.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    return [g["GroupId"] for g in inst["SecurityGroups"]]
