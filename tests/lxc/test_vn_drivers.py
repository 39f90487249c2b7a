"""Unit tests of the VN drivers: the commands and rulesets they build from NICs and security
group rules, and the refusal of every value that is not what it claims to be (before
anything reaches a host)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from drivers.lxc.resolv import resolv_conf, write_script
from drivers.vn import BridgeVN, DummyVN, FirewallVN, VlanVN, VxlanVN, rules
from oneserver.core.specs import nic_specs, security_rules
from oneserver.driver_contract import (
    DiskSpec,
    DriverError,
    HostRef,
    NicSpec,
    SecurityRule,
    VMSpec,
)
from oneserver.template import parse

HOST = HostRef(3, "node-1")


class Recorder:
    """Stands in for HostShell: records the scripts a driver would run."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def run(self, host: HostRef, script: str, what: str, stdin: str = "") -> str:
        self.calls.append((script, stdin))
        return ""


def driver(cls: type[Any], **options: str) -> tuple[Any, Recorder]:
    drv = cls(options)
    drv.shell = rec = Recorder()
    return drv, rec


def vm(*nics: NicSpec, rules_: tuple[SecurityRule, ...] = ()) -> VMSpec:
    return VMSpec(id=7, name="v", cpu=1, vcpu=1, memory_mb=64, nics=nics,
                  security_rules=rules_)


def nic(nic_id: int = 0, **attrs: str) -> NicSpec:
    bridge = attrs.pop("BRIDGE", "onebr0")
    target = attrs.pop("TARGET", f"one-7-{nic_id}")
    return NicSpec(nic_id, bridge=bridge, target=target, attrs=attrs)


def lines(r: SecurityRule) -> list[str]:
    return [m.line for m in rules.rule_lines(r, "rule")]


def test_rule_translation() -> None:
    assert lines(SecurityRule(0, "ALL", "INBOUND")) == ["meta protocol { ip, ip6 } accept"]
    assert lines(SecurityRule(1, "tcp", "inbound", range="22,80,1000:2000")) == [
        "meta l4proto tcp th dport { 22, 80, 1000-2000 } accept"]
    assert lines(SecurityRule(1, "ICMP", "inbound", icmp_type="8")) == [
        "meta protocol ip meta l4proto icmp icmp type 8 accept"]
    assert lines(SecurityRule(1, "ICMPV6", "outbound", icmpv6_type="128")) == [
        "meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type 128 accept"]
    assert lines(SecurityRule(1, "IPSEC", "outbound")) == ["meta l4proto esp accept"]
    # IP/SIZE: the blocks as CIDR, the source of inbound and the destination of outbound.
    assert lines(SecurityRule(1, "UDP", "outbound", range="53", ip="10.213.0.2", size="3")) == [
        "ip daddr { 10.213.0.2/31, 10.213.0.4/32 } meta l4proto udp th dport { 53 } accept"]
    assert lines(SecurityRule(1, "ALL", "inbound", ip="fd00::", size="256")) == [
        "ip6 saddr { fd00::/120 } accept"]
    # An ICMP rule for IPv6 blocks allows nothing; a network without ranges neither.
    assert lines(SecurityRule(1, "ICMP", "inbound", ip="fd00::", size="2")) == []
    assert lines(SecurityRule(1, "ALL", "inbound", network_id="3")) == []


@pytest.mark.parametrize("rule, message", [
    (SecurityRule(1, "GRE", "inbound"), "PROTOCOL 'GRE'"),
    (SecurityRule(1, "TCP", "sideways"), "RULE_TYPE"),
    (SecurityRule(1, "TCP", "inbound", range="80; drop"), "RANGE"),
    (SecurityRule(1, "TCP", "inbound", range="70000"), "RANGE"),
    (SecurityRule(1, "TCP", "inbound", range="90:80"), "ends before it starts"),
    (SecurityRule(1, "ICMP", "inbound", icmp_type="echo"), "ICMP_TYPE"),
    (SecurityRule(1, "ALL", "inbound", ip="10.213.0.0"), "IP and SIZE go together"),
    (SecurityRule(1, "ALL", "inbound", ip="10.213.0.0/8", size="1"), "not an IP"),
    (SecurityRule(1, "ALL", "inbound", ip="255.255.255.255", size="2"), "address space"),
    (SecurityRule(1, "ALL", "inbound", ip="10.0.0.0", size="0"), "SIZE"),
])
def test_bad_rules_are_refused(rule: SecurityRule, message: str) -> None:
    with pytest.raises(DriverError, match=message):
        rules.rule_lines(rule, "rule")


