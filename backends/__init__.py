"""Hypervisor drivers: the interface in backends.base, libvirt in backends.libvirt.

Import ``driver_for`` from here; it loads libvirt only when a driver is actually made.
"""

from __future__ import annotations

from backends.registry import driver_for

__all__ = ["driver_for"]
