"""Real containers on lxc:///system: SshTM.prolog + LxcVMM.deploy of a busybox rootfs, its
whole lifecycle, LxcIM, and the error paths. Needs root; skips with the reason otherwise."""

from __future__ import annotations

import dataclasses
import glob
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxc_specs import destroy_leftovers

from drivers.lxc import LxcIM, LxcVMM
from drivers.ssh import SshTM
from oneserver.driver_contract import DiskSpec, DriverError, HostRef, NicSpec, VMSpec

pytestmark = pytest.mark.lxc
libvirt = pytest.importorskip("libvirt")
HOST = HostRef(0, "localhost")
BASE_ID = 93000


@dataclasses.dataclass
class Env:
    vmm: LxcVMM
    im: LxcIM
    tm: SshTM
    rootfs_tgz: Path

    def vm(self, n: int, **changes: object) -> VMSpec:
        vm = VMSpec(id=BASE_ID + n, name=f"t{n}", cpu=0.5, vcpu=1, memory_mb=64,
                    disks=(DiskSpec(0, str(self.rootfs_tgz)),))
        return dataclasses.replace(vm, **changes)

    def domain(self, vm: VMSpec):
        try:
            return self.vmm.pool.get(HOST).lookupByName(f"one-{vm.id}")
        except libvirt.libvirtError:
            return None

    def up_disks(self, vm: VMSpec) -> VMSpec:
        return dataclasses.replace(vm, vm_dir=self.tm.prolog(HOST, vm))

    def up(self, vm: VMSpec) -> VMSpec:
        vm = self.up_disks(vm)
        self.vmm.deploy(HOST, vm)
        return vm


