"""NICs through the whole path: pyone → API → core → VN driver + LxcVMM on the local
libvirtd. Filters and veths come with the container at each boot and go when it leaves the
host (poweroff, terminate), as the core calls the VN driver around the VMM."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns_helpers import in_container, in_netns, libvirtd_netns

from oneserver.model.vmstate import HostState, Lcm, VmState
from tests.conftest import Server, start_server, stop_server, wait_for

pytestmark = pytest.mark.lxc
libvirt = pytest.importorskip("libvirt")
pytest.importorskip("pyone")
ROOT = Path(__file__).resolve().parents[2]
ACTIVE, RUNNING = int(VmState.ACTIVE), int(Lcm.RUNNING)
BRIDGE = "onevn-t2"


created: list[int] = []  # VMs of this module, whose tables a failed test may leave


@pytest.fixture(scope="module")
def server(libvirtd: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("net-api")
    netns = libvirtd_netns()
    etc = tmp / "etc"
    shutil.copytree(ROOT / "etc", etc)
    with (etc / "oned.conf").open("a") as f:
        # The libvirtd of the tests keeps its containers' network in a namespace of its own.
        f.write(f'\nVN_MAD = [ NAME = "fw", EXECUTABLE = "fw", '
                f'ARGUMENTS = "-t 15 -r 0 -o netns={netns} -o keep_empty_bridge=no" ]\n')
    srv = start_server(tmp, "sqlite", ["--monitor-interval", "0.5", "--etc", str(etc)])
    try:
        one = srv.pyone()
        hid = one.host.allocate("localhost", "lxc", "lxc", -1)
        wait_for("host MONITORED", lambda: one.host.info(hid).STATE == HostState.MONITORED)
        yield srv
    finally:
        stop_server(srv)
        conn = libvirt.open(libvirtd)
        for dom in conn.listAllDomains(0):  # what a failed test left behind
            if dom.name().startswith("one-") and str(srv.data_dir) in dom.XMLDesc(0):
                dom.destroy()
        conn.close()
        in_netns(netns, "ip", "link", "del", BRIDGE)
        for vid in created:
            in_netns(netns, "nft", "delete", "table", "bridge", f"one-{vid}-0")


def state_on_host(netns: str, vid: int) -> dict[str, bool]:
    """Which of the VM's networking exists in libvirtd's namespace."""
    target = f"one-{vid}-0"
    link = in_netns(netns, "ip", "-o", "link", "show", "dev", target)
    tables = in_netns(netns, "nft", "list", "tables", "bridge").stdout.split()
    return {"veth": link.returncode == 0, "port": f"master {BRIDGE} " in link.stdout,
            "filter": f"one-{vid}-0" in tables,
            "bridge": in_netns(netns, "ip", "link", "show", BRIDGE).returncode == 0}


def test_nic_lifecycle_through_the_api(server: Server, rootfs: tuple[Path, Path]) -> None:
    one = server.pyone()
    netns = libvirtd_netns()
    vid = one.vm.allocate(
        f'NAME = "web"\nCPU = 0.1\nMEMORY = 48\nDISK = [ SOURCE = "{rootfs[0]}" ]\n'
        f'NIC = [ BRIDGE = "{BRIDGE}", VN_MAD = "fw", IP = "10.213.6.10", '
        'MAC = "02:00:0a:d5:06:0a", NETWORK_MASK = "255.255.255.0", DNS = "10.213.6.1", '
        'SECURITY_GROUPS = "100" ]\n'
        'SECURITY_GROUP_RULE = [ SECURITY_GROUP_ID = "100", PROTOCOL = "TCP", '
        'RULE_TYPE = "inbound", RANGE = "80" ]\n')
    created.append(vid)
    server.wait_vm(vid, ACTIVE, RUNNING)
    assert state_on_host(netns, vid) == {"veth": True, "port": True, "filter": True,
                                         "bridge": True}
    rules = in_netns(netns, "nft", "list", "table", "bridge", f"one-{vid}-0").stdout
    assert "tcp dport 80 accept" in rules  # as nft lists "meta l4proto tcp th dport { 80 }"
    conn = libvirt.open("lxc:///system")
    try:
        dom = conn.lookupByName(f"one-{vid}")
        inside = in_container(dom, "/bin/ip", "addr").stdout
        resolv = in_container(dom, "/bin/cat", "/etc/resolv.conf").stdout
    finally:
        conn.close()
    assert "10.213.6.10/24" in inside and "02:00:0a:d5:06:0a" in inside
    assert resolv == "nameserver 10.213.6.1\n"

    one.vm.action("poweroff-hard", vid)
    server.wait_vm(vid, VmState.POWEROFF)
    assert state_on_host(netns, vid) == {"veth": False, "port": False, "filter": False,
                                         "bridge": False}
    one.vm.action("resume", vid)
    server.wait_vm(vid, ACTIVE, RUNNING)
    assert state_on_host(netns, vid)["filter"]

    one.vm.action("terminate-hard", vid)
    server.wait_vm(vid, VmState.DONE)
    assert state_on_host(netns, vid) == {"veth": False, "port": False, "filter": False,
                                         "bridge": False}


def test_attach_and_detach_nic_through_the_api(server: Server,
                                               rootfs: tuple[Path, Path]) -> None:
    """one.vm.attachnic on a running container: the filter table and the interface come (up
    and addressed inside); one.vm.detachnic: both go."""
    one = server.pyone()
    netns = libvirtd_netns()
    vid = one.vm.allocate(
        f'NAME = "hot"\nCPU = 0.1\nMEMORY = 48\nDISK = [ SOURCE = "{rootfs[0]}" ]\n')
    created.append(vid)
    server.wait_vm(vid, ACTIVE, RUNNING)
    one.vm.attachnic(vid, f'NIC = [ BRIDGE = "{BRIDGE}", VN_MAD = "fw", IP = "10.213.6.20", '
                          'MAC = "02:00:0a:d5:06:14", NETWORK_MASK = "255.255.255.0" ]')
    wait_for("the NIC attached", lambda: state_on_host(netns, vid)["port"])
    server.wait_vm(vid, ACTIVE, RUNNING)
    assert state_on_host(netns, vid)["filter"]
    conn = libvirt.open("lxc:///system")
    try:
        inside = in_container(conn.lookupByName(f"one-{vid}"), "/bin/ip", "-o", "addr").stdout
    finally:
        conn.close()
    assert "eth0" in inside and "10.213.6.20/24" in inside
    one.vm.detachnic(vid, 0)
    wait_for("the NIC detached", lambda: not state_on_host(netns, vid)["veth"])
    server.wait_vm(vid, ACTIVE, RUNNING)
    assert state_on_host(netns, vid) == {"veth": False, "port": False, "filter": False,
                                         "bridge": False}
    one.vm.action("terminate-hard", vid)
    server.wait_vm(vid, VmState.DONE)


def test_a_network_and_security_group_of_the_api(server: Server,
                                                 rootfs: tuple[Path, Path]) -> None:
    """A NIC taken from a virtual network (VN_MAD fw) with a security group allowing inbound
    TCP 80: the container gets the lease's address, MAC and gateway on the network's bridge,
    and the rules of its groups (that one and the network's default group 0, as oned gives
    it) are its filter."""
    one = server.pyone()
    netns = libvirtd_netns()
    sg = one.secgroup.allocate(
        'NAME = "web-only"\n'
        'RULE = [ PROTOCOL = "TCP", RULE_TYPE = "inbound", RANGE = "80" ]\n')
    vnet = one.vn.allocate(
        f'NAME = "lab"\nVN_MAD = "fw"\nBRIDGE = "{BRIDGE}"\nNETWORK_MASK = "255.255.255.0"\n'
        'GATEWAY = "10.213.6.1"\nDNS = "10.213.6.1"\n'
        'AR = [ TYPE = "IP4", IP = "10.213.6.100", SIZE = "5" ]\n', -1)
    vid = one.vm.allocate(
        f'NAME = "leased"\nCPU = 0.1\nMEMORY = 48\nDISK = [ SOURCE = "{rootfs[0]}" ]\n'
        f'NIC = [ NETWORK_ID = "{vnet}", SECURITY_GROUPS = "{sg}" ]\n')
    created.append(vid)
    server.wait_vm(vid, ACTIVE, RUNNING)
    nic = one.vm.info(vid).TEMPLATE["NIC"]
    assert nic["IP"] == "10.213.6.100" and nic["VN_MAD"] == "fw"
    assert nic["SECURITY_GROUPS"] == f"0,{sg}"
    rules = in_netns(netns, "nft", "list", "table", "bridge", f"one-{vid}-0").stdout
    assert "tcp dport 80 accept" in rules and "meta protocol { ip, ip6 } accept" in rules
    conn = libvirt.open("lxc:///system")
    try:
        dom = conn.lookupByName(f"one-{vid}")
        inside = in_container(dom, "/bin/ip", "addr").stdout
        routes = in_container(dom, "/bin/ip", "route").stdout
    finally:
        conn.close()
    assert "10.213.6.100/24" in inside and nic["MAC"] in inside
    assert "default via 10.213.6.1" in routes
    one.vm.action("terminate-hard", vid)
    server.wait_vm(vid, VmState.DONE)
    assert not state_on_host(netns, vid)["filter"]
