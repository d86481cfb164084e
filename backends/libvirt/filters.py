"""LibvirtFilters: network filters (nwfilter) of one libvirt node.

Redefining a filter that exists needs the uuid it has on the node (libvirt refuses "filter ...
already exists with uuid ..." otherwise: ../shared/virt/PROBES-2026-12.md §3), so define() looks
it up first and carries it over. A redefinition re-instantiates the rules of every running guest
using the filter, without restarting anything. libvirt's test driver has no network filters:
every call there raises NotSupported.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import libvirt

from backends.base import DriverError, InvalidSpec, NotSupported
from backends.filters import FilterDriver, FilterSpec
from backends.libvirt.config_filter import filter_xml, parse_filter
from backends.libvirt.connection import Connection, describe

T = TypeVar("T")


def find_filter(conn: libvirt.virConnect, name: str) -> libvirt.virNWFilter | None:
    try:
        return conn.nwfilterLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
            return None
        raise


class LibvirtFilters(FilterDriver):
    """FilterDriver on a libvirt Connection (shared with the LibvirtDriver that created it)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def _call(self, fn: Callable[[libvirt.virConnect], T], what: str) -> T:
        try:
            return self.connection.call(fn, what)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                raise NotSupported(f"{self.connection.uri} has no network filters (nwfilter): {describe(exc)}") from exc
            raise DriverError(f"{what} failed on {self.connection.uri}: {describe(exc)}") from exc

    def define(self, spec: FilterSpec) -> bool:
        """See FilterDriver.define. A filter that another client defined meanwhile (libvirt then
        refuses the define without its uuid) is compared and redefined with its uuid."""
        def op(conn: libvirt.virConnect) -> bool:
            try:
                return attempt(conn)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_OPERATION_FAILED or "already exists" not in describe(exc):
                    raise
            return attempt(conn)

        def attempt(conn: libvirt.virConnect) -> bool:
            current = find_filter(conn, spec.name)
            uuid = None
            if current is not None:
                have = parse_filter(current.XMLDesc(0))
                if have.same_as(spec):
                    return False
                uuid = current.UUIDString()
            wanted = FilterSpec(spec.name, refs=list(spec.refs), rules=list(spec.rules), chain=spec.chain, uuid=uuid)
            try:
                conn.nwfilterDefineXML(filter_xml(wanted))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (libvirt.VIR_ERR_XML_ERROR, libvirt.VIR_ERR_INVALID_ARG,
                                            libvirt.VIR_ERR_CONFIG_UNSUPPORTED):
                    raise InvalidSpec(f"{self.connection.uri} rejected filter {spec.name!r}: {describe(exc)}") from exc
                raise
            return True
        return self._call(op, f"defining filter {spec.name}")

    def get(self, name: str) -> FilterSpec | None:
        def op(conn: libvirt.virConnect) -> FilterSpec | None:
            found = find_filter(conn, name)
            return None if found is None else parse_filter(found.XMLDesc(0))
        return self._call(op, f"reading filter {name}")

    def names(self, prefix: str = "") -> list[str]:
        def op(conn: libvirt.virConnect) -> list[str]:
            return sorted(n for n in (f.name() for f in conn.listAllNWFilters(0)) if n.startswith(prefix))
        return self._call(op, "listing filters")

    def undefine(self, name: str) -> bool:
        def op(conn: libvirt.virConnect) -> bool:
            found = find_filter(conn, name)
            if found is None:
                return True
            try:
                found.undefine()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:  # in use
                    return False
                if exc.get_error_code() == libvirt.VIR_ERR_NO_NWFILTER:
                    return True
                raise
            return True
        return self._call(op, f"removing filter {name}")
