"""One driver per VMM node per process, opened on first use and kept."""

from __future__ import annotations

import threading

from backends.base import Driver
from backends.libvirt.driver import LibvirtDriver
from ec2gw.compute.placement import NodeRef


class DriverPool:
    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._drivers: dict[tuple[str, str], Driver] = {}
        self._lock = threading.Lock()

    def get(self, node: NodeRef) -> Driver:
        key = (node.uri, node.domain_type)
        with self._lock:
            drv = self._drivers.get(key)
            if drv is None:
                drv = self._drivers[key] = LibvirtDriver(node.uri, domain_type=node.domain_type, timeout=self._timeout)
            return drv

    def close(self) -> None:
        with self._lock:
            for drv in self._drivers.values():
                try:
                    drv.close()
                except Exception:  # closing a dead connection must not stop the others closing
                    pass
            self._drivers.clear()
