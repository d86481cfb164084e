"""libvirt domain XML as small objects, each with to_xml() and from_xml() (lxml).

As nova's libvirt/config.py: objects hold only what ec2gw writes or reads back, so building XML is
never string formatting and reading libvirt's answer is never regular expressions. from_xml()
accepts the fuller XML libvirt returns and ignores elements these objects do not model (PCI
addresses, controllers, ...); to_xml(from_xml(x)) therefore round-trips ec2gw's own documents.
Policy (which devices a spec gets) lives in designer.py, not here.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from lxml import etree

T = TypeVar("T", bound="XmlObject")
_UNITS = {"b": 1, "bytes": 1, "k": 1024, "kib": 1024, "kb": 1000, "m": 1 << 20, "mib": 1 << 20,
          "mb": 10**6, "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40}


def sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    """Append child ``tag`` with the non-None attributes and optional text."""
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def parse_size(el: etree._Element | None, default_unit: str = "bytes") -> int:
    """Read a libvirt scaled integer (``<memory unit='KiB'>``) as bytes."""
    if el is None or el.text is None:
        return 0
    return int(el.text) * _UNITS[el.get("unit", default_unit).lower()]


class XmlObject:
    """Base: subclasses implement to_element() and from_element()."""

    root_name: ClassVar[str]

    def to_element(self) -> etree._Element:
        raise NotImplementedError

    @classmethod
    def from_element(cls, el: etree._Element) -> Self:
        raise NotImplementedError

    def to_xml(self) -> str:
        return etree.tostring(self.to_element(), pretty_print=True, encoding="unicode")

    @classmethod
    def from_xml(cls, text: str | bytes) -> Self:
        el = etree.fromstring(text.encode() if isinstance(text, str) else text)
        if el.tag != cls.root_name:
            raise ValueError(f"expected <{cls.root_name}>, got <{el.tag}>")
        return cls.from_element(el)


@dataclass
class GuestOS(XmlObject):
    """<os>: machine type and how the guest boots (BIOS boot order, or a kernel given directly)."""

    root_name: ClassVar[str] = "os"
    type: str = "hvm"
    arch: str | None = None
    machine: str | None = None
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    boot_devs: list[str] = field(default_factory=list)

    def to_element(self) -> etree._Element:
        el = etree.Element("os")
        sub(el, "type", self.type, arch=self.arch, machine=self.machine)
        for tag in ("kernel", "initrd", "cmdline"):
            if getattr(self, tag) is not None:
                sub(el, tag, getattr(self, tag))
        for dev in self.boot_devs:
            sub(el, "boot", dev=dev)
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> GuestOS:
        t = el.find("type")
        return cls(type=t.text if t is not None and t.text else "hvm",
                   arch=t.get("arch") if t is not None else None,
                   machine=t.get("machine") if t is not None else None,
                   kernel=el.findtext("kernel"), initrd=el.findtext("initrd"),
                   cmdline=el.findtext("cmdline"),
                   boot_devs=[b.get("dev", "") for b in el.findall("boot")])


@dataclass
class GuestDisk(XmlObject):
    """<disk>: ``source_type`` 'file' (``source``: path) or 'volume' (``pool``/``volume``)."""

    root_name: ClassVar[str] = "disk"
    source_type: str = "file"
    device: str = "disk"
    driver_name: str | None = "qemu"
    driver_type: str | None = "raw"
    source: str | None = None
    pool: str | None = None
    volume: str | None = None
    target_dev: str = "vda"
    target_bus: str | None = "virtio"
    readonly: bool = False

    def to_element(self) -> etree._Element:
        el = etree.Element("disk", type=self.source_type, device=self.device)
        if self.driver_name or self.driver_type:
            sub(el, "driver", name=self.driver_name, type=self.driver_type)
        if self.source_type == "volume":
            sub(el, "source", pool=self.pool, volume=self.volume)
        elif self.source is not None:
            sub(el, "source", **{"dev" if self.source_type == "block" else "file": self.source})
        sub(el, "target", dev=self.target_dev, bus=self.target_bus)
        if self.readonly:
            sub(el, "readonly")
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> GuestDisk:
        drv, src, tgt = el.find("driver"), el.find("source"), el.find("target")
        return cls(source_type=el.get("type", "file"), device=el.get("device", "disk"),
                   driver_name=drv.get("name") if drv is not None else None,
                   driver_type=drv.get("type") if drv is not None else None,
                   source=(src.get("file") or src.get("dev")) if src is not None else None,
                   pool=src.get("pool") if src is not None else None,
                   volume=src.get("volume") if src is not None else None,
                   target_dev=tgt.get("dev", "") if tgt is not None else "",
                   target_bus=tgt.get("bus") if tgt is not None else None,
                   readonly=el.find("readonly") is not None)


@dataclass
class GuestInterface(XmlObject):
    """<interface>: ``type`` 'network' or 'bridge' (``source`` names it) or 'user'; ``filterref``
    names the network filter its traffic goes through, with ``filter_params`` (``IP``, ...)."""

    root_name: ClassVar[str] = "interface"
    type: str = "network"
    mac: str | None = None
    source: str | None = None
    model: str | None = "virtio"
    filterref: str | None = None
    filter_params: dict[str, str] = field(default_factory=dict)

    def to_element(self) -> etree._Element:
        el = etree.Element("interface", type=self.type)
        if self.mac:
            sub(el, "mac", address=self.mac)
        if self.type in ("network", "bridge") and self.source:
            sub(el, "source", **{self.type: self.source})
        if self.model:
            sub(el, "model", type=self.model)
        if self.filterref:
            ref = sub(el, "filterref", filter=self.filterref)
            for name, value in sorted(self.filter_params.items()):
                sub(ref, "parameter", name=name, value=value)
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> GuestInterface:
        kind = el.get("type", "network")
        mac, src, model, ref = el.find("mac"), el.find("source"), el.find("model"), el.find("filterref")
        return cls(type=kind, mac=mac.get("address") if mac is not None else None,
                   source=src.get(kind) if src is not None else None,
                   model=model.get("type") if model is not None else None,
                   filterref=ref.get("filter") if ref is not None else None,
                   filter_params={p.get("name", ""): p.get("value", "") for p in ref.findall("parameter")}
                   if ref is not None else {})


@dataclass
class GuestCharDevice(XmlObject):
    """<serial> or <console> of type pty, optionally also logged to ``log_file`` on the node."""

    root_name: ClassVar[str] = "serial"
    type: str = "pty"
    log_file: str | None = None
    log_append: bool = False
    target_type: str | None = None
    target_port: int = 0

    def to_element(self) -> etree._Element:
        el = etree.Element(self.root_name, type=self.type)
        if self.log_file:
            sub(el, "log", file=self.log_file, append="on" if self.log_append else "off")
        sub(el, "target", type=self.target_type, port=str(self.target_port))
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> GuestCharDevice:
        log, tgt = el.find("log"), el.find("target")
        return cls(type=el.get("type", "pty"),
                   log_file=log.get("file") if log is not None else None,
                   log_append=log is not None and log.get("append") == "on",
                   target_type=tgt.get("type") if tgt is not None else None,
                   target_port=int(tgt.get("port", "0")) if tgt is not None else 0)


@dataclass
class GuestSerial(GuestCharDevice):
    """<serial>: the guest's ttyS<port>."""

    root_name: ClassVar[str] = "serial"


