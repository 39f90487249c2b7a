"""Per-domain figures shared by the VMM's poll and the IM's monitor.

Only per-domain calls are used (``info``, ``memoryStats``, ``interfaceStats``):
``getAllDomainStats`` is not implemented by libvirt's LXC driver.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import libvirt
from lxml import etree

STATE_NAMES = {
    libvirt.VIR_DOMAIN_RUNNING: "RUNNING",
    libvirt.VIR_DOMAIN_BLOCKED: "RUNNING",      # waiting on I/O is still running
    libvirt.VIR_DOMAIN_PAUSED: "SUSPENDED",     # LXC pauses through the cgroup freezer
    libvirt.VIR_DOMAIN_PMSUSPENDED: "SUSPENDED",
    libvirt.VIR_DOMAIN_SHUTDOWN: "RUNNING",     # still running while it shuts down
    libvirt.VIR_DOMAIN_SHUTOFF: "POWEROFF",
    libvirt.VIR_DOMAIN_CRASHED: "POWEROFF",
    libvirt.VIR_DOMAIN_NOSTATE: "UNKNOWN",
}


@dataclass(frozen=True)
class DomainSample:
    state: str
    cpu_time_ns: int
    memory_kb: int
    netrx: int = 0
    nettx: int = 0


def sample(dom: libvirt.virDomain) -> DomainSample:
    """One reading of ``dom``. Memory is the real RSS when the driver reports it (LXC does),
    else the current allocation."""
    state, _max_kib, mem_kib, _vcpus, cpu_ns = dom.info()
    name = STATE_NAMES.get(state, "UNKNOWN")
    memory = mem_kib
    rx = tx = 0
    if dom.isActive():
        try:
            memory = int(dom.memoryStats().get("rss", mem_kib))
        except libvirt.libvirtError:
            pass  # keep info()'s figure
        rx, tx = _net(dom)
    return DomainSample(name, int(cpu_ns), int(memory), rx, tx)


def _net(dom: libvirt.virDomain) -> tuple[int, int]:
    rx = tx = 0
    try:
        root = etree.fromstring(dom.XMLDesc(0).encode())
    except (libvirt.libvirtError, etree.XMLSyntaxError):
        return 0, 0
    for dev in root.xpath("/domain/devices/interface/target/@dev"):
        try:
            stats = dom.interfaceStats(str(dev))
        except libvirt.libvirtError:
            continue  # the interface may be going away; skip it this round
        rx += int(stats[0])
        tx += int(stats[4])
    return rx, tx


class CpuMeter:
    """Turns cumulative CPU nanoseconds into % of one CPU between two readings.

    The first reading of a key gives 0.0 (there is no interval yet). Thread-safe.
    """

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def percent(self, key: str, cpu_ns: int) -> float:
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            self._last[key] = (now, cpu_ns)
        if last is None or now <= last[0] or cpu_ns < last[1]:
            return 0.0
        return round(100.0 * (cpu_ns - last[1]) / ((now - last[0]) * 1e9), 2)

    def forget(self, key: str) -> None:
        with self._lock:
            self._last.pop(key, None)
