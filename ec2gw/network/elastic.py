"""Elastic addresses: addresses of public pools that a user allocates, associates and releases.

What: the rules of AllocateAddress, AssociateAddress, DisassociateAddress and ReleaseAddress over
the address rows of public pools (``pools.is_public``). An allocated row carries its eipalloc- id
and owner and is never free; while associated it is held by the instance (``instance_id``, so it
is one more NIC of it, after the others) and names the interface it is associated with (the
address row of that NIC, ``nic_address_id``). The instance's PublicIpAddress is the elastic
address associated with its primary interface, else the address of its launch-time public NIC.
Why here: the API (ec2gw/api/addresses.py) parses and answers; the compute worker
(ec2gw/compute/elastic.py) puts the NIC on the node; both need one rule for what is associated.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select

from ec2gw import ids
from ec2gw.db.models import Instance, Tag, User
from ec2gw.errors import ServiceError
from ec2gw.network import pools, selection
from ec2gw.network.models import Address, Pool

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ec2gw.config import Settings


def public_pools(s: Session, settings: Settings) -> list[Pool]:
    """The public pools, the one named by network_public_pool first, then by name."""
    rows = [p for p in s.scalars(select(Pool).order_by(Pool.name)) if pools.is_public(p, settings.network_public_pool)]
    return sorted(rows, key=lambda p: p.name != settings.network_public_pool)


def allocate(s: Session, settings: Settings, user_id: int, pool_name: str | None = None,
             ip: str | None = None) -> Address:
    """Allocate a free address of a public pool (``pool_name``'s, or the first with one free;
    ``ip`` exactly) to the user. The quota is the caller's to check first."""
    candidates = public_pools(s, settings)
    if pool_name is not None:
        candidates = [p for p in candidates if p.name == pool_name]
        if not candidates:
            raise ServiceError("InvalidPublicIpv4PoolID.NotFound",
                               f"The public IPv4 pool '{pool_name}' does not exist; the public pools here are: "
                               f"{', '.join(p.name for p in public_pools(s, settings)) or 'none'}.")
    if not candidates:
        raise ServiceError("InsufficientAddressCapacity",
                           "There is no public network pool to allocate an address from; ask the administrator to add "
                           "one (`ec2gw admin pool add NAME FILE --public`).")
    if ip is not None:
        row = s.scalar(select(Address).where(Address.ip == ip, Address.pool.in_([p.name for p in candidates])))
        if row is None:
            raise ServiceError("InvalidAddress.NotFound",
                               f"The address '{ip}' is in no public pool{f' ({pool_name})' if pool_name else ''}; leave "
                               "Address out to get any free one.")
    for pool in candidates:
        found = pools.free_addresses(s, pool.name, 1, settings.address_grace_seconds, ip=ip)
        if found:
            row = found[0]
            row.allocation_id = ids.new_id("eipalloc")
            row.owner_id = user_id
            row.allocated_at = datetime.now(UTC)
            row.released_at = None
            s.flush()
            return row
    if ip is not None:
        raise ServiceError("InvalidIPAddress.InUse",
                           f"The address '{ip}' is in use (or was released moments ago); leave Address out to get any free one.")
    names = ", ".join(p.name for p in candidates)
    raise ServiceError("InsufficientAddressCapacity",
                       f"Every address of the public pool(s) {names} is in use; release addresses you no longer need "
                       "(ReleaseAddress) or ask the administrator to add addresses to a public pool.")


def owned(s: Session, user_id: int) -> list[Address]:
    """The user's elastic addresses, by allocation id."""
    return list(s.scalars(select(Address).where(Address.owner_id == user_id, Address.allocation_id.is_not(None))
                          .order_by(Address.allocation_id)))


def find(s: Session, user_id: int, allocation_id: str | None = None, public_ip: str | None = None,
         for_update: bool = False) -> Address:
    """The user's elastic address by allocation id or public address; the EC2 NotFound otherwise."""
    q = select(Address).where(Address.owner_id == user_id, Address.allocation_id.is_not(None))
    q = q.where(Address.allocation_id == allocation_id) if allocation_id else q.where(Address.ip == public_ip)
    if for_update and s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    row = s.scalar(q)
    if row is None:
        if allocation_id:
            raise ServiceError("InvalidAllocationID.NotFound",
                               f"The allocation ID '{allocation_id}' does not exist; DescribeAddresses lists yours.")
        raise ServiceError("InvalidAddress.NotFound",
                           f"The address '{public_ip}' is not allocated to you; DescribeAddresses lists yours.")
    return row