def test_nic_table_takes_only_the_nics_groups() -> None:
    spec = vm(nic(0, SECURITY_GROUPS="100"), rules_=(
        SecurityRule(0, "ALL", "INBOUND"), SecurityRule(100, "TCP", "INBOUND", range="80")))
    table = rules.nic_table(spec, spec.nics[0])
    assert "th dport { 80 } accept" in table and "meta protocol { ip, ip6 } accept" not in table
    assert 'iifname "one-7-0" jump from-vm' in table and 'oifname "one-7-0" jump to-vm' in table
    # The table replaces any earlier one in the same transaction; each chain ends in drop.
    assert table.startswith("add table bridge one-7-0\ndelete table bridge one-7-0\n")
    assert table.count("    drop\n") == 2
    # No SECURITY_GROUPS: the default group (all).
    bare = vm(nic(0))
    assert rules.nic_table(bare, bare.nics[0]).count("meta protocol { ip, ip6 } accept") == 2
    # Groups without rules, or words that are no ids, allow nothing (never fail open).
    for groups in ("7", "x"):
        closed = vm(nic(0, SECURITY_GROUPS=groups), rules_=(SecurityRule(0, "ALL", "INBOUND"),))
        assert "meta protocol { ip, ip6 } accept" not in rules.nic_table(closed,
                                                                         closed.nics[0])


def test_bridge_driver_script_and_refusals() -> None:
    drv, rec = driver(BridgeVN)
    drv.pre(HOST, vm(nic(0), nic(1), nic(2, BRIDGE="onebr1", PHYDEV="eth1")))
    (script, _), = rec.calls
    assert script.count("ip link add name onebr0 type bridge") == 1  # once per bridge
    assert "ip link set dev onebr0 alias oneserver" in script
    assert "ip link set dev eth1 master onebr1" in script
    drv.clean(HOST, vm(nic(0)))
    assert len(rec.calls) == 1  # bridges are kept by default: nothing to run
    for bad in ({"BRIDGE": "br0; reboot"}, {"BRIDGE": "-br0"}, {"BRIDGE": "a" * 16},
                {"TARGET": "one 7"}, {"PHYDEV": "$(reboot)"}):
        with pytest.raises(DriverError, match="not a valid interface name"):
            drv.pre(HOST, vm(nic(0, **bad)))
    assert len(rec.calls) == 1


def test_bridge_removed_only_when_asked_and_made_by_us() -> None:
    drv, rec = driver(BridgeVN, keep_empty_bridge="no")
    drv.clean(HOST, vm(nic(0)))
    (script, _), = rec.calls
    assert "grep -q ' alias oneserver$'" in script and "ip link del dev onebr0" in script


def test_firewall_pre_loads_every_table_at_once_and_clean_removes_them() -> None:
    drv, rec = driver(FirewallVN)
    spec = vm(nic(0), nic(1, BRIDGE="onebr1"))
    drv.pre(HOST, spec)
    (script, ruleset), = rec.calls
    assert "bridge-nf-call-iptables" in script and script.endswith("nft -f -\n")
    assert "table inet oneserver {" in ruleset
    assert "table bridge one-7-0 {" in ruleset and "table bridge one-7-1 {" in ruleset
    drv.clean(HOST, spec)
    assert rec.calls[1][1] == ("add table bridge one-7-0\ndelete table bridge one-7-0\n"
                               "add table bridge one-7-1\ndelete table bridge one-7-1\n")
    # A rule it cannot express stops it before the host is touched.
    with pytest.raises(DriverError, match="PROTOCOL"):
        drv.pre(HOST, vm(nic(0, SECURITY_GROUPS="5"),
                         rules_=(SecurityRule(5, "SCTP", "inbound"),)))
    assert len(rec.calls) == 2


