"""Object <-> XML for libvirt LXC domains.

Mechanism only: these classes turn values into ``<domain type='lxc'>`` XML and merge RAW
fragments into it. They make no decisions about *what* a VM gets; that lives in
:mod:`drivers.lxc.policy` (the split Nova makes between ``config.py`` and ``designer.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

Element = etree._Element


class RawXMLError(ValueError):
    """A RAW ``DATA`` fragment is not acceptable XML."""


def _sub(parent: Element, tag: str, text: str | None = None, **attrs: str) -> Element:
    child = etree.SubElement(parent, tag, {k: v for k, v in attrs.items()})
    if text is not None:
        child.text = text
    return child


@dataclass
class Filesystem:
    """A host directory bind-mounted into the container (``<filesystem type='mount'>``)."""

    source_dir: str
    target_dir: str
    readonly: bool = False

    def to_element(self) -> Element:
        fs = etree.Element("filesystem", type="mount")
        _sub(fs, "source", dir=self.source_dir)
        _sub(fs, "target", dir=self.target_dir)
        if self.readonly:
            _sub(fs, "readonly")
        return fs


@dataclass
class Route:
    """A static route given to the container through its interface (default: the default
    route of ``family``)."""

    gateway: str
    address: str | None = None
    prefix: int = 0
    family: str = "ipv4"

    def to_element(self) -> Element:
        address = self.address or ("::" if self.family == "ipv6" else "0.0.0.0")
        return etree.Element(
            "route", family=self.family, address=address, prefix=str(self.prefix),
            gateway=self.gateway,
        )


@dataclass
class Address:
    """An address libvirt sets on the container's end of an interface."""

    address: str
    prefix: int | None = None

    def to_element(self) -> Element:
        attrs = {"address": self.address}
        if self.prefix is not None:
            attrs["prefix"] = str(self.prefix)
        return etree.Element("ip", attrs)


@dataclass
class BridgeInterface:
    """A veth pair whose host end, ``target``, joins ``bridge`` (``<interface
    type='bridge'>``); its container end gets the MAC and addresses."""

    bridge: str
    mac: str | None = None
    addresses: list[Address] = field(default_factory=list)
    target: str | None = None
    routes: list[Route] = field(default_factory=list)

    def to_element(self) -> Element:
        iface = etree.Element("interface", type="bridge")
        if self.mac:
            _sub(iface, "mac", address=self.mac)
        _sub(iface, "source", bridge=self.bridge)
        for address in self.addresses:
            iface.append(address.to_element())
        if self.target:
            _sub(iface, "target", dev=self.target)
        for route in self.routes:
            iface.append(route.to_element())
        return iface


@dataclass
class IdMapRange:
    """``count`` ids from ``start`` inside the container map to ``target`` on the host."""

    start: int
    target: int
    count: int


@dataclass
class IdMap:
    """User-namespace id mapping (``<idmap>``); empty lists mean no user namespace."""

    uids: list[IdMapRange] = field(default_factory=list)
    gids: list[IdMapRange] = field(default_factory=list)

    def to_element(self) -> Element:
        idmap = etree.Element("idmap")
        for tag, ranges in (("uid", self.uids), ("gid", self.gids)):
            for r in ranges:
                _sub(idmap, tag, start=str(r.start), target=str(r.target), count=str(r.count))
        return idmap


@dataclass
class CpuTune:
    """cgroup CPU controls: relative ``shares`` and an optional hard ``quota`` per ``period``
    (both in microseconds)."""

    shares: int | None = None
    period: int | None = None
    quota: int | None = None

    def is_empty(self) -> bool:
        return self.shares is None and self.period is None and self.quota is None

    def to_element(self) -> Element:
        tune = etree.Element("cputune")
        for tag in ("shares", "period", "quota"):
            value = getattr(self, tag)
            if value is not None:
                _sub(tune, tag, str(value))
        return tune


