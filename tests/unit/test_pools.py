"""Nimbus network pools: the file format, MACs, atomic allocation, grace period, removal."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ec2gw.db.session import Database
from ec2gw.errors import ServiceError
from ec2gw.network import pools
from ec2gw.network.models import Address

GOOD = """# a pool as Nimbus wrote them
10.0.0.2
pub1 10.20.0.11 10.20.0.1 10.20.0.255 255.255.255.0
pub2 10.20.0.12 10.20.0.1 10.20.0.255 255.255.255.0 52:54:00:AB:CD:02   # with a MAC
pub3 10.20.0.13 none none none
"""


@pytest.fixture()
def db(tmp_path: Path) -> Database:
    d = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    d.create_schema()
    return d


def add(db: Database, name: str, text: str, **kw: object) -> None:
    dns, entries = pools.parse_pool_file(text)
    with db.session(write=True) as s:
        pools.add_pool(s, name, dns, entries, **kw)  # type: ignore[arg-type]


def lines(n: int, net: str = "10.30.0") -> str:
    return "none\n" + "".join(f"h{i} {net}.{10 + i} {net}.1 {net}.255 255.255.255.0\n" for i in range(n))


def test_parse_reads_dns_entries_none_fields_and_macs() -> None:
    dns, entries = pools.parse_pool_file(GOOD)
    assert dns == "10.0.0.2"
    assert [e.hostname for e in entries] == ["pub1", "pub2", "pub3"]
    assert entries[1].mac == "52:54:00:ab:cd:02" and entries[0].mac is None
    assert (entries[2].gateway, entries[2].broadcast, entries[2].netmask) == ("none", "none", "none")


@pytest.mark.parametrize(("text", "needle"), [
    ("", "empty"),
    ("# only a comment\n", "empty"),
    ("none\n", "lists no addresses"),
    ("8.8.8.300\nh 10.0.0.2 none none none\n", "line 1: DNS server"),
    ("none\nh 10.0.0.2 none none\n", "line 2: expected"),
    ("none\nh 10.0.0.x none none none\n", "line 2: address"),
    ("none\nh 10.0.0.2 gw none none\n", "line 2: gateway"),
    ("none\na 10.0.0.2 none none none\nb 10.0.0.2 none none none\n", "line 3: address 10.0.0.2 appears twice"),
    ("none\na 10.0.0.2 none none none 01:00:5e:00:00:01\n", "unicast MAC"),
    ("none\na 10.0.0.2 none none none 52:54:00:00:00:01\nb 10.0.0.3 none none none 52:54:00:00:00:01\n",
     "MAC 52:54:00:00:00:01 appears twice"),
])
def test_parse_errors_name_the_line(text: str, needle: str) -> None:
    with pytest.raises(pools.PoolFileError, match=needle):
        pools.parse_pool_file(text)


def test_missing_macs_come_from_the_prefix(db: Database) -> None:
    add(db, "pub", GOOD, mac_prefix="02:ec:20")
    with db.session() as s:
        macs = {a.hostname: a.mac for a in s.scalars(select(Address))}
    assert macs["pub2"] == "52:54:00:ab:cd:02"
    assert macs["pub1"].startswith("02:ec:20:") and macs["pub3"].startswith("02:ec:20:")
    assert len(set(macs.values())) == 3


@pytest.mark.parametrize("prefix", ["01:00:00", "52:54", "zz", "52:54:00:00:00:00"])
def test_bad_mac_prefixes_are_refused(prefix: str) -> None:
    if prefix == "52:54":
        assert pools.random_mac(prefix).startswith("52:54:")  # two octets are a fine prefix
        return
    with pytest.raises(pools.PoolError, match="MAC prefix"):
        pools.random_mac(prefix)


def test_add_refuses_duplicates_bad_modes_and_names(db: Database) -> None:
    add(db, "pub", GOOD)
    with pytest.raises(pools.PoolError, match="already exists"):
        add(db, "pub", lines(1))
    with pytest.raises(pools.PoolError, match="already used by another pool"):
        add(db, "other", "none\nx 10.9.0.2 none none none 52:54:00:ab:cd:02\n")
    with pytest.raises(pools.PoolError, match="network mode"):
        add(db, "p2", lines(1), network_mode="bridge:")
    with pytest.raises(pools.PoolError, match="pool name"):
        add(db, "bad name", lines(1))
    assert pools.check_network_mode("bridge:br0") == "bridge:br0"


def test_allocate_takes_free_entries_in_file_order_and_all_or_nothing(db: Database) -> None:
    add(db, "p", lines(3))
    with db.session(write=True) as s:
        got = pools.allocate(s, "p", ["i-1", "i-2"])
    assert [a.ip for a in got] == ["10.30.0.10", "10.30.0.11"]
    with pytest.raises(ServiceError) as err, db.session(write=True) as s:
        pools.allocate(s, "p", ["i-3", "i-4"])
    assert err.value.code == "InsufficientFreeAddressesInSubnet"
    with db.session() as s:  # the failed request took nothing
        assert s.scalar(select(Address.instance_id).where(Address.ip == "10.30.0.12")) is None
    with pytest.raises(ServiceError) as err2, db.session(write=True) as s:
        pools.allocate(s, "nope", ["i-5"])
    assert err2.value.code == "InvalidSubnetID.NotFound"


def test_released_address_waits_for_the_grace_period(db: Database) -> None:
    add(db, "p", lines(1))
    with db.session(write=True) as s:
        pools.allocate(s, "p", ["i-1"], grace_seconds=60)
    with db.session(write=True) as s:
        pools.release(s, "i-1")
    with pytest.raises(ServiceError), db.session(write=True) as s:
        pools.allocate(s, "p", ["i-2"], grace_seconds=60)
    with db.session(write=True) as s:  # time passes
        s.execute(update(Address).values(released_at=datetime.now(UTC) - timedelta(seconds=61)))
    with db.session(write=True) as s:
        assert pools.allocate(s, "p", ["i-2"], grace_seconds=60)[0].ip == "10.30.0.10"
    with db.session() as s:
        summary = pools.summary(s, s.get(pools.Pool, "p"), 60)  # type: ignore[attr-defined]
    assert (summary["in_use"], summary["free"], summary["subnet"]) == (1, 0, "10.30.0.0/24")


def test_concurrent_allocations_never_share_an_address(db: Database) -> None:
    add(db, "p", lines(10))
    won: list[str] = []
    lost: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def launch(n: int) -> None:
        mine = Database(db.url)  # its own engine, as another server process would have
        start.wait()
        try:
            with mine.session(write=True) as s:
                ip = pools.allocate(s, "p", [f"i-{n}"])[0].ip
            with lock:
                won.append(ip)
        except ServiceError as exc:
            with lock:
                lost.append(exc.code)
        finally:
            mine.dispose()

    threads = [threading.Thread(target=launch, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(won) == 10 and len(set(won)) == 10
    assert lost == ["InsufficientFreeAddressesInSubnet"] * 6


def test_remove_refused_while_in_use(db: Database) -> None:
    add(db, "p", lines(2))
    with db.session(write=True) as s:
        pools.allocate(s, "p", ["i-1"])
    with pytest.raises(pools.PoolError, match="i-1"), db.session(write=True) as s:
        pools.remove_pool(s, "p")
    with db.session(write=True) as s:
        pools.release(s, "i-1")
    with db.session(write=True) as s:
        pools.remove_pool(s, "p")
    with db.session() as s:
        assert s.scalar(select(Address.id)) is None
    with pytest.raises(pools.PoolError, match="no pool"), db.session(write=True) as s:
        pools.remove_pool(s, "p")
