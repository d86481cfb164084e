"""Pools as libvirt networks and NICs, and which pools an instance type gets (Nimbus's rules)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from backends.base import InvalidSpec
from ec2gw.compute.placement import NodeRef
from ec2gw.config import Settings
from ec2gw.db.models import Instance
from ec2gw.db.session import Database
from ec2gw.errors import ServiceError
from ec2gw.network import layout, pools, selection
from ec2gw.network.models import Address, Pool
from tests.pg import postgres_cluster, postgres_url  # noqa: F401  (fixtures)


def _pool(mode: str = "nat", name: str = "private", dns: str = "none") -> Pool:
    return Pool(name=name, dns=dns, network_mode=mode, role="private")


def _addr(ip: str, gw: str = "10.1.0.1", mask: str = "255.255.255.0", mac: str = "52:54:00:00:00:01",
          pool: str = "private", host: str = "h") -> Address:
    return Address(pool=pool, hostname=host, ip=ip, gateway=gw, broadcast="none", netmask=mask, mac=mac)


def test_nat_and_isolated_pools_become_networks_with_the_gateway_on_the_bridge() -> None:
    spec = layout.network_spec(_pool("isolated"), [_addr("10.1.0.10"), _addr("10.1.0.11")])
    assert spec is not None
    assert (spec.name, spec.mode, spec.address, spec.prefix) == ("ec2gw-private", "isolated", "10.1.0.1", 24)
    assert spec.dhcp_start is None and spec.hosts == []  # only per-instance static entries hand out addresses
    assert spec.bridge and len(spec.bridge) <= 15 and spec.bridge != layout.bridge_name("public")


def test_bridge_mode_joins_the_host_bridge_and_default_pool_has_no_network() -> None:
    spec = layout.network_spec(_pool("bridge:br0"), [_addr("192.0.2.5", gw="none", mask="none")])
    assert spec is not None and (spec.mode, spec.bridge) == ("bridge", "br0")
    assert layout.network_spec(_pool("none", name="default"), [_addr("10.1.0.10")]) is None
    assert not layout.has_dhcp(_pool("bridge:br0")) and layout.has_dhcp(_pool("nat"))


@pytest.mark.parametrize(("addrs", "needle"), [
    ([_addr("10.1.0.10", gw="none")], "one gateway"),
    ([_addr("10.1.0.10"), _addr("10.1.0.11", gw="10.1.0.254")], "one gateway"),
    ([_addr("10.1.0.10", mask="none")], "one netmask"),
    ([_addr("10.2.0.10")], "outside 10.1.0.0/24"),
    ([_addr("10.1.0.1")], "also listed"),
])
def test_pools_that_cannot_form_one_subnet_are_explained(addrs: list[Address], needle: str) -> None:
    with pytest.raises(layout.NetworkLayoutError, match=needle):
        layout.network_spec(_pool("nat"), addrs)


def test_network_config_gives_each_nic_its_static_entry() -> None:
    cfg = layout.network_config([
        (_pool(dns="10.0.0.2"), _addr("10.1.0.10", mac="52:54:00:00:00:0a")),
        (_pool(name="public"), _addr("192.0.2.7", gw="192.0.2.1", mac="52:54:00:00:00:0b", pool="public")),
    ])
    first, second, ns = cfg["config"]
    assert cfg["version"] == 1
    assert first["mac_address"] == "52:54:00:00:00:0a"
    assert first["subnets"] == [{"type": "static", "address": "10.1.0.10", "netmask": "255.255.255.0",
                                 "gateway": "10.1.0.1", "dns_nameservers": ["10.0.0.2"]}]
    assert "gateway" not in second["subnets"][0]  # one default route, on the first NIC
    assert ns == {"type": "nameserver", "address": ["10.0.0.2"]}


def test_nic_specs_use_the_pool_network_and_the_entry_mac() -> None:
    nic = layout.nic_spec(_pool(), _addr("10.1.0.10", mac="52:54:00:AA:00:01"))
    assert nic is not None and (nic.mac, nic.network) == ("52:54:00:aa:00:01", "ec2gw-private")
    with pytest.raises(InvalidSpec):
        layout.nic_spec(_pool(), _addr("10.1.0.10", mac="01:00:00:00:00:01"))


def test_instance_types_choose_public_and_private_pools() -> None:
    st = Settings(instance_type_networks="t2.micro=private, m1.large = public+private, c1=public")
    both = ("public", "private")
    assert selection.pools_for(st, "m1.small", both) == ["public", "private"]  # default: both roles
    assert selection.pools_for(st, "t2.micro", both) == ["private"]
    assert selection.pools_for(st, "c1", ("private",)) == ["private"]  # role not served: node's first pool
    assert selection.pools_for(st, "m1.small", ("lab", "x")) == ["lab"]
    assert selection.pools_for(st, "m1.small", ()) == [pools.DEFAULT_POOL]
    same = Settings(network_public_pool="net", network_private_pool="net")
    assert selection.pools_for(same, "m1.small", ("net",)) == ["net"]  # one NIC per distinct pool
    with pytest.raises(ValueError, match="public and/or private"):
        selection.type_roles(Settings(instance_type_networks="x=elastic"), "x")


def _db(tmp_path: Path, url: str | None = None) -> Database:
    db = Database(url or f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.create_schema()
    return db


def _add(db: Database, name: str, net: str, n: int) -> None:
    text = "none\n" + "".join(f"{name}{i} {net}.{10 + i} {net}.1 {net}.255 255.255.255.0\n" for i in range(n))
    dns, entries = pools.parse_pool_file(text)
    with db.session(write=True) as s:
        pools.add_pool(s, name, dns, entries)


def _inst(iid: str, itype: str = "m1.small") -> Instance:
    return Instance(id=iid, owner_id=1, reservation_id="r-1", image_id="ami-1", instance_type=itype, vcpus=1,
                    memory_mib=64, availability_zone="z")


def test_assign_gives_one_nic_per_pool_and_fills_the_row(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _add(db, "public", "192.0.2", 2)
    _add(db, "private", "10.5.0", 2)
    st = Settings(instance_type_networks="t2.micro=private")
    node = NodeRef("n1", "qemu:///system", "qemu", "z", ("public", "private"))
    a, b = _inst("i-a"), _inst("i-b", "t2.micro")
    with db.session(write=True) as s:
        selection.assign(s, st, [a, b], [node, node])
    assert (a.private_ip, a.public_ip, a.private_dns) == ("10.5.0.10", "192.0.2.10", "private0")
    assert (b.private_ip, b.public_ip) == ("10.5.0.11", None)
    with db.session() as s:
        held = {(x.instance_id, x.pool) for x in s.scalars(select(Address).where(Address.instance_id.is_not(None)))}
        nics = selection.ordered_nics(a, pools.addresses_of(s, "i-a"))
    assert held == {("i-a", "public"), ("i-a", "private"), ("i-b", "private")}
    assert nics[0].mac == a.mac and nics[0].pool == "private"  # the primary NIC first


def test_assign_all_or_nothing_when_one_pool_is_exhausted(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _add(db, "public", "192.0.2", 1)
    _add(db, "private", "10.5.0", 5)
    node = NodeRef("n1", "qemu:///system", "qemu", "z", ("public", "private"))
    with pytest.raises(ServiceError) as err, db.session(write=True) as s:
        selection.assign(s, Settings(), [_inst("i-a"), _inst("i-b")], [node, node])
    assert err.value.code == "InsufficientFreeAddressesInSubnet"
    with db.session() as s:
        assert s.scalar(select(Address.id).where(Address.instance_id.is_not(None))) is None


def test_assign_keeps_as_many_as_the_pools_allow_down_to_min_count(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _add(db, "public", "192.0.2", 2)
    _add(db, "private", "10.5.0", 5)
    st = Settings(instance_type_networks="t2.micro=private")
    node = NodeRef("n1", "qemu:///system", "qemu", "z", ("public", "private"))
    # i-b wants only a private NIC, so it still fits after the public pool ran out with i-a and i-c
    wanted = [_inst("i-a"), _inst("i-b", "t2.micro"), _inst("i-c"), _inst("i-d")]
    with db.session(write=True) as s:
        kept = selection.assign(s, st, wanted, [node] * 4, min_count=2)
    assert [i.id for i in kept] == ["i-a", "i-b", "i-c"]
    with db.session() as s:
        held = sorted((x.instance_id, x.pool) for x in s.scalars(select(Address).where(Address.instance_id.is_not(None))))
    assert held == [("i-a", "private"), ("i-a", "public"), ("i-b", "private"), ("i-c", "private"), ("i-c", "public")]
    with pytest.raises(ServiceError) as err, db.session(write=True) as s:
        selection.assign(s, st, [_inst("i-e"), _inst("i-f", "t2.micro")], [node] * 2, min_count=2)
    assert err.value.code == "InsufficientFreeAddressesInSubnet" and "'public'" in err.value.message
    with db.session() as s:  # the refused launch holds nothing
        assert s.scalar(select(Address.id).where(Address.instance_id.in_(["i-e", "i-f"]))) is None


def test_instances_needing_fewer_pools_are_served_first(tmp_path: Path) -> None:
    db = _db(tmp_path)
    _add(db, "public", "192.0.2", 2)
    _add(db, "private", "10.5.0", 2)
    both = NodeRef("n1", "qemu:///system", "qemu", "z", ("public", "private"))
    private = NodeRef("n2", "qemu:///system", "qemu", "z", ("private",))
    public = NodeRef("n3", "qemu:///system", "qemu", "z", ("public",))
    wanted = [_inst("i-a"), _inst("i-b"), _inst("i-c"), _inst("i-d")]
    with db.session(write=True) as s:  # in slot order, i-a and i-b would take all four addresses
        kept = selection.assign(s, Settings(), wanted, [both, both, private, public], min_count=3)
    assert [i.id for i in kept] == ["i-a", "i-c", "i-d"]
    with pytest.raises(ServiceError) as err, db.session(write=True) as s:
        selection.assign(s, Settings(), [_inst("i-e")], [private], min_count=1)
    assert "pool 'private' has 0 free addresses for 1 NICs" in err.value.message


def test_a_partial_launch_leaves_the_addresses_it_does_not_use_to_others(postgres_url: str, tmp_path: Path) -> None:  # noqa: F811
    """PostgreSQL locks free rows as they are read: the ones a partial launch does not use must be
    free for a concurrent launch before the first one commits."""
    db = _db(tmp_path, postgres_url)
    _add(db, "public", "192.0.2", 2)
    _add(db, "private", "10.5.0", 10)
    both = NodeRef("n1", "qemu:///system", "qemu", "z", ("public", "private"))
    only_private = NodeRef("n2", "qemu:///system", "qemu", "z", ("private",))
    with db.session(write=True) as first:
        kept = selection.assign(first, Settings(), [_inst(f"i-{n}") for n in range(10)], [both] * 10, min_count=1)
        assert len(kept) == 2
        with db.session(write=True) as second:  # while the first launch is still open
            others = selection.assign(second, Settings(), [_inst(f"i-x{n}") for n in range(8)], [only_private] * 8)
        assert len(others) == 8
    with db.session() as s:
        held = s.scalars(select(Address.instance_id).where(Address.pool == "private", Address.instance_id.is_not(None)))
        assert len(set(held)) == 10
