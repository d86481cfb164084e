"""libvirt storage pool and volume XML as small objects (see config.py for the pattern)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lxml import etree

from backends.libvirt.config import XmlObject, parse_size, sub


@dataclass
class StoragePool(XmlObject):
    """<pool type='dir'>: a directory on the node holding volumes as files."""

    root_name: ClassVar[str] = "pool"
    name: str = ""
    path: str = ""
    type: str = "dir"

    def to_element(self) -> etree._Element:
        el = etree.Element("pool", type=self.type)
        sub(el, "name", self.name)
        sub(sub(el, "target"), "path", self.path)
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> StoragePool:
        return cls(name=el.findtext("name", ""), path=el.findtext("target/path", ""),
                   type=el.get("type", "dir"))


@dataclass
class StorageVolume(XmlObject):
    """<volume>: ``format`` raw or qcow2; a qcow2 volume may have a backing store (an overlay)."""

    root_name: ClassVar[str] = "volume"
    name: str = ""
    capacity: int = 0
    allocation: int | None = None
    format: str = "raw"
    path: str | None = None
    backing_path: str | None = None
    backing_format: str | None = None

    def to_element(self) -> etree._Element:
        el = etree.Element("volume")
        sub(el, "name", self.name)
        sub(el, "capacity", str(self.capacity), unit="bytes")
        if self.allocation is not None:
            sub(el, "allocation", str(self.allocation), unit="bytes")
        target = sub(el, "target")
        if self.path:
            sub(target, "path", self.path)
        sub(target, "format", type=self.format)
        if self.backing_path:
            backing = sub(el, "backingStore")
            sub(backing, "path", self.backing_path)
            sub(backing, "format", type=self.backing_format)
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> StorageVolume:
        fmt = el.find("target/format")
        bfmt = el.find("backingStore/format")
        alloc = el.find("allocation")
        return cls(name=el.findtext("name", ""), capacity=parse_size(el.find("capacity")),
                   allocation=parse_size(alloc) if alloc is not None else None,
                   format=fmt.get("type", "raw") if fmt is not None else "raw",
                   path=el.findtext("target/path"), backing_path=el.findtext("backingStore/path"),
                   backing_format=bfmt.get("type") if bfmt is not None else None)
