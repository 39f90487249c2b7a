"""LxcVMM and LxcIM against libvirt's in-process test driver (no daemon, no root)."""

from __future__ import annotations

import dataclasses
import threading

import lxc_specs as specs
import pytest

libvirt = pytest.importorskip("libvirt")

from drivers.lxc import LxcIM, LxcVMM  # noqa: E402
from drivers.lxc.connection import ConnectionPool, host_uri, is_broken  # noqa: E402
from drivers.lxc.stats import CpuMeter  # noqa: E402
from oneserver.driver_contract import (  # noqa: E402
    Capability,
    DriverError,
    HostRef,
    HostUnreachable,
    load,
)

HOST = HostRef(1, "testhost", {"LIBVIRT_URI": "test:///default"})


@pytest.fixture
def vmm():
    driver = LxcVMM({"poll_interval": 0.01})
    yield driver
    driver.close()


def _vm(vm_id: int):
    return specs.minimal(vm_id, vm_dir=f"/nonexistent/{vm_id}")


def _names(driver: LxcVMM) -> set[str]:
    return {d.name() for d in driver.pool.get(HOST).listAllDomains(0)}


def test_entry_points_and_capabilities() -> None:
    assert isinstance(load("vmm", "lxc"), LxcVMM)
    assert isinstance(load("im", "lxc"), LxcIM)
    caps = LxcVMM.capabilities
    assert Capability.MIGRATE_LIVE not in caps  # containers move cold: stop, carry, start
    assert {Capability.SHUTDOWN, Capability.CANCEL, Capability.SUSPEND,
            Capability.MIGRATE_COLD} <= caps


def test_deploy_poll_cancel(vmm: LxcVMM) -> None:
    vm = _vm(101)
    assert vmm.deploy(HOST, vm) == "one-101"
    dom = vmm.pool.get(HOST).lookupByName("one-101")
    assert not dom.isPersistent()  # transient: nothing stays defined after it stops
    assert dom.maxMemory() == 64 * 1024
    assert vmm.deploy(HOST, vm) == "one-101"  # idempotent
    status = vmm.poll(HOST, vm)
    assert (status.state, status.vm_id, status.deploy_id) == ("RUNNING", 101, "one-101")
    vmm.cancel(HOST, vm)
    assert "one-101" not in _names(vmm)
    vmm.cancel(HOST, vm)  # already gone: still a success
    assert vmm.poll(HOST, vm).state == "POWEROFF"


def test_shutdown_suspend_reboot_reset(vmm: LxcVMM) -> None:
    vm = _vm(102)
    vmm.deploy(HOST, vm)
    vmm.suspend(HOST, vm)
    assert vmm.poll(HOST, vm).state == "SUSPENDED"
    vmm.suspend(HOST, vm)  # already suspended: no-op
    vmm.resume(HOST, vm)
    assert vmm.poll(HOST, vm).state == "RUNNING"
    vmm.reboot(HOST, vm)
    vmm.reset(HOST, vm)
    assert vmm.poll(HOST, vm).state == "RUNNING"
    vmm.suspend(HOST, vm)
    vmm.shutdown(HOST, vm, timeout=2)  # a suspended VM is resumed first, then stopped
    assert "one-102" not in _names(vmm)
    vmm.shutdown(HOST, vm, timeout=2)
    with pytest.raises(DriverError, match="not running"):
        vmm.reboot(HOST, vm)
    with pytest.raises(DriverError, match="not running"):
        vmm.suspend(HOST, vm)


def test_deploy_replaces_a_stale_persistent_definition(vmm: LxcVMM) -> None:
    vm = _vm(103)
    conn = vmm.pool.get(HOST)
    conn.defineXML(vmm.domain_xml(vm))
    vmm.deploy(HOST, vm)
    dom = conn.lookupByName("one-103")
    assert dom.isActive() and not dom.isPersistent()
    vmm.cancel(HOST, vm)
    assert "one-103" not in _names(vmm)


def test_deploy_error_leaves_nothing(vmm: LxcVMM) -> None:
    vm = dataclasses.replace(_vm(104), template={
        "RAW": {"TYPE": "lxc", "DATA": "<memory unit='bogus'>1</memory>"}})
    with pytest.raises(DriverError, match="deploy of one-104 on testhost failed"):
        vmm.deploy(HOST, vm)
    assert "one-104" not in _names(vmm)


def test_policy_error_touches_nothing(vmm: LxcVMM) -> None:
    with pytest.raises(DriverError, match="prolog"):
        vmm.deploy(HOST, dataclasses.replace(_vm(105), vm_dir=None))


def test_monitor_reports_ours_and_wild(vmm: LxcVMM) -> None:
    vm = _vm(106)
    vmm.deploy(HOST, vm)
    im = LxcIM({"cpu_sample_seconds": 0})
    try:
        mon = im.monitor(HOST)
        by_name = {v.deploy_id: v for v in mon.vms}
        assert by_name["one-106"].vm_id == 106
        assert by_name["test"].vm_id is None  # the test driver's own domain is wild
        assert mon.total_cpu == 16 * 100 and mon.total_mem_kb > 0
        assert mon.info["HYPERVISOR"] == "lxc" and mon.info["DISK_MONITOR"] == "statvfs"
        assert mon.free_disk_mb > 0
    finally:
        im.close()
        vmm.cancel(HOST, vm)


