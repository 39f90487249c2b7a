"""Policy: what libvirt LXC domain a :class:`VMSpec` becomes.

Plain functions that read the VM (its resolved disks, NICs and TEMPLATE, with the
``vmm_exec_lxc.conf`` defaults already merged in by the core) and fill the mechanism objects of
:mod:`drivers.lxc.domain_xml`. Template attributes read here:

``INIT`` (default ``/sbin/init``), ``INIT_ARGS`` (shell-split), ``LXC_CPU_QUOTA`` (YES: hard
CPU quota = CPU x period besides the shares), ``LXC_UNPRIVILEGED`` (YES: map ids 0..65535 to
100000..), ``LXC_IDMAP`` (``"start:target:count"`` for uids and gids, or a mapping with ``UID``
and ``GID`` in that form, several ranges comma-separated) and ``RAW`` (``TYPE="lxc"``, ``DATA``).

Each NIC becomes an interface on its ``BRIDGE`` whose host end is the NIC's TARGET, with its
``MAC``, its ``IP`` (prefix from ``NETWORK_MASK``, default /24), ``IP6``/``IP6_GLOBAL``/
``IP6_ULA`` (prefix ``IP6_PREFIX_LENGTH``, default /64), the IPs of its NIC_ALIASes, and a
default route through ``GATEWAY`` / ``GATEWAY6``: the container comes up configured.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from drivers.vn import names
from oneserver.driver_contract import DiskSpec, DriverError, NicSpec, VMSpec

from .domain_xml import (
    Address,
    BridgeInterface,
    CpuTune,
    Filesystem,
    IdMap,
    IdMapRange,
    LxcDomain,
    RawXMLError,
    Route,
    parse_raw,
)

DEFAULT_INIT = "/sbin/init"
CPU_PERIOD_US = 100_000
UNPRIVILEGED_MAP = "0:100000:65536"
DEPLOY_ID_RE = re.compile(r"^one-(\d+)$")


def deploy_id(vm: VMSpec) -> str:
    """The libvirt domain name of ``vm``: ``one-<id>`` unless the core already holds one."""
    return vm.deploy_id or f"one-{vm.id}"


def vm_id_of(name: str) -> int | None:
    """The VM id in a domain name made by :func:`deploy_id`, or None for a wild domain."""
    match = DEPLOY_ID_RE.match(name)
    return int(match.group(1)) if match else None


def is_yes(value: Any) -> bool:
    return str(value).strip().upper() in {"YES", "TRUE", "1", "ON"}


def init_path(template: Mapping[str, Any]) -> str:
    """The container's init as the template asks (``INIT``), else ``/sbin/init``."""
    return str(template.get("INIT") or DEFAULT_INIT)


def cpu_shares(cpu: float) -> int:
    """cgroup cpu.shares for a CPU share: 1024 per physical CPU, at least the kernel's 2."""
    return max(2, round(cpu * 1024))


def cpu_quota(cpu: float) -> int:
    """Quota in microseconds per :data:`CPU_PERIOD_US`; the kernel's minimum is 1000."""
    return max(1000, round(cpu * CPU_PERIOD_US))


def build_domain(vm: VMSpec) -> LxcDomain:
    """The domain for ``vm``. Raises :class:`DriverError` when the VM cannot be expressed
    (no disks, no VM directory, a NIC without bridge, bad RAW or id map)."""
    template = vm.template
    if vm.memory_mb <= 0:
        raise DriverError(f"VM {vm.id}: MEMORY must be positive, got {vm.memory_mb}")
    tune = CpuTune(shares=cpu_shares(vm.cpu))
    if is_yes(template.get("LXC_CPU_QUOTA", "NO")):
        tune.period = CPU_PERIOD_US
        tune.quota = cpu_quota(vm.cpu)
    return LxcDomain(
        name=deploy_id(vm),
        memory_kib=vm.memory_mb * 1024,
        vcpu=max(1, vm.vcpu),
        cputune=tune,
        init=init_path(template),
        initargs=shlex.split(str(template.get("INIT_ARGS", ""))),
        filesystems=build_filesystems(vm),
        interfaces=[build_interface(vm, nic) for nic in vm.nics],
        idmap=build_idmap(template),
        privnet=True,  # without it a NIC-less container would share libvirtd's network
        raw=raw_fragments(template),
    )


def disk_dir(vm_dir: str, disk: DiskSpec) -> str:
    """Where the TM puts ``disk`` on the host."""
    return posixpath.join(vm_dir, f"disk.{disk.disk_id}")


def build_filesystems(vm: VMSpec) -> list[Filesystem]:
    """The first disk is the rootfs at ``/``; the others go to their TARGET when it is an
    absolute path, else to ``/media/one-disk.<id>``."""
    if not vm.disks:
        raise DriverError(f"VM {vm.id}: an LXC container needs a DISK with its root filesystem")
    if not vm.vm_dir:
        raise DriverError(f"VM {vm.id}: no VM directory on the host; the TM prolog must run first")
    root, *others = vm.disks
    mounts = [Filesystem(disk_dir(vm.vm_dir, root), "/", root.readonly)]
    for disk in others:
        target = disk.target if disk.target.startswith("/") else ""
        if target in ("", "/"):
            target = f"/media/one-disk.{disk.disk_id}"
        mounts.append(Filesystem(disk_dir(vm.vm_dir, disk), posixpath.normpath(target),
                                 disk.readonly))
    return mounts


