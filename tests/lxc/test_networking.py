"""Real networking for containers on the local libvirtd: VN drivers (bridge, fw) around
LxcVMM, Linux bridges, veths and nftables filters made by them, and what clean leaves
(nothing). Addresses in 10.213.0.0/16 only, inside libvirtd's own network namespace."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxc_specs import destroy_leftovers
from netns_helpers import in_container, in_netns, init_pid, libvirtd_netns

from drivers.lxc import LxcVMM
from drivers.ssh import SshTM
from drivers.vn import BridgeVN, FirewallVN
from oneserver.driver_contract import DiskSpec, HostRef, NicSpec, SecurityRule, VMSpec, VNDriver

pytestmark = pytest.mark.lxc
libvirt = pytest.importorskip("libvirt")
HOST = HostRef(0, "localhost")
BASE_ID = 94000
BRIDGE = "onevn-t0"  # made by the drivers; 10.213.5.0/24 on it
WEB_ONLY = (SecurityRule(100, "TCP", "inbound", range="80"),)


@dataclasses.dataclass
class Net:
    vmm: LxcVMM
    tm: SshTM
    vn: dict[str, VNDriver]
    netns: str
    rootfs_tgz: Path

    def vm(self, n: int, vn_mad: str, groups: str = "", rules: tuple[SecurityRule, ...] = (),
           bridge: str = BRIDGE) -> VMSpec:
        vid = BASE_ID + n
        nic = NicSpec(0, bridge=bridge, mac=f"02:00:0a:d5:05:{n:02x}", ip=f"10.213.5.{n}",
                      target=f"one-{vid}-0", vn_mad=vn_mad,
                      attrs={"NETWORK_MASK": "255.255.255.0", "SECURITY_GROUPS": groups,
                             "DNS": "10.213.5.1 10.213.0.2", "SEARCH_DOMAIN": "lab.example"})
        return VMSpec(id=vid, name=f"net{n}", cpu=0.2, vcpu=1, memory_mb=48,
                      disks=(DiskSpec(0, str(self.rootfs_tgz)),), nics=(nic,),
                      security_rules=rules)

    def up(self, vm: VMSpec) -> VMSpec:
        """As the core boots a VM: disks, VN pre, deploy, VN post."""
        vm = dataclasses.replace(vm, vm_dir=self.tm.prolog(HOST, vm))
        for vn in self.drivers(vm):
            vn.pre(HOST, vm)
        self.vmm.deploy(HOST, vm)
        for vn in self.drivers(vm):
            vn.post(HOST, vm)
        return vm

    def down(self, vm: VMSpec) -> None:
        """As the core ends one: cancel, VN clean, disks."""
        self.vmm.cancel(HOST, vm)
        for vn in self.drivers(vm):
            vn.clean(HOST, vm)
        self.tm.epilog(HOST, vm)

    def drivers(self, vm: VMSpec) -> list[VNDriver]:
        """The VN driver of the VM's NICs (the tests give all NICs of a VM the same)."""
        return [self.vn[vm.nics[0].vn_mad or ""]] if vm.nics else []

    def domain(self, vm: VMSpec):  # noqa: ANN201 - libvirt has no stubs
        return self.vmm.pool.get(HOST).lookupByName(f"one-{vm.id}")

    def sh(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return in_netns(self.netns, *argv)

    def ports(self, bridge: str = BRIDGE) -> list[str]:
        """The bridge's ports (through ip: /sys shows the namespace that mounted it)."""
        out = self.sh("ip", "-o", "link", "show", "master", bridge).stdout
        return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


@pytest.fixture(scope="module")
def net(libvirtd: str, rootfs: tuple[Path, Path],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    ds = tmp_path_factory.mktemp("datastore")
    netns = libvirtd_netns()
    options = {"netns": netns}
    n = Net(LxcVMM({"poll_interval": 0.05}), SshTM({"datastore_dir": str(ds)}),
            {"bridge": BridgeVN(options), "fw": FirewallVN(options),
             "fw-tidy": FirewallVN({**options, "keep_empty_bridge": "no"})},
            netns, rootfs[1])
    yield n
    destroy_leftovers(n.vmm.pool.get(HOST), f"one-{BASE_ID // 1000}")
    for table in n.sh("nft", "list", "tables", "bridge").stdout.split("\n"):
        if f"one-{BASE_ID // 1000}" in table:
            n.sh("nft", "delete", "table", "bridge", table.split()[-1])
    n.sh("ip", "link", "del", BRIDGE)
    n.vmm.close()


def ping(net: Net, src: VMSpec, dst_ip: str) -> bool:
    res = in_container(net.domain(src), "/bin/ping", "-c", "1", "-W", "2", dst_ip)
    return res.returncode == 0


def tcp(net: Net, server: VMSpec, client: VMSpec, port: int) -> str:
    """What the client reads from a listener on ``port`` in the server (busybox nc of the
    rootfs): "ok", or "" when the connection did not get through."""
    listener = subprocess.Popen(
        ["nsenter", "-t", str(_pid(net, server)), "-m", "-n", "-p",
         "/bin/nc", "-ll", "-p", str(port), "-e", "/bin/echo", "ok"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # until the listener is up: a LISTEN (0A) socket on the port
            sockets = in_container(net.domain(server), "/bin/cat", "/proc/net/tcp",
                                   "/proc/net/tcp6").stdout.splitlines()
            if any(f":{port:04X} " in line and line.split()[3] == "0A"
                   for line in sockets[1:] if len(line.split()) > 3):
                break
            time.sleep(0.05)
        # busybox nc's -w does not bound the connect itself (a dropped SYN is retried).
        res = in_container(net.domain(client), "/bin/timeout", "2", "/bin/nc", "-w", "2",
                           server.nics[0].ip or "", str(port))
        return res.stdout.strip()
    finally:
        listener.kill()
        listener.wait()


def _pid(net: Net, vm: VMSpec) -> int:
    return init_pid(net.domain(vm))


def leftovers(net: Net, vm: VMSpec) -> list[str]:
    """What of ``vm``'s networking is still on the host: its veth, a bridge port, a table."""
    found = []
    target = vm.nics[0].target or ""
    if net.sh("ip", "link", "show", "dev", target).returncode == 0:
        found.append(f"interface {target}")
    found += [f"bridge port {p}" for p in net.ports() if p == target]
    tables = net.sh("nft", "list", "tables", "bridge").stdout
    found += [line for line in tables.splitlines() if line.endswith(f" one-{vm.id}-0")]
    return found


def test_two_containers_on_one_bridge_ping(net: Net) -> None:
    """The bridge driver makes the bridge; libvirt puts each NIC on it with its MAC and IP."""
    net.sh("ip", "link", "del", BRIDGE)
    a, b = net.up(net.vm(11, "bridge")), net.up(net.vm(12, "bridge"))
    try:
        assert net.sh("ip", "link", "show", "dev", BRIDGE).returncode == 0
        assert net.ports() == [f"one-{a.id}-0", f"one-{b.id}-0"]
        inside = in_container(net.domain(a), "/bin/ip", "addr").stdout
        assert "10.213.5.11/24" in inside and "02:00:0a:d5:05:0b" in inside
        resolv = in_container(net.domain(a), "/bin/cat", "/etc/resolv.conf").stdout
        assert resolv == "search lab.example\nnameserver 10.213.5.1\nnameserver 10.213.0.2\n"
        assert ping(net, a, "10.213.5.12") and ping(net, b, "10.213.5.11")
    finally:
        net.down(a)
        net.down(b)
    assert leftovers(net, a) == [] and leftovers(net, b) == []
    # The bridge driver keeps the bridge it made (keep_empty_bridge defaults to yes).
    assert net.sh("ip", "link", "show", "dev", BRIDGE).returncode == 0


def test_security_group_allows_only_tcp_80(net: Net) -> None:
    """fw: a VM whose only group allows inbound TCP 80 answers no ping but accepts a TCP
    connection on port 80 (the replies pass); one with the default group passes all."""
    client = net.up(net.vm(21, "fw", groups="0",
                           rules=(SecurityRule(0, "ALL", "INBOUND"),
                                  SecurityRule(0, "ALL", "OUTBOUND"))))
    web = net.up(net.vm(22, "fw", groups="100", rules=WEB_ONLY))
    try:
        assert not ping(net, client, "10.213.5.22")
        assert tcp(net, web, client, 80) == "ok"
        assert tcp(net, web, client, 81) == ""
        assert not ping(net, web, "10.213.5.21")  # no OUTBOUND rule: nothing leaves it
        assert tcp(net, client, web, 80) == ""
    finally:
        net.down(client)
        net.down(web)
    assert leftovers(net, client) == [] and leftovers(net, web) == []


def test_default_group_passes_everything(net: Net) -> None:
    """A NIC with only the default group (or none) is not restricted."""
    a = net.up(net.vm(31, "fw", groups=""))
    b = net.up(net.vm(32, "fw", groups="0", rules=(SecurityRule(0, "ALL", "INBOUND"),
                                                     SecurityRule(0, "ALL", "OUTBOUND"))))
    try:
        assert ping(net, a, "10.213.5.32") and ping(net, b, "10.213.5.31")
        assert tcp(net, b, a, 8080) == "ok"
    finally:
        net.down(a)
        net.down(b)


def test_clean_is_idempotent_and_removes_the_bridge_it_made(net: Net) -> None:
    """keep_empty_bridge=no: the bridge the driver made goes with the last VM on it; a
    second clean (a step run again after a crash) succeeds with nothing left to remove."""
    vm = net.up(net.vm(41, "fw-tidy", bridge="onevn-t1"))
    assert net.sh("ip", "link", "show", "dev", "onevn-t1").returncode == 0
    net.down(vm)
    net.vn["fw-tidy"].clean(HOST, vm)
    assert net.sh("ip", "link", "show", "dev", "onevn-t1").returncode != 0
    assert leftovers(net, vm) == []


def test_attach_and_detach_a_nic(net: Net) -> None:
    """A NIC hot-plugged into a running container is configured in it (eth<NIC_ID>, its
    address, up) and reaches the bridge; a second attach changes nothing; detach removes it
    from the container and the host."""
    peer = net.up(net.vm(51, "bridge"))
    bare = dataclasses.replace(net.vm(52, "bridge"), nics=())
    vm = net.up(bare)
    nic = dataclasses.replace(net.vm(52, "bridge").nics[0], nic_id=1, target=f"one-{vm.id}-1")
    with_nic = dataclasses.replace(vm, nics=(nic,))
    try:
        for _ in range(2):
            net.vn["bridge"].pre(HOST, with_nic)
            net.vmm.attach_nic(HOST, with_nic, nic)
            net.vn["bridge"].post(HOST, with_nic)
        inside = in_container(net.domain(vm), "/bin/ip", "-o", "addr", "show", "dev", "eth1")
        assert "10.213.5.52/24" in inside.stdout, inside.stdout + inside.stderr
        assert f"one-{vm.id}-1" in net.ports()
        assert ping(net, with_nic, "10.213.5.51")
        net.vmm.detach_nic(HOST, with_nic, nic)
        net.vn["bridge"].clean(HOST, with_nic)
        net.vmm.detach_nic(HOST, with_nic, nic)  # already gone: nothing to do
        links = in_container(net.domain(vm), "/bin/ip", "-o", "link").stdout
        assert "02:00:0a:d5:05:34" not in links
        assert f"one-{vm.id}-1" not in net.ports()
        assert net.sh("ip", "link", "show", "dev", f"one-{vm.id}-1").returncode != 0
    finally:
        net.down(peer)
        net.down(vm)