@pytest.mark.parametrize("mark", ["3", "0", "x", str(1 << 32)])
def test_firewall_mark_must_be_one_bit(mark: str) -> None:
    with pytest.raises(DriverError, match="mark"):
        FirewallVN({"mark": mark})


def test_vxlan_device_per_network() -> None:
    drv, rec = driver(VxlanVN)
    drv.pre(HOST, vm(nic(0, PHYDEV="eth0", VLAN_ID="300")))
    script, _ = rec.calls[0]
    assert ("ip link add name eth0.300 type vxlan id 300 dev eth0 group 239.0.1.44 "
            "dstport 4789 ttl 16") in script
    assert "ip link set dev eth0.300 master onebr0" in script
    with pytest.raises(DriverError, match="needs PHYDEV"):
        drv.pre(HOST, vm(nic(0, VLAN_ID="3")))
    with pytest.raises(DriverError, match="VLAN_ID"):
        drv.pre(HOST, vm(nic(0, PHYDEV="eth0", VLAN_ID=str(1 << 24))))
    tidy, rec2 = driver(VxlanVN, keep_empty_bridge="no")
    tidy.clean(HOST, vm(nic(0, PHYDEV="a-long-phydev0", VLAN_ID="7")))
    assert "ip link del dev vxlan7" in rec2.calls[0][0]  # <PHYDEV>.<VNI> would be too long


def test_dummy_changes_nothing_but_refuses_bad_names() -> None:
    DummyVN().pre(HOST, vm(nic(0)))
    with pytest.raises(DriverError):
        DummyVN().pre(HOST, vm(nic(0, BRIDGE="br0 br1")))


def test_specs_read_nics_as_oned_writes_them() -> None:
    tmpl = parse(
        'NIC = [ NIC_ID = "0", NAME = "NIC0", BRIDGE = "br0", VN_MAD = "fw", IP = "10.213.1.11",'
        ' SECURITY_GROUPS = "0,100", TARGET = "one-1-0" ]\n'
        'NIC = [ NIC_ID = "2", BRIDGE = "br1" ]\n'
        'NIC_ALIAS = [ NIC_ID = "1", PARENT = "NIC0", PARENT_ID = "0", IP = "10.213.1.12" ]\n'
        'SECURITY_GROUP_RULE = [ SECURITY_GROUP_ID = "100", PROTOCOL = "TCP",'
        ' RULE_TYPE = "inbound", RANGE = "22,80" ]\n'
        'SECURITY_GROUP_RULE = [ PROTOCOL = "TCP", RULE_TYPE = "inbound" ]\n')
    first, second = nic_specs(1, tmpl)
    assert (first.target, first.vn_mad, first.security_groups) == ("one-1-0", "fw", (0, 100))
    assert [a.ip for a in first.aliases] == ["10.213.1.12"]
    assert (second.nic_id, second.target, second.vn_mad, second.aliases) == (
        2, "one-1-2", None, ())
    assert security_rules(tmpl) == (SecurityRule(100, "TCP", "inbound", range="22,80"),)


def test_resolv_conf_from_the_nics() -> None:
    spec = vm(nic(0, DNS="10.213.0.2 10.213.0.3"), nic(1, DNS="10.213.0.2,fd00::53",
                                                        SEARCH_DOMAIN="lab.example"))
    assert resolv_conf(spec) == ("search lab.example\nnameserver 10.213.0.2\n"
                                 "nameserver 10.213.0.3\nnameserver fd00::53\n")
    assert resolv_conf(vm(nic(0))) is None
    with pytest.raises(DriverError, match="DNS"):
        resolv_conf(vm(nic(0, DNS="10.213.0.2\nnameserver 6.6.6.6")))
    with pytest.raises(DriverError, match="SEARCH_DOMAIN"):
        resolv_conf(vm(nic(0, DNS="10.213.0.2", SEARCH_DOMAIN="a;b")))


