"""Two containers on two namespace hosts (own libvirtd and sshd each, reached over real SSH)
share one VXLAN network: the vxlan VN driver makes the bridge and the VXLAN device on each
host, the containers reach each other, and clean leaves neither behind."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest
from netns_helpers import in_container

from drivers.lxc import LxcVMM
from drivers.ssh import SshTM
from drivers.vn import VxlanVN
from oneserver.driver_contract import DiskSpec, HostRef, NicSpec, VMSpec

pytestmark = pytest.mark.netns
libvirt = pytest.importorskip("libvirt")
BASE_ID = 95000
VNI = 213


def test_containers_on_two_hosts_reach_each_other(vhosts: tuple[Path, list[str]],
                                                  rootfs: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    state, addresses = vhosts
    options = {"ssh_command": str(state / "sshwrap"), "datastore_dir": str(tmp_path / "ds"),
               "poll_interval": 0.05, "keep_empty_bridge": "no"}
    vmm, tm, vn = LxcVMM(options), SshTM(options), VxlanVN(options)
    hosts = [HostRef(i, addr) for i, addr in enumerate(addresses[:2], start=1)]
    vms: list[tuple[HostRef, VMSpec]] = []

    def on_host(i: int, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", f"vh{i}", *argv], capture_output=True,
                              text=True, timeout=30, check=False)

    try:
        for host in hosts:
            vid = BASE_ID + host.id
            nic = NicSpec(0, bridge=f"onevx{VNI}", mac=f"02:00:0a:d5:07:{host.id:02x}",
                          ip=f"10.213.7.{host.id}", target=f"one-{vid}-0", vn_mad="vxlan",
                          attrs={"PHYDEV": "eth0", "VLAN_ID": str(VNI),
                                 "NETWORK_MASK": "255.255.255.0"})
            vm = VMSpec(id=vid, name=f"vx{host.id}", cpu=0.2, vcpu=1, memory_mb=32,
                        disks=(DiskSpec(0, str(rootfs[1])),), nics=(nic,))
            vm = dataclasses.replace(vm, vm_dir=tm.prolog(host, vm))
            vn.pre(host, vm)
            vmm.deploy(host, vm)
            vn.post(host, vm)
            vms.append((host, vm))
        for i in (1, 2):
            link = on_host(i, "ip", "-o", "link", "show", "master", f"onevx{VNI}").stdout
            assert f"eth0.{VNI}" in link and f"one-{BASE_ID + i}-0" in link
        (_, vm1), _ = vms
        # The container's init is a process of this machine: the hosts share its pid space.
        local = libvirt.open(f"lxc:///system?socket={state}/vh1/run/libvirt/libvirt-sock")
        try:
            dom = local.lookupByName(f"one-{vm1.id}")
            res = in_container(dom, "/bin/ping", "-c", "1", "-W", "3", "10.213.7.2")
        finally:
            local.close()
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        for host, vm in vms:
            vmm.cancel(host, vm)
            vn.clean(host, vm)
            tm.epilog(host, vm)
        vmm.close()
    for i in (1, 2):
        assert on_host(i, "ip", "link", "show", f"eth0.{VNI}").returncode != 0
        assert on_host(i, "ip", "link", "show", f"onevx{VNI}").returncode != 0
        assert f"one-{BASE_ID + i}-0" not in on_host(i, "nft", "list", "tables").stdout
