"""Golden and schema tests of the XML builder, plus its RAW merge and policy rules."""

from __future__ import annotations

import os
from pathlib import Path

import lxc_specs as specs
import pytest
from lxml import etree

from drivers.lxc.domain_xml import (
    BridgeInterface,
    Filesystem,
    LxcDomain,
    RawXMLError,
    merge_raw,
    parse_raw,
)
from drivers.lxc.policy import build_domain, cpu_shares, deploy_id, vm_id_of
from oneserver.driver_contract import DiskSpec, DriverError, NicSpec

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("case", sorted(specs.ALL))
def test_golden(case: str) -> None:
    """The XML for each spec equals its golden file (UPDATE_GOLDEN=1 rewrites them)."""
    xml = build_domain(specs.ALL[case]()).to_xml()
    path = GOLDEN / f"{case}.xml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(xml)
    assert xml == path.read_text()


@pytest.mark.parametrize("case", sorted(specs.ALL))
def test_schema(case: str, rng: etree.RelaxNG) -> None:
    doc = etree.fromstring(build_domain(specs.ALL[case]()).to_xml().encode())
    assert rng.validate(doc), rng.error_log


def test_golden_files_are_valid(rng: etree.RelaxNG) -> None:
    files = sorted(GOLDEN.glob("*.xml"))
    assert files
    for path in files:
        assert rng.validate(etree.parse(str(path))), (path, rng.error_log)


def test_schema_rejects_a_broken_domain(rng: etree.RelaxNG) -> None:
    dom = LxcDomain(name="x", memory_kib=1024, filesystems=[Filesystem("/r", "/")]).to_element()
    dom.set("type", "lxcc")
    assert not rng.validate(dom)


def test_policy_values() -> None:
    dom = build_domain(specs.full())
    assert dom.name == "one-42"
    assert dom.memory_kib == 256 * 1024
    assert (dom.cputune.shares, dom.cputune.period, dom.cputune.quota) == (512, 100000, 50000)
    assert [f.target_dir for f in dom.filesystems] == ["/", "/srv/data", "/media/one-disk.2"]
    assert dom.filesystems[0].source_dir == "/var/lib/oneserver/datastores/0/42/disk.0"
    assert dom.interfaces[0].addresses[0].prefix == 24
    assert dom.interfaces[0].target == "one-42-0"
    assert dom.initargs[0] == "-c"
    assert dom.privnet


def test_defaults() -> None:
    dom = build_domain(specs.minimal())
    assert dom.init == "/sbin/init" and dom.idmap is None and dom.cputune.quota is None
    assert cpu_shares(0.001) == 2
    assert deploy_id(specs.minimal(5)) == "one-5"
    assert vm_id_of("one-17") == 17 and vm_id_of("web") is None and vm_id_of("one-x") is None


@pytest.mark.parametrize("change, message", [
    ({"disks": ()}, "needs a DISK"),
    ({"vm_dir": None}, "prolog must run first"),
    ({"nics": (NicSpec(0),)}, "no BRIDGE"),
    ({"nics": (NicSpec(0, bridge="b", ip="10.213.0.2", attrs={"PREFIX": "x"}),)}, "bad mask"),
    ({"nics": (NicSpec(0, bridge="b", ip="10.213.0.2", attrs={"PREFIX": "33"}),)}, "bad mask"),
    ({"nics": (NicSpec(0, bridge="b; reboot"),)}, "BRIDGE .* not a valid interface name"),
    ({"nics": (NicSpec(0, bridge="-b"),)}, "not a valid interface name"),
    ({"nics": (NicSpec(0, bridge="b", target="one-1-0-much-too-long"),)}, "TARGET"),
    ({"nics": (NicSpec(0, bridge="b", mac="02:00:0a:d5:00:2a'/>"),)}, "not a MAC"),
    ({"nics": (NicSpec(0, bridge="b", ip="10.213.0.300"),)}, "not an IP address"),
    ({"nics": (NicSpec(0, bridge="b", ip="fd00::1"),)}, "not an IPv4 address"),
    ({"nics": (NicSpec(0, bridge="b", attrs={"IP6": "10.213.0.1"}),)}, "not an IPv6"),
    ({"nics": (NicSpec(0, bridge="b", ip="10.213.0.2", attrs={"GATEWAY": "x"}),)},
     "GATEWAY 'x' is not an IP"),
    ({"template": {"LXC_IDMAP": "0:1"}}, "start:target:count"),
    ({"template": {"RAW": {"TYPE": "lxc", "DATA": "<a>"}}}, "not well-formed"),
    ({"memory_mb": 0}, "MEMORY"),
])
def test_policy_errors(change: dict, message: str) -> None:
    import dataclasses

    with pytest.raises(DriverError, match=message):
        build_domain(dataclasses.replace(specs.minimal(), **change))


def test_raw_refuses_entities() -> None:
    evil = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><description>&e;</description>'
    with pytest.raises(RawXMLError):
        parse_raw(evil)
    with pytest.raises(RawXMLError, match="bare text"):
        parse_raw("hello")


def test_raw_merge_rules() -> None:
    dom = LxcDomain(name="m", memory_kib=1024, filesystems=[Filesystem("/r", "/")],
                    interfaces=[BridgeInterface("b")]).to_element()
    merge_raw(dom, "<memory unit='MiB'>5</memory><devices><console type='pty'/></devices>"
                   "<features><capabilities policy='deny'/></features>"
                   "<os><initarg>x</initarg></os><title>t</title>")
    assert dom.findtext("memory") == "5" and len(dom.findall("memory")) == 1
    assert len(dom.findall("devices/console")) == 2
    assert dom.find("features/privnet") is not None
    assert dom.find("features/capabilities").get("policy") == "deny"
    assert dom.findtext("os/init") == "/sbin/init" and dom.findtext("os/initarg") == "x"
    assert dom.findtext("title") == "t"


def test_readonly_root_and_no_console() -> None:
    import dataclasses

    vm = dataclasses.replace(specs.minimal(), disks=(DiskSpec(0, "/x", readonly=True),))
    dom = build_domain(vm)
    dom.console = False
    root = dom.to_element()
    assert root.find("devices/filesystem/readonly") is not None
    assert root.find("devices/console") is None