@pytest.fixture(scope="module")
def env(libvirtd: str, rootfs: tuple[Path, Path],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    ds = tmp_path_factory.mktemp("datastore")
    e = Env(LxcVMM({"poll_interval": 0.05, "reboot_timeout": 10}),
            LxcIM({"datastore_dir": str(ds), "cpu_sample_seconds": 0.1}),
            SshTM({"datastore_dir": str(ds)}), rootfs[1])
    yield e
    destroy_leftovers(e.vmm.pool.get(HOST), f"one-{BASE_ID // 1000}")
    e.vmm.close()
    e.im.close()


def test_lifecycle(env: Env) -> None:
    vm = env.vm(1, memory_mb=48)
    t0 = time.monotonic()
    vm = env.up(vm)
    print(f"prolog+deploy took {time.monotonic() - t0:.3f} s")
    dom = env.domain(vm)
    assert dom is not None and dom.isActive() and not dom.isPersistent()
    assert dom.maxMemory() == 48 * 1024
    assert dom.memoryParameters()["hard_limit"] == 48 * 1024
    limits = glob.glob(f"/sys/fs/cgroup/memory/machine/lxc-*-one-{vm.id}.libvirt-lxc/"
                       "memory.limit_in_bytes")
    if limits:  # the cgroup really enforces it
        assert int(Path(limits[0]).read_text()) == 48 * 1024 * 1024
    assert env.vmm.deploy(HOST, vm) == f"one-{vm.id}"  # idempotent
    assert env.vmm.poll(HOST, vm).state == "RUNNING"
    time.sleep(0.3)
    status = env.vmm.poll(HOST, vm)
    assert status.state == "RUNNING" and 0 < status.memory_kb < 48 * 1024

    env.vmm.suspend(HOST, vm)
    assert env.vmm.poll(HOST, vm).state == "SUSPENDED"
    env.vmm.resume(HOST, vm)
    assert env.vmm.poll(HOST, vm).state == "RUNNING"

    pid = env.domain(vm).ID()
    t0 = time.monotonic()
    env.vmm.reboot(HOST, vm)
    print(f"reboot took {time.monotonic() - t0:.3f} s")
    assert env.domain(vm).ID() != pid and env.vmm.poll(HOST, vm).state == "RUNNING"

    env.vmm.resize(HOST, dataclasses.replace(vm, memory_mb=96, cpu=1.0))
    dom = env.domain(vm)
    assert dom.memoryParameters()["hard_limit"] == 96 * 1024
    assert dom.schedulerParameters()["cpu_shares"] == 1024

    time.sleep(0.5)  # let init install its TERM trap, so shutdown is graceful
    t0 = time.monotonic()
    env.vmm.shutdown(HOST, vm, timeout=10)
    took = time.monotonic() - t0
    print(f"shutdown (signal) took {took:.3f} s")
    assert env.domain(vm) is None and took < 9  # stopped by SIGTERM, not by the timeout
    assert env.vmm.poll(HOST, vm).state == "POWEROFF"
    env.vmm.cancel(HOST, vm)
    env.tm.epilog(HOST, vm)
    assert not Path(vm.vm_dir).exists()


def test_cancel_is_idempotent(env: Env) -> None:
    vm = env.up(env.vm(2))
    t0 = time.monotonic()
    env.vmm.cancel(HOST, vm)
    print(f"cancel took {time.monotonic() - t0:.3f} s")
    assert env.domain(vm) is None
    env.vmm.cancel(HOST, vm)
    env.vmm.shutdown(HOST, vm, timeout=1)
    env.tm.epilog(HOST, vm)
    env.tm.epilog(HOST, vm)


def test_shutdown_falls_back_to_destroy(env: Env) -> None:
    # This init ignores SIGTERM (PID 1 without a handler), so only destroy() stops it.
    vm = env.up(env.vm(3, template={"INIT": "/bin/sleep", "INIT_ARGS": "1000"}))
    t0 = time.monotonic()
    env.vmm.shutdown(HOST, vm, timeout=1.5)
    assert 1.5 <= time.monotonic() - t0 < 6
    assert env.domain(vm) is None
    env.tm.epilog(HOST, vm)


def test_reset_and_network(env: Env) -> None:
    nic = NicSpec(0, bridge="onebr0", mac="02:00:0a:d5:00:63", ip="10.213.0.99")
    vm = env.up(env.vm(4, nics=(nic,)))
    try:
        pid = env.domain(vm).ID()
        env.vmm.reset(HOST, vm)
        dom = env.domain(vm)
        assert dom.ID() != pid and dom.isActive()
        assert "02:00:0a:d5:00:63" in dom.XMLDesc(0)
        assert dom.interfaceStats(f"one-{vm.id}-0") is not None
    finally:
        env.vmm.cancel(HOST, vm)
        env.tm.epilog(HOST, vm)


def test_monitor(env: Env) -> None:
    vm = env.up(env.vm(5))
    try:
        env.im.monitor(HOST)
        mon = env.im.monitor(HOST)
        ours = [v for v in mon.vms if v.deploy_id == f"one-{vm.id}"]
        assert ours and ours[0].vm_id == vm.id and ours[0].state == "RUNNING"
        assert ours[0].memory_kb > 0
        assert mon.info["HYPERVISOR"] == "lxc" and mon.total_cpu >= 100
        assert mon.total_mem_kb > mon.used_mem_kb > 0 and mon.free_disk_mb > 0
    finally:
        env.vmm.cancel(HOST, vm)
        env.tm.epilog(HOST, vm)


def test_bad_rootfs_tarball(env: Env, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"\x1f\x8bnot really")
    vm = env.vm(6, disks=(DiskSpec(0, str(bad)),))
    with pytest.raises(DriverError, match="unpacking disk 0"):
        env.tm.prolog(HOST, vm)
    assert not Path(env.tm.vm_dir(HOST, vm)).exists()


def test_missing_init(env: Env) -> None:
    # The TM copies the rootfs as it is; libvirt refuses to start it and nothing stays defined.
    vm = env.up_disks(env.vm(7, template={"INIT": "/sbin/not-here"}))
    try:
        t0 = time.monotonic()
        with pytest.raises(DriverError, match="cannot find init path"):
            env.vmm.deploy(HOST, vm)
        print(f"deploy with a missing init failed after {time.monotonic() - t0:.3f} s")
        assert env.domain(vm) is None
    finally:
        env.tm.epilog(HOST, vm)
    assert not Path(vm.vm_dir).exists()
