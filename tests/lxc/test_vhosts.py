"""Three namespace hosts, each with its own libvirtd and sshd, driven over real SSH:
SshTM copies the rootfs through ssh, LxcVMM deploys over lxc+ssh://, LxcIM monitors."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from drivers.lxc import LxcIM, LxcVMM
from drivers.ssh import SshTM
from oneserver.driver_contract import DiskSpec, HostRef, VMSpec

pytestmark = pytest.mark.netns
pytest.importorskip("libvirt")
BASE_ID = 94000


def test_one_container_per_vhost(vhosts: tuple[Path, list[str]], rootfs: tuple[Path, Path],
                                 tmp_path: Path) -> None:
    state, addresses = vhosts
    sshwrap = str(state / "sshwrap")
    options = {"ssh_command": sshwrap, "datastore_dir": str(tmp_path / "ds"),
               "cpu_sample_seconds": 0.1, "poll_interval": 0.05}
    vmm, im, tm = LxcVMM(options), LxcIM(options), SshTM(options)
    hosts = [HostRef(i, addr) for i, addr in enumerate(addresses, start=1)]
    vms: list[tuple[HostRef, VMSpec]] = []
    try:
        t0 = time.monotonic()
        for host in hosts:
            vm = VMSpec(id=BASE_ID + host.id, name=f"v{host.id}", cpu=0.25, vcpu=1,
                        memory_mb=32, disks=(DiskSpec(0, str(rootfs[1])),))
            vm = dataclasses.replace(vm, vm_dir=tm.prolog(host, vm))
            assert vmm.deploy(host, vm) == f"one-{vm.id}"
            vms.append((host, vm))
        print(f"prolog+deploy over ssh on {len(hosts)} hosts took {time.monotonic() - t0:.2f} s")
        assert vmm.pool.uri(hosts[0]) == \
            f"lxc+ssh://root@{addresses[0]}/system?command={sshwrap}"

        t0 = time.monotonic()
        for host, vm in vms:
            mon = im.monitor(host)
            assert mon.info["HOSTNAME"] == f"vh{host.id}"  # each host is its own libvirtd
            names = {v.deploy_id: v for v in mon.vms}
            assert set(names) == {f"one-{vm.id}"}
            assert names[f"one-{vm.id}"].vm_id == vm.id
            assert names[f"one-{vm.id}"].state == "RUNNING"
            assert mon.info["DISK_MONITOR"] == "df over ssh" and mon.free_disk_mb > 0
            assert vmm.poll(host, vm).state == "RUNNING"
        print(f"monitor of {len(hosts)} hosts took {time.monotonic() - t0:.2f} s")

        time.sleep(0.5)  # let init install its TERM trap
        for host, vm in vms:
            vmm.shutdown(host, vm, timeout=10)
            assert vmm.poll(host, vm).state == "POWEROFF"
            tm.epilog(host, vm)
            assert not Path(vm.vm_dir).exists()
        for host in hosts:
            assert im.monitor(host).vms == ()
    finally:
        for host, vm in vms:
            vmm.cancel(host, vm)
            tm.epilog(host, vm)
        vmm.close()
        im.close()
