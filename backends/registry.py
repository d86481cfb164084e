"""driver_for(): the one place that turns a node's URI into a Driver.

The application factory calls it per configured VMM node and passes the drivers down, so no
module holds a driver globally. Only libvirt URIs exist today; a new hypervisor API gets its
own scheme check here.
"""

from __future__ import annotations

from backends.base import Driver


def driver_for(uri: str, domain_type: str | None = None, *, timeout: float = 30.0) -> Driver:
    """A Driver for the node at ``uri`` whose domains are of ``domain_type``.

    ``uri`` is a libvirt URI: ``qemu:///system``, ``qemu+tcp://10.77.0.1/system``,
    ``test:///default`` (in-process test driver, shared by the whole process) or
    ``test:///ABS/PATH/node.xml`` (a private in-process test node). ``domain_type`` is 'kvm' on
    real hosts and 'qemu' where KVM is unusable; it is ignored ('test') for test URIs.
    Connecting is lazy: an unreachable node raises NodeUnavailable on first use, not here.
    """
    # start-up time: libvirt's bindings load only when a driver is made, not for every CLI command
    from backends.libvirt.driver import LibvirtDriver

    return LibvirtDriver(uri, domain_type=domain_type, timeout=timeout)