def test_unreachable_host() -> None:
    host = HostRef(2, "nowhere", {"LIBVIRT_URI": "test+unix:///default?socket=/nonexistent"})
    with pytest.raises(HostUnreachable):
        LxcIM().monitor(host)
    with pytest.raises(HostUnreachable):
        LxcVMM().poll(host, _vm(107))


def test_host_uri_rules() -> None:
    assert host_uri(HostRef(1, "localhost"), {}) == "lxc:///system"
    assert host_uri(HostRef(1, "h1"), {}) == "lxc+ssh://root@h1/system"
    assert host_uri(HostRef(1, "h1"), {"uri_template": "lxc+ssh://admin@{hostname}:2222/system"}) \
        == "lxc+ssh://admin@h1:2222/system"
    assert host_uri(HostRef(1, "h1"), {"ssh_command": "/x/sshwrap"}) \
        == "lxc+ssh://root@h1/system?command=/x/sshwrap"
    assert host_uri(HostRef(1, "localhost", {"LIBVIRT_URI": "test:///default"}), {}) \
        == "test:///default"


def test_host_templates_never_name_a_program() -> None:
    """A host template's SSH_COMMAND is ignored and its LIBVIRT_URI may not carry libvirt's
    program-running parameters (command, netcat, proxy) or a driver other than lxc."""
    assert host_uri(HostRef(1, "h1", {"SSH_COMMAND": "sh -c id"}), {}) \
        == "lxc+ssh://root@h1/system"
    ours = "lxc+ssh://root@h1/system?command=/x/sshwrap"  # as earlier releases monitored it
    assert host_uri(HostRef(1, "h1", {"LIBVIRT_URI": ours}), {"ssh_command": "/x/sshwrap"}) \
        == ours
    for uri in ("lxc+ssh://root@h1/system?command=/bin/sh", "lxc+ssh://h1/system?netcat=x",
                "lxc+ssh://h1/system?socket=/s;command=x", "lxc+ssh://h1/system?comm%61nd=x",
                "lxc+ext:///system?command=id", "qemu+ssh://h1/system",
                "lxc+ssh://-oProxyCommand=id/system", "lxc+ssh://{hostname.__class__}/system"):
        with pytest.raises(DriverError):
            host_uri(HostRef(1, "h1", {"LIBVIRT_URI": uri}), {"ssh_command": "/x/sshwrap"})
    with pytest.raises(DriverError):
        host_uri(HostRef(1, "-oProxyCommand=id"), {})


class _FakeConn:
    def __init__(self, alive: bool = True) -> None:
        self.alive = alive
        self.closed = False

    def isAlive(self) -> bool:  # noqa: N802 - libvirt's name
        return self.alive

    def close(self) -> None:
        self.closed = True


def _broken() -> libvirt.libvirtError:
    err = libvirt.libvirtError("Cannot write data: Broken pipe")
    err.err = (libvirt.VIR_ERR_SYSTEM_ERROR, 0, "Cannot write data: Broken pipe", 0)
    return err


def test_pool_caches_and_reopens() -> None:
    opened: list[_FakeConn] = []

    def opener(uri: str) -> _FakeConn:
        opened.append(_FakeConn())
        return opened[-1]

    pool = ConnectionPool({}, opener=opener)  # type: ignore[arg-type]
    host = HostRef(1, "h1")
    assert pool.get(host) is pool.get(host) and len(opened) == 1
    opened[0].alive = False  # isAlive() false: reopened on next use
    assert pool.get(host) is opened[1] and opened[0].closed
    calls = []

    def flaky(conn: _FakeConn) -> str:
        calls.append(conn)
        if len(calls) == 1:
            raise _broken()
        return "ok"

    assert pool.call(host, flaky) == "ok" and calls[0] is not calls[1]
    assert is_broken(_broken())
    with pytest.raises(HostUnreachable):
        pool.call(host, lambda conn: (_ for _ in ()).throw(_broken()))
    pool.close()


def test_pool_is_thread_safe() -> None:
    count = 0
    lock = threading.Lock()

    def opener(uri: str) -> _FakeConn:
        nonlocal count
        with lock:
            count += 1
        return _FakeConn()

    pool = ConnectionPool({}, opener=opener)  # type: ignore[arg-type]
    threads = [threading.Thread(target=pool.get, args=(HostRef(1, "h"),)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert count == 1


def test_cpu_meter() -> None:
    now = [100.0]
    meter = CpuMeter(clock=lambda: now[0])
    assert meter.percent("a", 0) == 0.0
    now[0] = 102.0
    assert meter.percent("a", 1_000_000_000) == 50.0  # 1 s of CPU in 2 s
    now[0] = 103.0
    assert meter.percent("a", 500) == 0.0  # counter went back (new domain): no figure