@dataclass
class GuestConsole(GuestCharDevice):
    """<console>: libvirt's console handle, aliased to the first serial port."""

    root_name: ClassVar[str] = "console"
    target_type: str | None = "serial"


@dataclass
class GuestMemballoon(XmlObject):
    """<memballoon>: lets the host read guest memory statistics."""

    root_name: ClassVar[str] = "memballoon"
    model: str = "virtio"

    def to_element(self) -> etree._Element:
        return etree.Element("memballoon", model=self.model)

    @classmethod
    def from_element(cls, el: etree._Element) -> GuestMemballoon:
        return cls(model=el.get("model", "none"))


GuestDevice = GuestDisk | GuestInterface | GuestSerial | GuestConsole | GuestMemballoon
_DEVICE_CLASSES: dict[str, type[XmlObject]] = {
    c.root_name: c for c in (GuestDisk, GuestInterface, GuestSerial, GuestConsole, GuestMemballoon)}


@dataclass
class GuestDomain(XmlObject):
    """<domain>: the whole guest definition."""

    root_name: ClassVar[str] = "domain"
    type: str = "kvm"
    name: str = ""
    uuid: str | None = None
    memory_kib: int = 0
    vcpus: int = 1
    os: GuestOS = field(default_factory=GuestOS)
    features: list[str] = field(default_factory=list)
    clock_offset: str | None = "utc"
    on_poweroff: str | None = "destroy"
    on_reboot: str | None = "restart"
    on_crash: str | None = "destroy"
    devices: list[GuestDevice] = field(default_factory=list)

    def to_element(self) -> etree._Element:
        el = etree.Element("domain", type=self.type)
        sub(el, "name", self.name)
        if self.uuid:
            sub(el, "uuid", self.uuid)
        sub(el, "memory", str(self.memory_kib), unit="KiB")
        sub(el, "currentMemory", str(self.memory_kib), unit="KiB")
        sub(el, "vcpu", str(self.vcpus))
        el.append(self.os.to_element())
        if self.features:
            feats = sub(el, "features")
            for f in self.features:
                sub(feats, f)
        if self.clock_offset:
            sub(el, "clock", offset=self.clock_offset)
        for tag in ("on_poweroff", "on_reboot", "on_crash"):
            if getattr(self, tag):
                sub(el, tag, getattr(self, tag))
        devs = sub(el, "devices")
        for dev in self.devices:
            devs.append(dev.to_element())
        return el

    @classmethod
    def from_element(cls, el: etree._Element) -> GuestDomain:
        os_el, feats, clock = el.find("os"), el.find("features"), el.find("clock")
        devices: list[GuestDevice] = []
        for dev in el.find("devices") if el.find("devices") is not None else ():
            kind = _DEVICE_CLASSES.get(dev.tag) if isinstance(dev.tag, str) else None
            if kind is not None:
                devices.append(kind.from_element(dev))  # type: ignore[arg-type]
        return cls(type=el.get("type", "kvm"), name=el.findtext("name", ""), uuid=el.findtext("uuid"),
                   memory_kib=parse_size(el.find("memory"), "KiB") // 1024,
                   vcpus=int(el.findtext("vcpu", "1")),
                   os=GuestOS.from_element(os_el) if os_el is not None else GuestOS(),
                   features=[f.tag for f in feats if isinstance(f.tag, str)] if feats is not None else [],
                   clock_offset=clock.get("offset") if clock is not None else None,
                   on_poweroff=el.findtext("on_poweroff"), on_reboot=el.findtext("on_reboot"),
                   on_crash=el.findtext("on_crash"), devices=devices)

    def find(self, kind: builtins.type[XmlObject]) -> list[GuestDevice]:
        """The devices of one class, in order (``dom.find(GuestDisk)``)."""
        return [d for d in self.devices if type(d) is kind]