IP6_KEYS = ("IP6", "IP6_GLOBAL", "IP6_ULA")


def build_interface(vm: VMSpec, nic: NicSpec) -> BridgeInterface:
    """The interface of ``nic``; every value is checked (DriverError names the bad one)."""
    if not nic.bridge:
        raise DriverError(f"VM {vm.id}: NIC {nic.nic_id} has no BRIDGE")
    what = f"VM {vm.id}: NIC {nic.nic_id}"
    routes: list[Route] = []
    gateway = nic.attrs.get("GATEWAY")
    if nic.ip and gateway:
        routes.append(Route(gateway=str(names.ip(gateway, f"{what} GATEWAY"))))
    gateway6 = nic.attrs.get("GATEWAY6")
    if gateway6 and any(nic.attrs.get(k) for k in IP6_KEYS):
        routes.append(Route(gateway=str(names.ip(gateway6, f"{what} GATEWAY6")),
                            family="ipv6"))
    addresses = [a for n in (nic, *nic.aliases) for a in _addresses(vm, n)]
    target = nic.target or f"one-{vm.id}-{nic.nic_id}"
    return BridgeInterface(
        bridge=names.ifname(nic.bridge, f"{what} BRIDGE"),
        mac=names.mac(nic.mac, f"{what} MAC") if nic.mac else None,
        addresses=addresses,
        # The VN drivers find the interface by this name (its filters match it).
        target=names.ifname(target, f"{what} TARGET"),
        routes=routes,
    )


def _addresses(vm: VMSpec, nic: NicSpec) -> list[Address]:
    """The IPv4 and IPv6 addresses of one NIC or NIC_ALIAS."""
    what = f"VM {vm.id}: NIC {nic.nic_id}"
    out = []
    if nic.ip:
        v4 = names.ip(nic.ip, f"{what} IP")
        if v4.version != 4:
            raise DriverError(f"{what} IP {nic.ip!r} is not an IPv4 address")
        out.append(Address(str(v4), _prefix(vm, nic)))
    for key in IP6_KEYS:
        if nic.attrs.get(key):
            v6 = names.ip(nic.attrs[key], f"{what} {key}")
            if v6.version != 6:
                raise DriverError(f"{what} {key} {nic.attrs[key]!r} is not an IPv6 address")
            length = nic.attrs.get("IP6_PREFIX_LENGTH") or "64"
            out.append(Address(str(v6), names.number(length, f"{what} IP6_PREFIX_LENGTH",
                                                     0, 128)))
    return out


def _prefix(vm: VMSpec, nic: NicSpec) -> int:
    raw = nic.attrs.get("PREFIX") or nic.attrs.get("NETWORK_MASK") or "24"
    try:
        if "." in raw:
            return ipaddress.IPv4Network(f"0.0.0.0/{raw}").prefixlen
        prefix = int(raw)
    except ValueError as exc:
        raise DriverError(f"VM {vm.id}: NIC {nic.nic_id} has a bad mask {raw!r}") from exc
    if not 0 <= prefix <= 32:
        raise DriverError(f"VM {vm.id}: NIC {nic.nic_id} has a bad mask {raw!r}")
    return prefix


def build_idmap(template: Mapping[str, Any]) -> IdMap | None:
    """An id map from ``LXC_IDMAP`` or ``LXC_UNPRIVILEGED``; None means the host's ids."""
    spec = template.get("LXC_IDMAP")
    if spec is None and is_yes(template.get("LXC_UNPRIVILEGED", "NO")):
        spec = UNPRIVILEGED_MAP
    if spec is None or spec == "":
        return None
    if isinstance(spec, Mapping):
        uids, gids = spec.get("UID", ""), spec.get("GID", spec.get("UID", ""))
    else:
        uids = gids = spec
    return IdMap(uids=_ranges(str(uids)), gids=_ranges(str(gids)))


def _ranges(text: str) -> list[IdMapRange]:
    ranges = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, target, count = (int(x) for x in part.split(":"))
        except ValueError as exc:
            raise DriverError(f"LXC_IDMAP range {part!r} is not start:target:count") from exc
        if min(start, target) < 0 or count <= 0:
            raise DriverError(f"LXC_IDMAP range {part!r} must be non-negative with count > 0")
        ranges.append(IdMapRange(start, target, count))
    return ranges


def raw_fragments(template: Mapping[str, Any]) -> list[str]:
    """DATA of every ``RAW`` whose TYPE is lxc, checked to be safe, well-formed XML."""
    fragments = []
    for raw in _vector(template.get("RAW")):
        if str(raw.get("TYPE", "")).lower() != "lxc":
            continue
        data = str(raw.get("DATA", ""))
        try:
            parse_raw(data)
        except RawXMLError as exc:
            raise DriverError(str(exc)) from exc
        fragments.append(data)
    return fragments


def _vector(value: Any) -> Iterable[Mapping[str, Any]]:
    """A template attribute that may be one mapping or a list of them, as a list."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return [v for v in value if isinstance(v, Mapping)]