@dataclass
class LxcDomain:
    """A whole LXC domain. ``memory_kib`` is both the domain memory and the cgroup hard limit."""

    name: str
    memory_kib: int
    vcpu: int = 1
    uuid: str | None = None
    cputune: CpuTune = field(default_factory=CpuTune)
    init: str = "/sbin/init"
    initargs: list[str] = field(default_factory=list)
    filesystems: list[Filesystem] = field(default_factory=list)
    interfaces: list[BridgeInterface] = field(default_factory=list)
    idmap: IdMap | None = None
    privnet: bool = True
    console: bool = True
    # RAW DATA fragments, merged into <domain> in order after everything above.
    raw: list[str] = field(default_factory=list)

    def to_element(self) -> Element:
        """Return a fresh ``<domain>`` tree; the object itself is not changed."""
        dom = etree.Element("domain", type="lxc")
        _sub(dom, "name", self.name)
        if self.uuid:
            _sub(dom, "uuid", self.uuid)
        _sub(dom, "memory", str(self.memory_kib), unit="KiB")
        memtune = _sub(dom, "memtune")
        _sub(memtune, "hard_limit", str(self.memory_kib), unit="KiB")
        _sub(dom, "vcpu", str(self.vcpu))
        if not self.cputune.is_empty():
            dom.append(self.cputune.to_element())
        os_ = _sub(dom, "os")
        _sub(os_, "type", "exe")
        _sub(os_, "init", self.init)
        for arg in self.initargs:
            _sub(os_, "initarg", arg)
        if self.idmap is not None and (self.idmap.uids or self.idmap.gids):
            dom.append(self.idmap.to_element())
        features = _sub(dom, "features")
        if self.privnet:
            _sub(features, "privnet")
        devices = _sub(dom, "devices")
        for fs in self.filesystems:
            devices.append(fs.to_element())
        for iface in self.interfaces:
            devices.append(iface.to_element())
        if self.console:
            _sub(devices, "console", type="pty")
        if len(features) == 0:
            dom.remove(features)
        for fragment in self.raw:
            merge_raw(dom, fragment)
        return dom

    def to_xml(self) -> str:
        """The domain as an indented XML string, ready for ``createXML``."""
        root = self.to_element()
        etree.indent(root, space="  ")
        return etree.tostring(root, encoding="unicode") + "\n"


# --- RAW merge -------------------------------------------------------------------------------

# Elements whose children are merged one by one rather than the element being replaced.
_CONTAINERS = frozenset({"devices", "features", "cputune", "memtune", "os", "resource",
                         "blkiotune", "idmap", "clock", "pm"})
# Children that may repeat: always appended, never replace a sibling of the same tag.
_REPEATABLE = frozenset({"initarg", "initenv", "uid", "gid", "vcpupin", "device"})

# No DTDs, no entities, no network: RAW DATA comes from users.
_SAFE_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
    huge_tree=False, remove_comments=True, remove_pis=True,
)


def parse_raw(data: str) -> list[Element]:
    """Parse a RAW ``DATA`` string (one or more sibling elements) into elements.

    Raises :class:`RawXMLError` if it is not well formed or declares a DOCTYPE or entities.
    """
    if "<!DOCTYPE" in data.upper() or "<!ENTITY" in data.upper():
        raise RawXMLError("RAW DATA must not contain DOCTYPE or ENTITY declarations")
    try:
        wrapper = etree.fromstring(f"<raw>{data}</raw>".encode(), _SAFE_PARSER)
    except etree.XMLSyntaxError as exc:
        raise RawXMLError(f"RAW DATA is not well-formed XML: {exc}") from exc
    if wrapper.text and wrapper.text.strip():
        raise RawXMLError("RAW DATA must hold elements, not bare text")
    return [child for child in wrapper if isinstance(child.tag, str)]


def merge_raw(domain: Element, data: str) -> None:
    """Merge the elements of ``data`` into ``domain`` in place.

    After the call: children of ``<devices>`` are appended; container elements (``features``,
    ``cputune``, ``os``…) are merged child by child; any other element replaces the existing one
    with the same tag, or is appended when there is none.
    """
    for element in parse_raw(data):
        _merge(domain, element)


def _merge(parent: Element, new: Element) -> None:
    old = parent.find(str(new.tag))  # elements only (parse_raw and the loop below skip others)
    if parent.tag == "devices" or new.tag in _REPEATABLE or old is None:
        parent.append(new)
    elif new.tag in _CONTAINERS:
        for key, value in new.attrib.items():
            old.set(key, value)
        for child in list(new):
            if isinstance(child.tag, str):
                _merge(old, child)
    else:
        parent.replace(old, new)
