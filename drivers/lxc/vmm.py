"""LxcVMM: run containers on hosts through libvirt's LXC driver.

Domains are **transient** (``createXML``): a stopped container leaves no definition behind,
so "the domain is gone" after shutdown/cancel holds without an ``undefine`` that could fail
half-way, a host never accumulates stale definitions of VMs that moved elsewhere, and the
XML is always rebuilt from the current VMSpec (the core's template is the only truth).
A persistent definition found under our name (left by someone else) is removed as well.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import libvirt
from lxml import etree

from drivers.ssh.remote import run, target_for_uri
from oneserver.driver_contract import (
    Capability,
    DriverError,
    HostRef,
    NicSpec,
    VMMDriver,
    VMSpec,
    VMStatus,
)

from . import hotplug, resolv
from .connection import ConnectionPool
from .policy import build_domain, build_interface, cpu_quota, cpu_shares, deploy_id, is_yes
from .stats import CpuMeter, sample

T = TypeVar("T")

# A SIGTERM sent right after start can reach init before it installed its handler and be lost,
# so the signal is repeated at these offsets (seconds) before falling back to destroy().
SIGNAL_OFFSETS = (0.0, 1.0, 3.0)


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _gone(exc: libvirt.libvirtError) -> bool:
    """The domain vanished or stopped under us: a success for stop-like calls."""
    return exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID)


def _active(dom: libvirt.virDomain) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise


def _destroy(dom: libvirt.virDomain) -> None:
    """After the call ``dom`` is not running (it may never have been)."""
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        if not _gone(exc):
            raise


def _signal(dom: libvirt.virDomain) -> None:
    """Send init SIGTERM; drivers without the signal mode (libvirt's test driver) get their
    default shutdown instead."""
    try:
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_SIGNAL)
    except libvirt.libvirtError as exc:
        if _gone(exc):
            return
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        try:
            dom.shutdown()
        except libvirt.libvirtError as exc2:
            if not _gone(exc2):
                raise


def _forget(conn: libvirt.virConnect, name: str) -> None:
    """After the call no inactive definition named ``name`` exists."""
    dom = _lookup(conn, name)
    if dom is not None and not _active(dom) and dom.isPersistent():
        dom.undefine()


class LxcVMM(VMMDriver):
    """Containers as transient libvirt LXC domains named ``one-<vm id>``.

    Options: ``uri_template`` and ``ssh_command`` (see :mod:`.connection`), ``reboot_timeout``
    (seconds a reboot waits for the guest to stop, default 30), ``poll_interval`` (seconds
    between state checks while stopping, default 0.1).
    """

    capabilities = frozenset({
        Capability.SHUTDOWN, Capability.CANCEL, Capability.REBOOT, Capability.RESET,
        Capability.SUSPEND, Capability.RESIZE_LIVE, Capability.NIC_HOTPLUG,
        # Cold migration is the core's: stop here, the TM moves the directory, deploy there.
        Capability.MIGRATE_COLD,
    })
    runs_vn_drivers = True

    def __init__(self, options: Mapping[str, Any] | None = None,
                 pool: ConnectionPool | None = None) -> None:
        super().__init__(options)
        self.pool = pool or ConnectionPool(self.options)
        self.cpu = CpuMeter()
        self.reboot_timeout = float(self.options.get("reboot_timeout", 30))
        self.poll_interval = float(self.options.get("poll_interval", 0.1))

    # --- helpers --------------------------------------------------------------------------

    def domain_xml(self, vm: VMSpec) -> str:
        """The XML ``deploy`` would send for ``vm`` (DriverError if it cannot be built)."""
        return build_domain(vm).to_xml()

    def _run(self, host: HostRef, vm: VMSpec, action: str,
             fn: Callable[[libvirt.virConnect], T]) -> T:
        """``fn`` on the host's connection, with libvirt errors turned into DriverError."""
        try:
            return self.pool.call(host, fn)
        except libvirt.libvirtError as exc:
            raise DriverError(f"{action} of {deploy_id(vm)} on {host.name} failed: "
                              f"{exc.get_error_message() or exc}") from exc

    def _start(self, conn: libvirt.virConnect, name: str, xml: str) -> None:
        """After success ``name`` runs; after failure nothing named ``name`` is left."""
        try:
            conn.createXML(xml, 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_FAILED:
                dom = _lookup(conn, name)
                if dom is not None and _active(dom):
                    return  # a concurrent or retried start got there first
            dom = _lookup(conn, name)
            if dom is not None:
                _destroy(dom)
            raise

    def _stop(self, dom: libvirt.virDomain, timeout: float) -> None:
        """Signal init to stop, wait up to ``timeout``, then destroy. After the call the
        domain is not running. (A plain shutdown() waits for an initctl fifo and, without one,
        does nothing at all on libvirt 9's LXC driver.)"""
        try:
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()  # a frozen init cannot run its signal handler
        except libvirt.libvirtError as exc:
            if _gone(exc):
                return
            raise
        start = time.monotonic()
        offsets = list(SIGNAL_OFFSETS)
        while _active(dom):
            elapsed = time.monotonic() - start
            if elapsed >= timeout:
                _destroy(dom)
                return
            if offsets and elapsed >= offsets[0]:
                offsets.pop(0)
                _signal(dom)
            time.sleep(self.poll_interval)

    # --- contract -------------------------------------------------------------------------

    def _on_host(self, host: HostRef, vm: VMSpec, what: str, script: str) -> None:
        """Run ``script`` on the host with the shell libvirt's URI reaches it by (local, or
        the ssh of the driver's ``ssh_command``)."""
        try:
            res = run(target_for_uri(self.pool.uri(host)), "set -e\n" + script, timeout=60)
        except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"{what} of {deploy_id(vm)} on {host.name}: {exc}") from exc
        if res.returncode != 0:
            raise DriverError(f"{what} of {deploy_id(vm)} on {host.name} failed: "
                              f"{res.stderr.decode(errors='replace').strip()[-500:]}")

    def _write_resolv(self, host: HostRef, vm: VMSpec) -> None:
        """Put the NICs' DNS servers in the container's /etc/resolv.conf (see :mod:`.resolv`);
        nothing when no NIC names one."""
        text = resolv.resolv_conf(vm)
        script = resolv.write_script(vm, text) if text else None
        if script is not None:
            self._on_host(host, vm, "writing resolv.conf", script)

    def deploy(self, host: HostRef, vm: VMSpec) -> str:
        """Start ``one-<id>`` from a freshly built XML; if it already runs, return it as is."""
        name = deploy_id(vm)
        xml = self.domain_xml(vm)  # policy errors surface before the host is touched
        resolv.resolv_conf(vm)  # and a bad DNS too

        def running(conn: libvirt.virConnect) -> bool:
            dom = _lookup(conn, name)
            return dom is not None and _active(dom)

        def op(conn: libvirt.virConnect) -> str:
            if running(conn):
                return name
            _forget(conn, name)
            self._start(conn, name, xml)
            return name

        if not self._run(host, vm, "deploy", running):  # a running container keeps its file
            self._write_resolv(host, vm)
        return self._run(host, vm, "deploy", op)

    def shutdown(self, host: HostRef, vm: VMSpec, timeout: float) -> None:
        name = deploy_id(vm)

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup(conn, name)
            if dom is not None:
                self._stop(dom, timeout)
                _forget(conn, name)

        self._run(host, vm, "shutdown", op)

    def cancel(self, host: HostRef, vm: VMSpec) -> None:
        name = deploy_id(vm)

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup(conn, name)
            if dom is not None:
                _destroy(dom)
                _forget(conn, name)

        self._run(host, vm, "cancel", op)

    def reboot(self, host: HostRef, vm: VMSpec) -> None:
        """Signal-stop (destroy after ``reboot_timeout``) and start again; libvirt's own
        reboot() returns success and changes nothing on LXC."""
        self._restart(host, vm, "reboot", self.reboot_timeout)

    def reset(self, host: HostRef, vm: VMSpec) -> None:
        self._restart(host, vm, "reset", 0.0)

    def _restart(self, host: HostRef, vm: VMSpec, action: str, timeout: float) -> None:
        name = deploy_id(vm)
        xml = self.domain_xml(vm)

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup(conn, name)
            if dom is None or not _active(dom):
                raise DriverError(f"{action}: {name} is not running on {host.name}")
            if timeout > 0:
                self._stop(dom, timeout)
            else:
                _destroy(dom)
            _forget(conn, name)
            self._start(conn, name, xml)

        self._run(host, vm, action, op)

    def suspend(self, host: HostRef, vm: VMSpec) -> None:
        self._set_paused(host, vm, True)

    def resume(self, host: HostRef, vm: VMSpec) -> None:
        self._set_paused(host, vm, False)

    def _set_paused(self, host: HostRef, vm: VMSpec, paused: bool) -> None:
        """Freeze or thaw the container's cgroup; a no-op when already in that state."""
        name = deploy_id(vm)
        action = "suspend" if paused else "resume"

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup(conn, name)
            if dom is None or not _active(dom):
                raise DriverError(f"{action}: {name} is not running on {host.name}")
            is_paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
            if paused and not is_paused:
                dom.suspend()
            elif not paused and is_paused:
                dom.resume()

        self._run(host, vm, action, op)

    def resize(self, host: HostRef, vm: VMSpec) -> None:
        """Apply MEMORY (cgroup hard limit) and CPU (shares, and the quota when the template
        asks for one) to the running container. VCPU cannot change live on LXC; it is ignored."""
        name = deploy_id(vm)
        kib = vm.memory_mb * 1024

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup(conn, name)
            if dom is None or not _active(dom):
                raise DriverError(f"resize: {name} is not running on {host.name}")
            live = libvirt.VIR_DOMAIN_AFFECT_LIVE
            # hard_limit is what the cgroup enforces, and unlike setMemory it may grow past
            # the domain's boot-time maximum.
            dom.setMemoryParameters({"hard_limit": kib}, live)
            if kib <= dom.maxMemory():
                dom.setMemoryFlags(kib, live)
            params: dict[str, int] = {"cpu_shares": cpu_shares(vm.cpu)}
            if is_yes(vm.template.get("LXC_CPU_QUOTA", "NO")):
                params["vcpu_quota"] = cpu_quota(vm.cpu)
            dom.setSchedulerParametersFlags(params, live)

        self._run(host, vm, "resize", op)

    def attach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        """Hot-plug the NIC's interface (libvirt makes the veth, its host end named TARGET on
        the NIC's bridge), then configure it in the container: libvirt 9 leaves a hot-plugged
        interface there down, without addresses and named vnetN (see :mod:`.hotplug`)."""
        name = deploy_id(vm)
        iface = build_interface(vm, nic)
        xml = etree.tostring(iface.to_element(), encoding="unicode")

        def op(conn: libvirt.virConnect) -> tuple[int, str]:
            dom = _lookup(conn, name)
            if dom is None or not _active(dom):
                raise DriverError(f"attach_nic: {name} is not running on {host.name}")
            if hotplug.live_interface(dom.XMLDesc(0), iface.target or "") is None:
                dom.attachDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            live = hotplug.live_interface(dom.XMLDesc(0), iface.target or "")
            if live is None:
                raise DriverError(f"attach_nic: {name} shows no interface {iface.target}")
            return int(dom.ID()), live[1]

        controller, mac = self._run(host, vm, "attach_nic", op)
        try:
            self._on_host(host, vm, "attach_nic",
                          hotplug.configure_script(controller, mac, nic.nic_id, iface))
        except DriverError:
            self.detach_nic(host, vm, nic)
            raise

    def detach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        """Unplug the NIC's interface (the veth goes with it); a no-op when it is gone."""
        name = deploy_id(vm)
        target = nic.target or f"one-{vm.id}-{nic.nic_id}"

        def op(conn: libvirt.virConnect) -> None:
            dom = _lookup(conn, name)
            if dom is None or not _active(dom):
                return  # no container, no interface
            live = hotplug.live_interface(dom.XMLDesc(0), target)
            if live is not None:
                dom.detachDeviceFlags(live[0], libvirt.VIR_DOMAIN_AFFECT_LIVE)

        self._run(host, vm, "detach_nic", op)

    def poll(self, host: HostRef, vm: VMSpec) -> VMStatus:
        name = deploy_id(vm)
        uri = self.pool.uri(host)

        def op(conn: libvirt.virConnect) -> VMStatus:
            dom = _lookup(conn, name)
            if dom is None:
                return VMStatus(deploy_id=name, state="POWEROFF", vm_id=vm.id)
            try:
                s = sample(dom)
                key = f"{uri}#{dom.UUIDString()}"
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return VMStatus(deploy_id=name, state="POWEROFF", vm_id=vm.id)
                raise
            return VMStatus(deploy_id=name, state=s.state, vm_id=vm.id,
                            cpu=self.cpu.percent(key, s.cpu_time_ns), memory_kb=s.memory_kb,
                            netrx=s.netrx, nettx=s.nettx)

        return self._run(host, vm, "poll", op)

    def close(self) -> None:
        self.pool.close()
