"""The compute worker: carries out what the API recorded, on the VMM nodes.

The API only writes rows (state + task). This worker, one per installation at a time (a lease
in the database), picks up tasks, calls the hypervisor driver and moves instances along EC2's
state machine with compare-and-set updates, so a request that arrives meanwhile (terminate
during spawn) is never overwritten. It also reconciles the database with the nodes: the
database is the source of truth, so domains the test driver forgot are created again. And it
removes the cached volumes of deregistered images from the nodes once no instance needs them
(compute/image_gc.py), plugs and unplugs the NICs of elastic addresses (compute/elastic_nics.py), and every cumulus_sweep_hours the Cumulus blobs no row references
(storage/maintenance.py), on one of its threads.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update

from backends.base import DomainNotFound, DriverError, InvalidState, NodeUnavailable, PowerState
from ec2gw.compute import (
    elastic_nics,
    filter_sync,
    image_gc,
    image_tasks,
    launch_volumes,
    leases,
    locks,
    metrics,
    moves,
    provision,
    reconcile,
    snapshot_tasks,
    volume_tasks,
)
from ec2gw.compute.cumulus import Cumulus
from ec2gw.compute.drivers import DriverPool
from ec2gw.compute.jobs import Job
from ec2gw.compute.placement import LOCAL_NODE, NodeRef, node_ref
from ec2gw.compute.retry_later import RetryLater
from ec2gw.config import Settings
from ec2gw.db.models import Instance, Node, Tag
from ec2gw.db.session import Database
from ec2gw.network import pools

log = logging.getLogger("ec2gw.compute")

LOCK_NAME = "compute-worker"
NODE_RETRY_SECONDS = 5.0
#: seconds between looks for cached volumes of deregistered images (one query when there are none)
IMAGE_GC_SECONDS = 1.0
#: seconds after the worker starts before its first sweep of orphaned Cumulus blobs
CUMULUS_SWEEP_DELAY = 60.0


class ComputeWorker:
    def __init__(self, settings: Settings, db: Database, drivers: DriverPool | None = None, threads: int = 8,
                 cumulus: Cumulus | None = None) -> None:
        self.settings = settings
        self.db = db
        #: the object store images come from and go to (the App's, ec2gw/compute/cumulus.py); without
        #: it launches and CreateImage fail saying so, and no blobs are swept
        self.cumulus = cumulus
        self.drivers = drivers or DriverPool()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="compute")
        self.in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._reconciled = False
        #: nodes whose jobs wait NODE_RETRY_SECONDS (they stopped answering)
        self._node_retry = RetryLater(NODE_RETRY_SECONDS)
        self._last_sync = 0.0
        self._last_reap = 0.0
        self._last_gc = 0.0
        #: monotonic time of the next sweep of orphaned Cumulus blobs, and the one running (if any)
        self._next_sweep = time.monotonic() + CUMULUS_SWEEP_DELAY
        self._sweep: Future[None] | None = None
        #: the pass putting elastic addresses' NICs on the nodes (compute/elastic_nics.py), while one runs
        self._nics: Future[int] | None = None
        #: set when the worker is asked to stop (run()'s event): a running sweep ends early
        self._stopping = threading.Event()
        #: removes the cached volumes of deregistered images from the nodes (compute/image_gc.py)
        self.images = image_gc.Collector(self)
        #: samples every node's domain statistics into instance metrics (compute/metrics.py)
        self.metrics = metrics.Sampler(self)
        #: keeps the nodes' network filters equal to the security groups (compute/filter_sync.py)
        self.filters = filter_sync.FilterSync(self)

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("compute worker %s started", self.holder)
        self._stopping = stop
        try:
            while not stop.is_set():
                try:
                    if locks.acquire(self.db, LOCK_NAME, self.holder, ttl=max(10.0, self.settings.worker_interval * 20)):
                        self.run_once()
                    else:
                        self._reconciled = False
                except Exception:  # keep the worker alive whatever one pass hit; the log has the cause
                    log.exception("compute worker pass failed")
                    stop.wait(1.0)
                stop.wait(self.settings.worker_interval)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=False)
            locks.release(self.db, LOCK_NAME, self.holder)
            self.drivers.close()
            log.info("compute worker %s stopped", self.holder)

    def run_once(self) -> int:
        if not self._reconciled:
            self.reconcile()
            self._reconciled = True
        jobs = self._pending_jobs()
        for job in jobs:
            self._submit(job)
        image_tasks.run_pending(self)
        if self._nics is None or self._nics.done():
            self._nics = self.pool.submit(elastic_nics.sync, self)
        volume_tasks.run_pending(self)
        snapshot_tasks.run_pending(self)
        now = time.monotonic()
        if now - self._last_sync > 5.0:
            self._last_sync = now
            self.sync_power_states()
        leases.reap_expired(self)
        if now - self._last_gc >= IMAGE_GC_SECONDS:
            self._last_gc = now
            self.images.run()
        if now - self._last_reap > 30.0:
            self._last_reap = now
            self.reap_terminated()
        self._maybe_sweep(now)
        self.metrics.maybe_run(now)
        self.filters.maybe_run(now)
        return len(jobs)

    def _maybe_sweep(self, now: float) -> None:
        """Start a sweep of orphaned Cumulus blobs on the pool when one is due and none is running."""
        hours = self.settings.cumulus_sweep_hours
        if hours <= 0 or self.cumulus is None or now < self._next_sweep or (self._sweep is not None and not self._sweep.done()):
            return
        self._next_sweep = now + hours * 3600.0
        self._sweep = self.pool.submit(self.sweep_cumulus)

    def sweep_cumulus(self) -> None:
        """Remove the Cumulus blobs no row references (storage/maintenance.py); logs, never raises."""
        if self.cumulus is None:
            return
        try:
            removed = self.cumulus.sweep_orphans(stop=self._stopping)
        except Exception:
            log.exception("sweep of orphaned Cumulus blobs failed")
            return
        log.info("sweep of orphaned Cumulus blobs removed %d", removed)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self.in_flight:
                    return True
            time.sleep(0.01)
        return False

    def submit_holding(self, held: Collection[str], fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on the pool with the ids ``held`` (instances, volumes, snapshots, images...)
        in the in-flight set until it ends, so that no other job on any of them starts meanwhile;
        False, and nothing run, while one of them is held already."""
        with self._lock:
            if any(h in self.in_flight for h in held):
                return False
            self.in_flight.update(held)
        fut = self.pool.submit(fn, *args)
        fut.add_done_callback(functools.partial(self._release, tuple(held)))
        return True

    def _release(self, held: tuple[str, ...], _future: object = None) -> None:
        with self._lock:
            self.in_flight.difference_update(held)

    def _submit(self, job: Job) -> None:
        self.submit_holding((job.instance_id,), self._run_job, job)

    def node_waits(self, name: str) -> bool:
        """True while a node that stopped answering a moment ago is left alone (NODE_RETRY_SECONDS)."""
        return self._node_retry.waits(name)

    def _pending_jobs(self) -> list[Job]:
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(Instance)
                    .where(or_(Instance.task.is_not(None), Instance.reboot_pending.is_(True)))
                    .order_by(Instance.updated_at)
                    .limit(500)
                )
            )
            nodes: dict[str | None, NodeRef] = {}
            jobs = []
            for inst in rows:
                if inst.node_name not in nodes:
                    nodes[inst.node_name] = node_ref(s, self.settings, inst.node_name)
                task = inst.task or "reboot"
                if self._node_retry.waits(nodes[inst.node_name].name):
                    continue  # the node did not answer a moment ago: retry later, keep threads for other nodes
                jobs.append(Job(inst.id, task, nodes[inst.node_name], inst.vcpus, inst.memory_mib, inst.mac, inst.force_stop))
        return jobs

    # -- one task -----------------------------------------------------------------------------
    def _run_job(self, job: Job) -> None:
        handler: Callable[[Job], None] = getattr(self, f"_do_{job.task}")
        try:
            job = self._current_node(job)
            handler(job)
        except NodeUnavailable as exc:
            log.warning("%s: node %s does not answer (%s); will retry", job.instance_id, job.node.name, exc)
            self._node_retry.later(job.node.name)
            self._mark_node(job.node.name, False, str(exc))
        except Exception as exc:
            log.exception("%s: %s failed", job.instance_id, job.task)
            if job.task in ("spawn", "start"):
                why = f": {exc}" if isinstance(exc, provision.ProvisionFailed) else ""
                self._fail_launch(job, "Server.InternalError",
                                  f"Server.InternalError: the hypervisor could not start the instance{why}"[:255])

    def _current_node(self, job: Job) -> Job:
        """``job`` on the node its instance names now: a move may have finished since it was read."""
        with self.db.session() as s:
            name = s.scalar(select(Instance.node_name).where(Instance.id == job.instance_id))
            if (name or LOCAL_NODE) == job.node.name:
                return job
            return replace(job, node=node_ref(s, self.settings, name))

    def domain_spec(self, job: Job) -> Any:
        """The domain to create: provisions disks, seed and network on the node first; the
        instance's attached volumes come after its own disks."""
        spec = provision.prepare(self, job)
        spec.disks.extend(volume_tasks.attached_disks(self, job.instance_id, job.node.domain_type == "test"))
        return spec

    def _do_spawn(self, job: Job) -> None:
        drv = self.drivers.get(job.node)
        if drv.info(job.instance_id).state is PowerState.MISSING:
            drv.spawn(self.domain_spec(job))
        elif drv.info(job.instance_id).state is not PowerState.RUNNING:
            drv.start(job.instance_id)
        self._finish(job, "spawn", state="running")

    def _do_start(self, job: Job) -> None:
        drv = self.drivers.get(job.node)
        if drv.info(job.instance_id).state is PowerState.MISSING:
            drv.spawn(self.domain_spec(job))
        else:
            drv.start(job.instance_id)
        self._finish(job, "start", state="running", paused_at=None, hibernated=False)

    def _do_stop(self, job: Job) -> None:
        drv = self.drivers.get(job.node)
        try:
            drv.power_off(job.instance_id, None if job.force else self.settings.stop_timeout)
        except DomainNotFound:
            pass
        self._finish(job, "stop", state="stopped", paused_at=None)

    def _do_hibernate(self, job: Job) -> None:
        """StopInstances Hibernate=true: save the guest's memory on its node (managed save), then stopped.

        As on EC2, a hibernation that fails ends in an ordinary stop, with a reason saying so.
        """
        drv = self.drivers.get(job.node)
        try:
            drv.save(job.instance_id)
        except NodeUnavailable:
            raise
        except DomainNotFound:
            self._finish(job, "hibernate", state="stopped", paused_at=None, hibernated=False)
            return
        except DriverError as exc:
            log.warning("%s: hibernation failed on node %s (%s); stopping it instead", job.instance_id, job.node.name, exc)
            try:
                drv.power_off(job.instance_id, self.settings.stop_timeout)
            except DomainNotFound:
                pass
            self._finish(job, "hibernate", state="stopped", paused_at=None, hibernated=False,
                         state_reason_code="Client.UserInitiatedShutdown",
                         state_reason_message="Client.UserInitiatedShutdown: hibernation failed; the instance was "
                                              "stopped without saving its memory")
            return
        self._finish(job, "hibernate", state="stopped", paused_at=None, hibernated=True)

    def _do_terminate(self, job: Job) -> None:
        drv = self.drivers.get(job.node)
        drv.destroy(job.instance_id)
        launch_volumes.keep_root(self, drv, job.instance_id)
        provision.cleanup(self, job)
        volume_tasks.release_instance(self, job.instance_id)
        now = datetime.now(UTC)
        with self.db.session(write=True) as s:
            res = s.execute(
                update(Instance)
                .where(Instance.id == job.instance_id, Instance.task == "terminate")
                .values(state="terminated", task=None, terminated_at=now, reboot_pending=False, paused_at=None,
                        hibernated=False)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                pools.release(s, job.instance_id)

    def _do_reboot(self, job: Job) -> None:
        drv = self.drivers.get(job.node)
        try:
            if drv.info(job.instance_id).state is PowerState.PAUSED:  # the owner's reboot ends a pause
                drv.resume(job.instance_id)
            drv.reboot(job.instance_id)
        except DomainNotFound:
            pass
        with self.db.session(write=True) as s:
            s.execute(update(Instance).where(Instance.id == job.instance_id).values(reboot_pending=False, paused_at=None))

    def _do_pause(self, job: Job) -> None:
        """An operator's pause (`ec2gw admin instance pause`): the guest keeps its memory, stops running."""
        try:
            self.drivers.get(job.node).suspend(job.instance_id)
        except NodeUnavailable:
            raise
        except DriverError as exc:  # not running there, gone, or refused: the request ends unfulfilled
            log.warning("%s: could not pause it on node %s: %s", job.instance_id, job.node.name, exc)
            self._finish(job, "pause")
            return
        self._finish(job, "pause", paused_at=datetime.now(UTC))

    def _do_resume(self, job: Job) -> None:
        """The end of an operator's pause: the guest runs on from where it was."""
        try:
            self.drivers.get(job.node).resume(job.instance_id)
        except NodeUnavailable:
            raise
        except (DomainNotFound, InvalidState) as exc:  # not running any more: nothing is paused
            log.warning("%s: nothing to resume on node %s: %s", job.instance_id, job.node.name, exc)
        except DriverError as exc:
            log.warning("%s: could not resume it on node %s: %s", job.instance_id, job.node.name, exc)
            self._finish(job, "resume")
            return
        self._finish(job, "resume", paused_at=None)

    def _do_migrate(self, job: Job) -> None:
        """An operator's move to another node (`ec2gw admin instance migrate`, compute/moves.py)."""
        moves.run(self, job)

    def _finish(self, job: Job, task: str, **values: Any) -> None:
        with self.db.session(write=True) as s:
            s.execute(
                update(Instance).where(Instance.id == job.instance_id, Instance.task == task).values(task=None, **values)
            )

    def _fail_launch(self, job: Job, code: str, message: str) -> None:
        try:
            self.drivers.get(job.node).destroy(job.instance_id)
            provision.cleanup(self, job)  # overlay, seed, DHCP entries of a half-made launch
        except DriverError:
            pass
        volume_tasks.release_instance(self, job.instance_id)
        now = datetime.now(UTC)
        with self.db.session(write=True) as s:
            res = s.execute(
                update(Instance)
                .where(Instance.id == job.instance_id, Instance.task == job.task)
                .values(state="terminated", task=None, terminated_at=now, state_reason_code=code, state_reason_message=message)
            )
            if res.rowcount == 1:  # type: ignore[attr-defined]
                pools.release(s, job.instance_id)

    def _mark_node(self, name: str, reachable: bool, error: str = "") -> None:
        with self.db.session(write=True) as s:
            s.execute(update(Node).where(Node.name == name).values(reachable=reachable, last_error=error[:500]))

    # -- reconciliation (ec2gw/compute/reconcile.py) -------------------------------------------
    def reconcile(self) -> None:
        reconcile.reconcile(self)
        self._reconciled = True

    def sync_power_states(self) -> None:
        reconcile.sync_power_states(self)

    def _set_state(self, instance_id: str, expected: str, state: str, code: str, message: str) -> None:
        with self.db.session(write=True) as s:
            s.execute(
                update(Instance)
                .where(Instance.id == instance_id, Instance.state == expected, Instance.task.is_(None))
                .values(state=state, state_reason_code=code, state_reason_message=message)
            )

    def reap_terminated(self) -> None:
        """Forget terminated instances once they are no longer visible."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.settings.terminated_visible_seconds)
        with self.db.session(write=True) as s:
            gone = list(s.scalars(select(Instance.id).where(Instance.state == "terminated", Instance.terminated_at < cutoff).limit(1000)))
            if gone:
                s.execute(delete(Tag).where(Tag.resource_id.in_(gone)))
                s.execute(delete(Instance).where(Instance.id.in_(gone)))
        volume_tasks.reap_deleted(self)
