"""Where an instance's pieces live on a VMM node: three libvirt dir pools and the volume names.

What: ``ec2gw-images`` caches images (one volume per image and object version),
``ec2gw-instances`` holds each instance's qcow2 overlay and NoCloud seed, ``ec2gw-console`` holds
serial console logs. All three sit under settings.node_storage_dir on the node.
Why pools for everything: a remote node is reached only through libvirt, and a file in a pool is a
volume that can be created, uploaded, downloaded and deleted through the storage API; the console
log in a pool can be read from any node (backends.libvirt.console reads it as a volume).
"""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING

from backends.base import CONSOLE_EARLIER_SUFFIX

if TYPE_CHECKING:
    from backends.base import Driver
    from ec2gw.config import Settings

IMAGES_POOL = "ec2gw-images"
INSTANCES_POOL = "ec2gw-instances"
CONSOLE_POOL = "ec2gw-console"
_DIRS = {IMAGES_POOL: "images", INSTANCES_POOL: "instances", CONSOLE_POOL: "console"}


def pool_path(settings: Settings, pool: str) -> str:
    return posixpath.join(settings.node_storage_dir, _DIRS[pool])


def ensure_pools(driver: Driver, settings: Settings) -> None:
    """Create (or start) the three pools on the node; idempotent, a few quick calls."""
    for pool in _DIRS:
        driver.volumes.ensure_pool(pool, pool_path(settings, pool))


def overlay_name(instance_id: str) -> str:
    return f"{instance_id}.qcow2"


def seed_name(instance_id: str) -> str:
    return f"{instance_id}-seed.iso"


def console_name(instance_id: str) -> str:
    return f"{instance_id}.log"


def console_earlier_name(instance_id: str) -> str:
    """What the console printed on the nodes the instance was moved from (compute/moves.py), which
    the node shows before its log (backends.base.Driver.console_output)."""
    return console_name(instance_id) + CONSOLE_EARLIER_SUFFIX


def console_path(settings: Settings, instance_id: str) -> str:
    return posixpath.join(pool_path(settings, CONSOLE_POOL), console_name(instance_id))


def image_volume_name(image_id: str, etag: str) -> str:
    """One volume per image and object version: a rewritten object never replaces a volume that
    running overlays still use as their backing store."""
    tag = "".join(c for c in etag if c.isalnum())[:16] or "x"
    return f"{image_id}-{tag}"
