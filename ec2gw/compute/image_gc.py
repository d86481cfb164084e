"""Cached images leave the nodes once their image is deregistered and nothing on the node needs them.

What: a NodeImage row outlives its image when the image is deregistered (DeregisterImage, or
cloud-client --delete). The compute worker then deletes the cached volume on that node and the
row, but only once no instance still needs it:
* in the database, no instance on that node names the image (as its image, kernel or ramdisk)
  unless it is terminated and cleaned up (state terminated and no task left: terminate removes
  the domain and the overlay before it clears the task);
* on the node itself, no volume of the instances pool has it as backing store (an overlay left
  behind by a clean-up that failed would otherwise lose its base; the volume then stays and a
  warning names the overlays).
Rows of nodes that are no longer registered are simply dropped: there is nothing to reach.
When: every worker pass asks the database (one query, nothing when no image was deregistered);
a node is asked only when the database says the volume is free, in the worker's thread pool,
so the worker's loop never waits for a node. A node that does not answer, or a volume still
backing an overlay, is tried again after RECHECK_SECONDS.
Why: images are large; a cache that only grows fills the nodes' disks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from backends.base import DriverError
from ec2gw.compute.image_cache import lock_for, overlays_on
from ec2gw.compute.image_models import NodeImage
from ec2gw.compute.placement import LOCAL_NODE, NodeRef, implicit_node, ref_of
from ec2gw.compute.retry_later import RetryLater
from ec2gw.db.models import Image, Instance, Node

if TYPE_CHECKING:
    from ec2gw.compute.worker import ComputeWorker

log = logging.getLogger("ec2gw.compute")

#: seconds before a volume that could not be removed (node silent, overlay on it) is tried again
RECHECK_SECONDS = 60.0


@dataclass(frozen=True)
class Orphan:
    """A cached volume whose image is gone."""

    node: str
    image_id: str
    pool: str
    volume: str

    @property
    def key(self) -> str:
        return f"image-gc:{self.node}:{self.image_id}"


def orphans(s: Session) -> list[Orphan]:
    """NodeImage rows whose image is no longer registered."""
    q = (select(NodeImage).outerjoin(Image, Image.id == NodeImage.image_id).where(Image.id.is_(None))
         .order_by(NodeImage.node_name, NodeImage.image_id))
    return [Orphan(r.node_name, r.image_id, r.pool, r.volume) for r in s.scalars(q)]


def users(s: Session, node: str, image_id: str) -> list[str]:
    """Instances on ``node`` that still need ``image_id``: any but the terminated and cleaned up."""
    on_node = (or_(Instance.node_name == node, Instance.node_name.is_(None)) if node == LOCAL_NODE
               else Instance.node_name == node)
    uses = or_(Instance.image_id == image_id, Instance.kernel_id == image_id, Instance.ramdisk_id == image_id)
    live = or_(Instance.state != "terminated", Instance.task.is_not(None))
    return list(s.scalars(select(Instance.id).where(on_node, uses, live).order_by(Instance.id).limit(10)))


def forget(s: Session, orphan: Orphan) -> None:
    s.execute(delete(NodeImage).where(and_(NodeImage.node_name == orphan.node, NodeImage.image_id == orphan.image_id,
                                           NodeImage.volume == orphan.volume)))


class Collector:
    """The worker's side: finds removable volumes each pass and removes them in its thread pool."""

    def __init__(self, worker: ComputeWorker, recheck: float = RECHECK_SECONDS) -> None:
        self.worker = worker
        #: orphans not tried again for `recheck` seconds
        self._retry = RetryLater(recheck)

    @property
    def recheck(self) -> float:
        """Seconds before an orphan that could not be removed is tried again."""
        return self._retry.seconds

    @recheck.setter
    def recheck(self, seconds: float) -> None:
        self._retry.seconds = seconds

    def run(self) -> int:
        """One pass; returns how many removals were started."""
        w = self.worker
        with w.db.session() as s:
            found = orphans(s)
            if not found:
                return 0
            rows = list(s.scalars(select(Node)))
            nodes: dict[str, NodeRef] = {n.name: ref_of(n) for n in rows}
            reachable = {n.name: n.reachable for n in rows}
            nodes.setdefault(LOCAL_NODE, implicit_node(w.settings))
            now = time.monotonic()
            gone_nodes = [o for o in found if o.node not in nodes]
            ready = [o for o in found if o.node in nodes and reachable.get(o.node, True)
                     and not self._retry.waits(o.key, now) and not users(s, o.node, o.image_id)]
        if gone_nodes:
            with w.db.session(write=True) as s:
                for o in gone_nodes:
                    forget(s, o)
            log.info("dropped %d cached image record(s) of nodes that are no longer registered", len(gone_nodes))
        started = 0
        for o in ready:
            if w.submit_holding((o.key,), self.remove, nodes[o.node], o):
                started += 1
        return started

    def remove(self, node: NodeRef, orphan: Orphan) -> bool:
        """Delete the volume unless an overlay on the node still uses it, then the row. True if gone."""
        w = self.worker
        try:
            with lock_for(node.name, orphan.image_id):
                with w.db.session() as s:  # again, now that no launch of this node and image can run
                    if users(s, orphan.node, orphan.image_id):
                        return False
                drv = w.drivers.get(node)
                overlays = overlays_on(drv, orphan.pool, orphan.volume)
                if overlays:
                    self._retry.later(orphan.key)
                    log.warning("image %s is deregistered, but its cached volume %s/%s on node %s still backs %s; "
                                "it is kept until they are deleted", orphan.image_id, orphan.pool, orphan.volume,
                                node.name, ", ".join(overlays))
                    return False
                drv.volumes.delete_volume(orphan.pool, orphan.volume)
                with w.db.session(write=True) as s:
                    forget(s, orphan)
        except DriverError as exc:  # NodeUnavailable included: the node's check reports it
            self._retry.later(orphan.key)
            log.warning("could not remove the cached volume %s/%s of deregistered image %s from node %s (%s); "
                        "trying again in %.0f s", orphan.pool, orphan.volume, orphan.image_id, node.name, exc,
                        self.recheck)
            return False
        self._retry.clear(orphan.key)
        log.info("removed the cached volume %s/%s of deregistered image %s from node %s", orphan.pool, orphan.volume,
                 orphan.image_id, node.name)
        return True
