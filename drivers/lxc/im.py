"""LxcIM: monitor an LXC host through its libvirt connection.

Host CPU and memory come from libvirt's node calls (which read the host's /proc/stat and
/proc/meminfo); ``getInfo()``'s memory is only NUMA node 0 on some machines, so it is the
fallback. Free disk is that of the filesystem holding the VM directories: ``os.statvfs`` when
the URI is local, ``df`` over the same ssh the URI uses when it is remote; when neither works
(e.g. a tcp/tls URI) the disk figures are 0 and the host info says why (``DISK_MONITOR``).
"""

from __future__ import annotations

import os
import posixpath
import shlex
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

import libvirt

from drivers.ssh.remote import run, target_for_uri
from oneserver.driver_contract import HostMonitor, HostRef, HostUnreachable, IMDriver, VMStatus

from .connection import ConnectionPool
from .policy import vm_id_of
from .stats import CpuMeter, sample

DEFAULT_DATASTORE_DIR = "/var/lib/oneserver/datastores/0"
ALL = -1  # VIR_NODE_CPU_STATS_ALL_CPUS / VIR_NODE_MEMORY_STATS_ALL_CELLS


class LxcIM(IMDriver):
    """Options: ``uri_template``, ``ssh_command`` (as for the VMM), ``datastore_dir`` (where
    VM directories live on hosts), ``cpu_sample_seconds`` (window of the first CPU reading of
    a host, default 0.2; later readings use the interval since the previous monitor)."""

    def __init__(self, options: Mapping[str, Any] | None = None,
                 pool: ConnectionPool | None = None) -> None:
        super().__init__(options)
        self.pool = pool or ConnectionPool(self.options)
        self.vm_cpu = CpuMeter()
        self.datastore_dir = str(self.options.get("datastore_dir", DEFAULT_DATASTORE_DIR))
        self.first_window = float(self.options.get("cpu_sample_seconds", 0.2))
        self._node_cpu: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def monitor(self, host: HostRef) -> HostMonitor:
        """One sample; raises :class:`HostUnreachable` when libvirt cannot reach the host.
        Nothing on the host is changed."""
        uri = self.pool.uri(host)
        try:
            return self.pool.call(host, lambda conn: self._monitor(host, uri, conn))
        except libvirt.libvirtError as exc:
            raise HostUnreachable(f"monitoring {host.name} via {uri} failed: {exc}") from exc

    def _monitor(self, host: HostRef, uri: str, conn: libvirt.virConnect) -> HostMonitor:
        model, mem_mb, cpus, mhz, *_ = conn.getInfo()
        total_kb, used_kb = _memory(conn, mem_mb)
        vms = tuple(self._vms(uri, conn))
        used_cpu = self._used_cpu(uri, conn, cpus)
        if used_cpu is None:  # driver without node CPU stats: what our VMs use
            used_cpu = round(sum(v.cpu for v in vms))
        disk_total, disk_free, disk_note = self._disk(uri, host)
        info = {
            "HYPERVISOR": "lxc",
            "VERSION": _version(conn.getLibVersion()),
            "HV_VERSION": _version(conn.getVersion()),
            "ARCH": str(model),
            "CPUSPEED": str(mhz),
            "HOSTNAME": conn.getHostname(),
            "LIBVIRT_URI": self.pool.base_uri(host),
            "DISK_MONITOR": disk_note,
        }
        return HostMonitor(
            total_cpu=cpus * 100, total_mem_kb=total_kb, used_cpu=used_cpu, used_mem_kb=used_kb,
            free_disk_mb=disk_free, total_disk_mb=disk_total,
            used_disk_mb=max(0, disk_total - disk_free),
            netrx=sum(v.netrx for v in vms), nettx=sum(v.nettx for v in vms),
            info=info, vms=vms,
        )

    def _vms(self, uri: str, conn: libvirt.virConnect) -> list[VMStatus]:
        out = []
        for dom in conn.listAllDomains(0):
            try:
                s = sample(dom)
                key = f"{uri}#{dom.UUIDString()}"
                name = dom.name()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # stopped between the listing and the sample
                raise
            out.append(VMStatus(deploy_id=name, state=s.state, vm_id=vm_id_of(name),
                                cpu=self.vm_cpu.percent(key, s.cpu_time_ns),
                                memory_kb=s.memory_kb, netrx=s.netrx, nettx=s.nettx))
        return out

    def _used_cpu(self, uri: str, conn: libvirt.virConnect, cpus: int) -> int | None:
        """Busy share of the host's CPUs (% of one core) since the last monitor of this URI."""
        def read() -> tuple[int, int] | None:
            try:
                s = conn.getCPUStats(ALL, 0)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                    return None
                raise
            idle = s.get("idle", 0) + s.get("iowait", 0)
            return sum(s.values()), idle

        now = read()
        if now is None:
            return None
        with self._lock:
            last = self._node_cpu.get(uri)
        if last is None:
            time.sleep(self.first_window)
            last, now = now, read() or now
        with self._lock:
            self._node_cpu[uri] = now
        total, idle = now[0] - last[0], now[1] - last[1]
        if total <= 0:
            return 0
        return round(cpus * 100 * (1 - idle / total))

    def _disk(self, uri: str, host: HostRef) -> tuple[int, int, str]:
        """(total MB, free MB, how it was measured) of the filesystem holding VM dirs."""
        path = str(host.template.get("DATASTORE_DIR") or self.datastore_dir)
        try:
            target = target_for_uri(uri)
        except ValueError as exc:
            return 0, 0, f"skipped: {exc}"
        if target.is_local:
            st = os.statvfs(_existing_parent(path))
            mb = 1024 * 1024
            return st.f_blocks * st.f_frsize // mb, st.f_bavail * st.f_frsize // mb, "statvfs"
        # df -P on the nearest existing parent, so a host with no VM yet still reports.
        script = (f"p={shlex.quote(path)}; while [ ! -e \"$p\" ]; do p=$(dirname \"$p\"); done; "
                  "df -Pk \"$p\" | tail -n 1")
        try:
            res = run(target, script, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 0, 0, f"skipped: df over ssh failed: {exc}"
        fields = res.stdout.decode(errors="replace").split()
        if res.returncode != 0 or len(fields) < 4 or not fields[1].isdigit():
            err = res.stderr.decode(errors="replace").strip()[:200]
            return 0, 0, f"skipped: df over ssh gave rc {res.returncode}: {err}"
        return int(fields[1]) // 1024, int(fields[3]) // 1024, "df over ssh"

    def close(self) -> None:
        self.pool.close()


def _memory(conn: libvirt.virConnect, mem_mb: int) -> tuple[int, int]:
    """(total KB, used KB) of the host; used leaves out buffers and page cache."""
    try:
        m = conn.getMemoryStats(ALL, 0)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise
        return mem_mb * 1024, 0
    total = int(m.get("total", mem_mb * 1024))
    free = int(m.get("free", 0)) + int(m.get("buffers", 0)) + int(m.get("cached", 0))
    return total, max(0, total - free)


def _existing_parent(path: str) -> str:
    while not os.path.exists(path) and path not in ("", "/"):
        path = posixpath.dirname(path)
    return path or "/"


def _version(number: int) -> str:
    """libvirt's packed version (major*1e6 + minor*1e3 + micro) as ``major.minor.micro``."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"
