"""Everything the database knows that a guest needs at launch, read in one short transaction.

What: the instance's images (machine, kernel, ramdisk), its key pair's public key, its user
data, its NICs (Address rows with their pools and the pools' networks), and the NoCloud seed
built from them (meta-data: instance-id, local-hostname, public-keys; user-data; network-config
from the pool entries).
Why apart: provisioning then talks only to the node, with no session held during slow uploads.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select

from backends.seed import SeedData
from ec2gw.compute.image_cache import ImageRef
from ec2gw.db.models import Image, Instance, KeyPair
from ec2gw.network import layout, nodes, selection
from ec2gw.network.models import Address, Pool

if TYPE_CHECKING:
    from ec2gw.db.session import Database


class LaunchError(Exception):
    """The instance cannot be provisioned from what the database holds; the message says why."""


@dataclass
class LaunchContext:
    instance_id: str
    hostname: str
    #: None for an EBS-backed image (its instances boot from a root volume, compute/launch_volumes.py)
    image: ImageRef | None
    kernel: ImageRef | None = None
    ramdisk: ImageRef | None = None
    public_keys: list[str] = field(default_factory=list)
    user_data: bytes | None = None
    #: (pool, address) per NIC, the primary NIC first
    nics: list[tuple[Pool, Address]] = field(default_factory=list)
    #: the networks of the pools the NICs are in, by pool name
    networks: dict[str, nodes.PoolNetwork] = field(default_factory=dict)

    def seed(self) -> SeedData:
        """The NoCloud seed for this instance."""
        net = layout.network_config([(p, a) for p, a in self.nics if layout.has_network(p)])
        return SeedData(instance_id=self.instance_id, hostname=self.hostname, public_keys=self.public_keys,
                        user_data=self.user_data, network_config=net if net["config"] else None)


def _image_ref(s: object, image_id: str | None, what: str) -> ImageRef | None:
    if not image_id:
        return None
    row = s.get(Image, image_id)  # type: ignore[attr-defined]
    if row is None or not row.location:
        raise LaunchError(f"the {what} image {image_id} no longer exists; launch from another image")
    return ImageRef(row.id, row.location, row.owner_id)


def decode_user_data(raw: str | None) -> bytes | None:
    """Instances store UserData as the base64 text the API received."""
    if not raw:
        return None
    try:
        return base64.b64decode(raw)
    except (binascii.Error, ValueError):
        return raw.encode()


def load(db: Database, instance_id: str) -> LaunchContext:
    with db.session() as s:
        inst = s.get(Instance, instance_id)
        if inst is None:
            raise LaunchError(f"instance {instance_id} is not in the database")
        row = s.get(Image, inst.image_id)
        image = _image_ref(s, inst.image_id, "machine") if row is None or row.location else None
        ctx = LaunchContext(instance_id=inst.id, hostname=(inst.private_dns or inst.id).split(".")[0], image=image,
                            kernel=_image_ref(s, inst.kernel_id, "kernel"),
                            ramdisk=_image_ref(s, inst.ramdisk_id, "ramdisk"),
                            user_data=decode_user_data(inst.user_data))
        if inst.key_name:
            key = s.scalar(select(KeyPair.public_key).where(KeyPair.owner_id == inst.owner_id,
                                                            KeyPair.name == inst.key_name))
            if key:  # as EC2's metadata gives it: with the key pair's name as comment when it has none
                key = key.strip()
                ctx.public_keys.append(key if len(key.split()) > 2 else f"{key} {inst.key_name}")
        addrs = selection.ordered_nics(inst, list(s.scalars(select(Address).where(Address.instance_id == inst.id))))
        for addr in addrs:
            if addr.allocation_id is not None and addr.plugged_into != inst.id:
                continue  # an elastic address the worker has yet to put on the domain (compute/elastic.py)
            pool = s.get(Pool, addr.pool)
            if pool is None:
                raise LaunchError(f"network pool {addr.pool} of instance {inst.id} no longer exists")
            ctx.nics.append((pool, addr))
            if pool.name not in ctx.networks:
                ctx.networks[pool.name] = nodes.pool_network(s, pool.name)
    return ctx