def test_resolv_conf_never_leaves_the_rootfs(tmp_path: Path) -> None:
    """Written as a new file over the old name (a hard link into a cache stays as it was);
    an ``etc`` that is a symlink out of the rootfs is left alone."""
    root = tmp_path / "vm" / "disk.0"
    (root / "etc").mkdir(parents=True)
    cached = tmp_path / "cache-resolv.conf"
    cached.write_text("old\n")
    os.link(cached, root / "etc" / "resolv.conf")
    spec = dataclasses.replace(vm(nic(0)), vm_dir=str(tmp_path / "vm"),
                               disks=(DiskSpec(0, "/images/x"),))
    script = write_script(spec, "nameserver 10.213.0.2\n")
    assert script is not None
    subprocess.run(["sh", "-ec", script], check=True)
    assert (root / "etc" / "resolv.conf").read_text() == "nameserver 10.213.0.2\n"
    assert cached.read_text() == "old\n"
    outside = tmp_path / "host-etc"
    outside.mkdir()
    shutil.rmtree(root / "etc")
    (root / "etc").symlink_to(outside)
    subprocess.run(["sh", "-ec", script], check=True)
    assert list(outside.iterdir()) == []
    readonly = dataclasses.replace(spec, disks=(DiskSpec(0, "/images/x", readonly=True),))
    assert write_script(readonly, "x") is None


class FakeRegistry:
    """The registry as the executor's network steps use it: a VMM (with or without real
    hosts) and VN driver calls, recorded; the VN drivers named in ``failing`` raise."""

    def __init__(self, real_hosts: bool, failing: tuple[str, ...] = ()) -> None:
        self.vmm = type("V", (), {"runs_vn_drivers": real_hosts})()
        self.failing = failing
        self.calls: list[tuple[str, str, tuple[int, ...]]] = []

    def driver(self, kind: str, name: str) -> Any:
        return self.vmm

    def call(self, kind: str, name: str, method: str, host: HostRef, spec: VMSpec) -> None:
        self.calls.append((name, method, tuple(n.nic_id for n in spec.nics)))
        if name in self.failing:
            raise DriverError(f"{name} failed")


def test_the_core_calls_each_vn_driver_with_its_nics() -> None:
    from oneserver.core.executor import Executor

    spec = vm(NicSpec(0, vn_mad="fw"), NicSpec(1, vn_mad="bridge"), NicSpec(2, vn_mad="fw"),
              NicSpec(3))
    reg = FakeRegistry(real_hosts=True, failing=("fw",))
    ex = Executor(reg, lambda: None)  # type: ignore[arg-type]
    try:
        with pytest.raises(DriverError, match="fw failed"):
            ex._network("pre", HOST, "lxc", spec)
        assert reg.calls == [("fw", "pre", (0, 2))]  # a failed pre stops there
        reg.calls.clear()
        with pytest.raises(DriverError, match="fw failed"):
            ex._network("clean", HOST, "lxc", spec)
        # A clean goes on with the other drivers; a NIC without VN_MAD has none.
        assert reg.calls == [("fw", "clean", (0, 2)), ("bridge", "clean", (1,))]
    finally:
        ex.close()
    model = FakeRegistry(real_hosts=False)
    ex = Executor(model, lambda: None)  # type: ignore[arg-type]
    try:
        ex._network("pre", HOST, "dummy", spec)
        assert model.calls == []  # dummy and sim hosts are models: no VN driver runs
    finally:
        ex.close()


def test_vlan_device_per_network() -> None:
    drv, rec = driver(VlanVN)
    drv.pre(HOST, vm(nic(0, PHYDEV="eth0", VLAN_ID="100")))
    script, ruleset = rec.calls[0]
    assert "ip link add link eth0 name eth0.100 type vlan id 100" in script
    assert "ip link set dev eth0.100 master onebr0" in script and "table bridge one-7-0" in ruleset
    for bad in ("0", "4095", "1e3"):
        with pytest.raises(DriverError, match="VLAN_ID"):
            drv.pre(HOST, vm(nic(0, PHYDEV="eth0", VLAN_ID=bad)))


def test_only_linux_bridges() -> None:
    drv, rec = driver(FirewallVN)
    with pytest.raises(DriverError, match="BRIDGE_TYPE 'openvswitch'"):
        drv.pre(HOST, vm(nic(0, BRIDGE_TYPE="openvswitch")))
    drv.pre(HOST, vm(nic(0, BRIDGE_TYPE="linux")))
    assert len(rec.calls) == 1