def by_association(s: Session, user_id: int, association_id: str) -> Address:
    row = s.scalar(select(Address).where(Address.owner_id == user_id, Address.association_id == association_id))
    if row is None:
        raise ServiceError("InvalidAssociationID.NotFound",
                           f"The association ID '{association_id}' does not exist; DescribeAddresses shows your "
                           "addresses' AssociationId.")
    return row


def nic_rows(s: Session, instance_id: str) -> list[Address]:
    """The instance's network interfaces (its address rows that are not elastic), primary first."""
    inst = s.get(Instance, instance_id)
    rows = [a for a in s.scalars(select(Address).where(Address.instance_id == instance_id)) if a.allocation_id is None]
    return selection.ordered_nics(inst, rows) if inst is not None else rows


def associate(s: Session, settings: Settings, row: Address, inst: Instance, nic: Address,
              allow_reassociation: bool) -> str:
    """Associate the elastic address ``row`` with the interface ``nic`` of ``inst``; returns the
    association id. An address associated elsewhere needs ``allow_reassociation``; an elastic
    address already on ``nic`` is disassociated from it (the new one takes its place, as on EC2)."""
    if row.instance_id == inst.id and row.nic_address_id == nic.id and row.association_id:
        return row.association_id
    if row.association_id is not None and not allow_reassociation:
        raise ServiceError("Resource.AlreadyAssociated",
                           f"resource {row.allocation_id} is already associated with associate-id {row.association_id}; "
                           "disassociate it first or pass AllowReassociation=true.")
    previous = row.instance_id
    for other in s.scalars(select(Address).where(Address.nic_address_id == nic.id, Address.allocation_id.is_not(None),
                                                 Address.id != row.id)):
        _clear(other)
    index = s.scalar(select(func.max(Address.device_index)).where(Address.instance_id == inst.id, Address.id != row.id))
    row.instance_id = inst.id
    row.nic_address_id = nic.id
    row.device_index = (index if index is not None else 0) + 1
    row.association_id = ids.new_id("eipassoc")
    s.flush()
    refresh_public_ip(s, settings, inst)
    if previous and previous != inst.id:
        _refresh(s, settings, previous)
    return row.association_id


def disassociate(s: Session, settings: Settings, row: Address) -> None:
    """End the address's association (none: nothing to do); the worker unplugs its NIC."""
    previous = row.instance_id
    _clear(row)
    s.flush()
    if previous:
        _refresh(s, settings, previous)


def release(s: Session, row: Address) -> None:
    """Give the address back to its pool (reusable after the grace period); refused while associated."""
    if row.association_id is not None:
        raise ServiceError("InvalidIPAddress.InUse",
                           f"Address {row.ip} ({row.allocation_id}) is in use: it is associated with {row.instance_id} "
                           f"({row.association_id}); disassociate it first (DisassociateAddress).")
    s.execute(delete(Tag).where(Tag.resource_id == row.allocation_id))
    row.allocation_id = None
    row.owner_id = None
    row.allocated_at = None
    row.released_at = datetime.now(UTC)
    s.flush()


def release_all(s: Session, user_id: int) -> int:
    """Disassociate and release every elastic address of a removed user; returns how many."""
    rows = owned(s, user_id)
    for row in rows:
        _clear(row)
        release(s, row)
    return len(rows)


def _clear(row: Address) -> None:
    row.instance_id = None
    row.device_index = None
    row.association_id = None
    row.nic_address_id = None


def _refresh(s: Session, settings: Settings, instance_id: str) -> None:
    inst = s.get(Instance, instance_id)
    if inst is not None:
        refresh_public_ip(s, settings, inst)


def refresh_public_ip(s: Session, settings: Settings, inst: Instance) -> None:
    """The instance's PublicIpAddress: the elastic address on its primary interface, else its
    launch-time public NIC's address, else none."""
    rows = list(s.scalars(select(Address).where(Address.instance_id == inst.id)))
    nics = selection.ordered_nics(inst, [a for a in rows if a.allocation_id is None])
    primary = nics[0].id if nics else None
    elastic = [a for a in rows if a.allocation_id is not None and a.nic_address_id == primary]
    launch = [a for a in nics if selection.is_public(settings, a.pool)]
    inst.public_ip = elastic[0].ip if elastic else (launch[0].ip if launch else None)


def holders(s: Session, pool: str) -> dict[int, tuple[str | None, str | None]]:
    """address id -> (owner name, allocation id) of the pool's elastic addresses, for `pool show`."""
    out: dict[int, tuple[str | None, str | None]] = {}
    for aid, name, alloc in s.execute(
            select(Address.id, User.name, Address.allocation_id).join(User, User.id == Address.owner_id, isouter=True)
            .where(Address.pool == pool, or_(Address.allocation_id.is_not(None), Address.owner_id.is_not(None)))):
        out[aid] = (name, alloc)
    return out
