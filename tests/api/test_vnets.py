"""Virtual networks and security groups through the API, on a server of their own (so ids are
oned's): the scenario oned 7.4.0 was recorded in (tests/fixtures/oned-7.4.0-network-replies.json)
replayed call by call, every document compared byte for byte with oned's where the state is
the same (vn.info, vnpool.info, secgroup.info/pool, the NICs and rules of a VM) and against
the schemas; every address range type; updates, renames, clusters; bad input refused with
oned's words and nothing changed; pyone reads every document."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xsd  # tests/api/xsd.py, beside this file

from tests.conftest import ROOT, Server, backends, start_server, stop_server

RECORDED = json.loads((ROOT / "tests" / "fixtures" / "oned-7.4.0-network-replies.json")
                      .read_text())
DOCS: dict[str, str] = RECORDED["documents"]
INTERNAL, ACTION, AUTHORIZATION, NO_EXISTS = 0x2000, 0x800, 0x200, 0x400

NET_A = ('NAME="net-a"\nVN_MAD="dummy"\nBRIDGE="br0"\nDESCRIPTION="Production LAN"\n'
         'DNS="10.213.0.2"\nGATEWAY="10.213.1.1"\nNETWORK_ADDRESS="10.213.1.0"\n'
         'NETWORK_MASK="255.255.255.0"\nAR=[TYPE="IP4",IP="10.213.1.10",SIZE="32"]\n'
         'AR=[TYPE="ETHER",MAC="02:00:cb:93:66:d4",SIZE="16"]')
NET_B = ('NAME="net-b"\nVN_MAD="dummy"\nBRIDGE="br1"\nDESCRIPTION="Service LAN"\n'
         'DNS="10.213.0.2"\nGATEWAY="10.213.2.1"\nNETWORK_ADDRESS="10.213.2.0"\n'
         'NETWORK_MASK="255.255.255.0"\nAR=[TYPE="IP4",IP="10.213.2.10",SIZE="16"]')
NET_FULL = ('NAME="net-full"\nVN_MAD="dummy"\nBRIDGE="br2"\n'
            'AR=[TYPE="IP4",IP="10.213.3.10",SIZE="1"]')
WEB = ('NAME="web-servers"\nDESCRIPTION="SSH and HTTP(S) in, ping from the site"\n'
       'RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="22,80,443"]\n'
       'RULE=[PROTOCOL="ICMP",RULE_TYPE="inbound",ICMP_TYPE="8",IP="10.213.0.0",SIZE="65536"]')
VM = 'NAME="{name}"\nCPU=1\nMEMORY=512\n'


@pytest.fixture(scope="module", params=backends())
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp(f"vnets-{request.param}"), request.param)
    yield server
    stop_server(server)


def ok(srv: Server, method: str, *params: Any, session: str | None = None) -> Any:
    reply = srv.call(method, *params, session=session)
    assert reply[0] is True, (method, params, reply)
    return reply[1]


def fails(srv: Server, method: str, *params: Any, session: str | None = None) -> list[Any]:
    reply = srv.call(method, *params, session=session)
    assert reply[0] is False, (method, params, reply)
    return reply


def valid(xml: str) -> str:
    assert xsd.errors(xml) == [], xsd.errors(xml)
    return xml


def nic_parts(vm_xml: str) -> list[str]:
    """What a VM's TEMPLATE holds of networking: NICs, aliases, rules, requirements."""
    return re.findall(r"<(NIC|NIC_ALIAS|SECURITY_GROUP_RULE|AUTOMATIC_NIC_REQUIREMENTS|"
                      r"AUTOMATIC_DS_REQUIREMENTS|AUTOMATIC_REQUIREMENTS)>.*?</\1>", vm_xml)


def elements(vm_xml: str) -> list[str]:
    return [m.group(0) for m in re.finditer(
        r"<(NIC|NIC_ALIAS|SECURITY_GROUP_RULE|AUTOMATIC_NIC_REQUIREMENTS|"
        r"AUTOMATIC_DS_REQUIREMENTS|AUTOMATIC_REQUIREMENTS)>.*?</\1>", vm_xml)]


@pytest.fixture(scope="module")
def scenario(srv: Server) -> dict[str, Any]:
    """oned's recorded scenario, step by step; the documents taken where oned took them."""
    seen: dict[str, Any] = {}
    assert ok(srv, "one.vn.allocate", NET_A, -1) == 0
    assert ok(srv, "one.vn.allocate", NET_B, -1) == 1
    assert ok(srv, "one.vn.allocate", NET_FULL, -1) == 2
    assert ok(srv, "one.secgroup.allocate", WEB) == 100
    assert ok(srv, "one.vm.allocate", VM.format(name="web-01")
              + 'NIC=[NETWORK="net-a",SECURITY_GROUPS="100"]', True) == 0
    assert ok(srv, "one.vm.allocate", VM.format(name="web-02")
              + 'NIC=[NETWORK="net-a"]\nNIC_ALIAS=[NETWORK="net-a",PARENT="NIC0"]', True) == 1
    ok(srv, "one.vn.hold", 2, 'LEASES=[IP="10.213.3.10"]')
    seen["vm0"] = ok(srv, "one.vm.info", 0)
    seen["vm1"] = ok(srv, "one.vm.info", 1)
    seen["ready_2ars"] = ok(srv, "one.vn.info", 0)
    seen["sg0"] = ok(srv, "one.secgroup.info", 0)
    seen["sg100"] = ok(srv, "one.secgroup.info", 100)
    seen["sgpool"] = ok(srv, "one.secgrouppool.info", -2, -1, -1)
    ok(srv, "one.vn.hold", 0, 'LEASES=[IP="10.213.1.40"]')
    seen["after_hold"] = ok(srv, "one.vn.info", 0)
    ok(srv, "one.vn.release", 0, 'LEASES=[IP="10.213.1.40"]')
    assert ok(srv, "one.vn.reserve", 0, 'SIZE=4\nNAME="net-a-reserved"') == 3
    seen["reservation"] = ok(srv, "one.vn.info", 3)
    seen["no_lease"] = srv.call("one.vm.allocate", VM.format(name="x")
                                + 'NIC=[NETWORK_ID="2"]', True)
    seen["missing"] = srv.call("one.vm.allocate", VM.format(name="x")
                               + 'NIC=[NETWORK_ID="999"]', True)
    seen["delete"] = srv.call("one.vn.delete", 0)
    seen["pool"] = ok(srv, "one.vnpool.info", -2, -1, -1)
    return seen


@pytest.mark.parametrize("name,recorded", [
    ("ready_2ars", "vn_info_ready_2ars"), ("after_hold", "vn_info_after_hold"),
    ("reservation", "vn_info_reservation"), ("pool", "vnpool_info"),
    ("sg0", "secgroup_info_0"), ("sg100", "secgroup_info_2rules"),
    ("sgpool", "secgrouppool_info"),
])
def test_documents_are_oneds(scenario: dict[str, Any], name: str, recorded: str) -> None:
    assert valid(scenario[name]) == DOCS[recorded]


@pytest.mark.parametrize("vm,recorded", [("vm0", "vm_info_nic"), ("vm1", "vm_info_nic_alias")])
def test_vm_nics_and_rules_are_oneds(scenario: dict[str, Any], vm: str, recorded: str) -> None:
    assert elements(valid(scenario[vm])) == elements(DOCS[recorded])


def _message(rpc_xml: str) -> tuple[str, int]:
    msg = re.search(r"<string>(.*?)</string>", rpc_xml, re.S)
    code = re.search(r"<i4>(\d+)</i4>", rpc_xml)
    assert msg and code
    return msg.group(1), int(code.group(1))


@pytest.mark.parametrize("name,recorded", [
    ("no_lease", "vm_allocate_no_lease"), ("missing", "vm_allocate_missing_vnet"),
    ("delete", "vn_delete_with_leases")])
def test_refusals_are_oneds(scenario: dict[str, Any], name: str, recorded: str) -> None:
    reply = scenario[name]
    assert reply[0] is False
    assert (reply[1], reply[2]) == _message(RECORDED["replies"][recorded])


def test_attach_and_detach_nic_are_oneds(srv: Server, scenario: dict[str, Any]) -> None:
    """VM 0 runs on a dummy host; net-b's first address goes to a NIC attached to it
    (HOTPLUG_NIC while the core runs the VMM's attach), then the NIC goes again."""
    hid = ok(srv, "one.host.allocate", "node-01", "dummy", "dummy", -1)
    ok(srv, "one.vm.deploy", 0, hid, False, -1, "")
    srv.wait_vm(0, 3, 3)
    ok(srv, "one.vm.attachnic", 0, 'NIC=[NETWORK="net-b"]')
    srv.wait_vm(0, 3, 3)
    body = valid(ok(srv, "one.vm.info", 0))
    assert elements(body) == elements(DOCS["vm_info_after_attachnic"])
    assert re.findall(r"<ACTION>(\d+)</ACTION>", body) == ["23", "0"]
    assert "<VM><![CDATA[0]]></VM>" in ok(srv, "one.vn.info", 1)
    ok(srv, "one.vm.detachnic", 0, 1)
    srv.wait_vm(0, 3, 3)
    body = valid(ok(srv, "one.vm.info", 0))
    assert elements(body) == elements(DOCS["vm_info_after_detachnic"])
    assert re.findall(r"<ACTION>(\d+)</ACTION>", body) == ["23", "24", "0"]
    assert "<USED_LEASES>0</USED_LEASES>" in ok(srv, "one.vn.info", 1)
    reply = fails(srv, "one.vm.detachnic", 0, 7)
    assert reply[1] == "[one.vm.detachnic] Could not detach NIC with NIC_ID 7, it does not exist."
    reply = fails(srv, "one.vm.attachnic", 1, 'NIC=[NETWORK="net-b"]')  # VM 1 is on hold
    assert reply[1] == "[one.vm.attachnic] Could not add a new NIC to VM 1, wrong state HOLD."


def test_attach_and_detach_a_security_group(srv: Server, scenario: dict[str, Any]) -> None:
    """VM 0 runs (test_attach_and_detach_nic_are_oneds): a group goes on its NIC 0 and off."""
    srv.wait_vm(0, 3, 3)
    sg = ok(srv, "one.secgroup.allocate", 'NAME="extra"\nRULE=[PROTOCOL="UDP",'
            'RULE_TYPE="inbound",RANGE="53"]')
    reply = fails(srv, "one.vm.attachsg", 0, 0, 100)
    assert reply[1] == "[one.vm.attachsg] VM 0 SG 100 already in NIC 0"
    assert fails(srv, "one.vm.attachsg", 0, 9, sg)[1] == \
        "[one.vm.attachsg] VM 0 doesn't have NIC id 9"
    assert fails(srv, "one.vm.attachsg", 0, 0, 9999)[1] == \
        "[one.vm.attachsg] Could not attach SG 9999 to VM, SG does not exist"
    ok(srv, "one.vm.attachsg", 0, 0, sg)
    body = valid(ok(srv, "one.vm.info", 0))
    assert nic_of(body)["SECURITY_GROUPS"] == f"0,100,{sg}"
    assert f"<SECURITY_GROUP_ID><![CDATA[{sg}]]></SECURITY_GROUP_ID>" in body
    assert "<UPDATED_VMS><ID>0</ID></UPDATED_VMS>" in ok(srv, "one.secgroup.info", sg)
    srv.wait_vm(0, 3, 3)
    ok(srv, "one.vm.detachsg", 0, 0, sg)
    body = ok(srv, "one.vm.info", 0)
    assert nic_of(body)["SECURITY_GROUPS"] == "0,100"
    assert f"<SECURITY_GROUP_ID><![CDATA[{sg}]]></SECURITY_GROUP_ID>" not in body
    assert "<UPDATED_VMS></UPDATED_VMS>" in ok(srv, "one.secgroup.info", sg)
    reply = fails(srv, "one.vm.detachsg", 0, 0, sg)
    assert reply[1] == f"[one.vm.detachsg] VM 0 NIC 0 doesn't contain SG {sg}"
    ok(srv, "one.secgroup.delete", sg)


def test_vntemplates_are_oneds(srv: Server, scenario: dict[str, Any]) -> None:
    tid = ok(srv, "one.vntemplate.allocate", 'NAME="tenant-net"\nVN_MAD="bridge"\n'
             'BRIDGE="br-tenant"\nDESCRIPTION="Per-tenant private network"\nDNS="10.213.0.2"\n'
             'GATEWAY="10.213.10.1"\nNETWORK_ADDRESS="10.213.10.0"\n'
             'NETWORK_MASK="255.255.255.0"\nAR=[TYPE="IP4",IP="10.213.10.10",SIZE="100"]')
    assert tid == 0
    regtime = re.compile(r"<REGTIME>\d+</REGTIME>")
    for method, params, recorded in (("one.vntemplate.info", (0,), "vntemplate_info"),
                                     ("one.vntemplatepool.info", (-2, -1, -1),
                                      "vntemplatepool_info")):
        got = valid(ok(srv, method, *params))
        assert regtime.sub("", got) == regtime.sub("", DOCS[recorded])
    vn = ok(srv, "one.vntemplate.instantiate", 0, "tenant-a", 'DESCRIPTION="a tenant"')
    body = valid(ok(srv, "one.vn.info", vn))
    assert "<TEMPLATE_ID>0</TEMPLATE_ID>" in body and "<NAME>tenant-a</NAME>" in body
    assert "<IP><![CDATA[10.213.10.10]]></IP>" in body
    assert "<DESCRIPTION><![CDATA[a tenant]]></DESCRIPTION>" in body
    assert "TEMPLATE_NAME" not in body  # the network's name comes from it, then it goes
    clone = ok(srv, "one.vntemplate.clone", 0, "tenant-net-2")
    assert "<NAME>tenant-net-2</NAME>" in ok(srv, "one.vntemplate.info", clone)
    reply = fails(srv, "one.vntemplate.allocate", 'NAME="tenant-net"\nVN_MAD="bridge"')
    assert reply[1] == "[one.vntemplate.allocate] NAME is already taken by VNTEMPLATE 0."
    ok(srv, "one.vntemplate.delete", clone)
    ok(srv, "one.vn.delete", vn)


def test_ranges_of_a_templated_network_need_manage(srv: Server, scenario: dict[str, Any]
                                                   ) -> None:
    """add_ar/rm_ar need ADMIN on a network, MANAGE on one made from a VN template."""
    tid = ok(srv, "one.vntemplate.allocate", 'NAME="for-users"\nVN_MAD="dummy"\nBRIDGE="bu"')
    ok(srv, "one.vntemplate.chmod", tid, -1, -1, -1, -1, -1, -1, 1, -1, -1)
    ok(srv, "one.user.allocate", "templ-user", "pw", "", [])
    user = "templ-user:pw"
    vn = ok(srv, "one.vntemplate.instantiate", tid, "mine-t", "", session=user)
    ok(srv, "one.vn.add_ar", vn, 'AR=[TYPE="ETHER",SIZE="2"]', session=user)
    ok(srv, "one.vn.rm_ar", vn, 0, session=user)
    rid = ok(srv, "one.vn.reserve", 1, 'SIZE=1\nNAME="mine-r"', session=user)
    reply = fails(srv, "one.vn.add_ar", rid, 'AR=[TYPE="ETHER",SIZE="2"]', session=user)
    assert reply[2] == AUTHORIZATION and "ADMIN NET" in reply[1]
    ok(srv, "one.vn.delete", rid, session=user)
    ok(srv, "one.vn.delete", vn, session=user)
    ok(srv, "one.vntemplate.delete", tid)


def test_pyone_reads_every_document(srv: Server, scenario: dict[str, Any]) -> None:
    one = srv.pyone()
    net = one.vn.info(0)
    assert net.NAME == "net-a" and net.USED_LEASES == 7
    assert [ar.TYPE for ar in net.AR_POOL.AR] == ["IP4", "ETHER"]
    assert {lease.IP for lease in net.AR_POOL.AR[0].LEASES.LEASE} >= {"10.213.1.10"}
    assert {n.NAME for n in one.vnpool.info(-2, -1, -1).VNET} >= {"net-a", "net-a-reserved"}
    assert one.secgroup.info(0).NAME == "default"
    assert {g.ID for g in one.secgrouppool.info(-2, -1, -1).SECURITY_GROUP} >= {0, 100}


AR_TYPES = {
    "IP6": ('AR=[TYPE="IP6",MAC="02:00:00:00:01:00",GLOBAL_PREFIX="2001:db8::",'
            'ULA_PREFIX="fd01::",SIZE="3"]',
            {"IP6_GLOBAL": "2001:db8::ff:fe00:100", "IP6_ULA": "fd01::ff:fe00:100",
             "IP6_LINK": "fe80::ff:fe00:100", "MAC": "02:00:00:00:01:00"}),
    "IP6_STATIC": ('AR=[TYPE="IP6_STATIC",IP6="2001:db8:5::a",PREFIX_LENGTH="48",SIZE="3"]',
                   {"IP6": "2001:db8:5::a"}),
    "IP4_6": ('AR=[TYPE="IP4_6",IP="10.213.20.5",GLOBAL_PREFIX="2001:db8:6::",SIZE="3"]',
              {"IP": "10.213.20.5", "MAC": "02:00:0a:d5:14:05",
               "IP6_GLOBAL": "2001:db8:6::aff:fed5:1405"}),
    "IP4_6_STATIC": ('AR=[TYPE="IP4_6_STATIC",IP="10.213.21.5",IP6="2001:db8:7::5",'
                     'PREFIX_LENGTH="64",SIZE="3"]',
                     {"IP": "10.213.21.5", "IP6": "2001:db8:7::5"}),
    "ETHER": ('AR=[TYPE="ETHER",MAC="02:00:aa:bb:cc:00",SIZE="3"]',
              {"MAC": "02:00:aa:bb:cc:00"}),
}


def nic_of(vm_xml: str) -> dict[str, str]:
    nic = re.search(r"<NIC>(.*?)</NIC>", vm_xml)
    assert nic, vm_xml
    return dict(re.findall(r"<(\w+)><!\[CDATA\[(.*?)\]\]></\1>", nic.group(1)))


@pytest.mark.parametrize("ar_type", sorted(AR_TYPES))
def test_every_ar_type_gives_its_addresses(srv: Server, scenario: dict[str, Any],
                                           ar_type: str) -> None:
    ar, expected = AR_TYPES[ar_type]
    name = f"net-{ar_type.lower()}"
    vn = ok(srv, "one.vn.allocate", f'NAME="{name}"\nVN_MAD="dummy"\nBRIDGE="b6"\n{ar}', -1)
    vid = ok(srv, "one.vm.allocate", VM.format(name="t") + f'NIC=[NETWORK_ID="{vn}"]', True)
    nic = nic_of(ok(srv, "one.vm.info", vid))
    assert {k: nic.get(k) for k in expected} == expected
    assert nic["AR_ID"] == "0" and nic["NETWORK"] == name and nic["TARGET"] == f"one-{vid}-0"
    body = valid(ok(srv, "one.vn.info", vn))
    assert "<USED_LEASES>1</USED_LEASES>" in body and f"<VM><![CDATA[{vid}]]></VM>" in body
    valid(ok(srv, "one.vnpool.info", -2, -1, -1))
    ok(srv, "one.vm.action", "terminate-hard", vid)
    assert "<USED_LEASES>0</USED_LEASES>" in ok(srv, "one.vn.info", vn)
    ok(srv, "one.vn.delete", vn)


def test_a_mac_without_ip_is_the_prefix_and_the_ip(srv: Server, scenario: dict[str, Any]
                                                   ) -> None:
    body = ok(srv, "one.vn.info", 1)
    assert "<MAC><![CDATA[02:00:0a:d5:02:0a]]></MAC>" in body
    assert "<IP_END><![CDATA[10.213.2.25]]></IP_END>" in body


@pytest.mark.parametrize("text,message", [
    ('NAME="n1"\nBRIDGE="b"', "No VN_MAD in template for Virtual Network."),
    ('VN_MAD="dummy"\nBRIDGE="b"', "No NAME in template for Virtual Network."),
    ('NAME="n2"\nVN_MAD="dummy"', "BRIDGE is mandatory for driver dummy"),
    ('NAME="n3"\nVN_MAD="802.1Q"\nVLAN_ID="5"', "PHYDEV is mandatory for driver 802.1Q"),
    ('NAME="n4"\nVN_MAD="nope"\nBRIDGE="b"', 'VN_MAD named "nope" is not defined in oned.conf'),
    ('NAME="net-a"\nVN_MAD="dummy"\nBRIDGE="b"', "NAME is already taken by NET 0."),
])
def test_bad_networks_are_refused(srv: Server, scenario: dict[str, Any], text: str,
                                  message: str) -> None:
    before = ok(srv, "one.vnpool.info", -2, -1, -1)
    reply = fails(srv, "one.vn.allocate", text, -1)
    assert (reply[1], reply[2]) == (f"[one.vn.allocate] {message}", INTERNAL)
    assert ok(srv, "one.vnpool.info", -2, -1, -1) == before


@pytest.mark.parametrize("ar,message", [
    ('AR=[TYPE="IP5",SIZE="2"]', "Unknown or missing address range TYPE."),
    ('AR=[TYPE="IP4",SIZE="2"]', "Wrong or empty IP attribute"),
    ('AR=[TYPE="IP4",IP="10.213.30.1",SIZE="x"]', "Wrong SIZE for address range"),
    ('AR=[TYPE="ETHER",MAC="zz",SIZE="2"]', "Wrong format for MAC attribute: zz"),
    ('AR=[TYPE="IP6",GLOBAL_PREFIX="nope",SIZE="2"]',
     "Wrong format for IP6 global address prefix"),
    ('AR=[TYPE="IP6_STATIC",IP6="2001:db8::1",SIZE="2"]', "Wrong or empty PREFIX_LENGTH"),
    ('AR=[TYPE="ETHER",SHARED="YES",SIZE="2"]',
     "Shared ARs can be only of type IP4 or IP6_STATIC."),
    ("X=1", "Wrong AR definition. AR vector attribute is missing."),
])
def test_bad_address_ranges_are_refused(srv: Server, scenario: dict[str, Any], ar: str,
                                        message: str) -> None:
    before = ok(srv, "one.vn.info", 1)
    reply = fails(srv, "one.vn.add_ar", 1, ar)
    assert (reply[1], reply[2]) == (f"[one.vn.add_ar] {message}", INTERNAL)
    assert ok(srv, "one.vn.info", 1) == before


def test_an_ar_refused_at_allocate_leaves_the_network_in_error(srv: Server,
                                                               scenario: dict[str, Any]) -> None:
    vn = ok(srv, "one.vn.allocate", 'NAME="bad-ar"\nVN_MAD="dummy"\nBRIDGE="b"\n'
                                    'AR=[TYPE="IP4",SIZE="2"]', -1)
    body = valid(ok(srv, "one.vn.info", vn))
    assert "<STATE><![CDATA[5]]></STATE>" in body
    assert "<ERROR><![CDATA[Wrong or empty IP attribute]]></ERROR>" in body
    reply = fails(srv, "one.vn.add_ar", vn, 'AR=[TYPE="ETHER",SIZE="2"]')
    assert reply[2] == ACTION and "wrong state: ERROR" in reply[1]
    ok(srv, "one.vn.recover", vn, 1)
    assert "<STATE><![CDATA[1]]></STATE>" in ok(srv, "one.vn.info", vn)
    ok(srv, "one.vn.delete", vn)


def test_address_ranges_added_updated_and_removed(srv: Server, scenario: dict[str, Any]
                                                  ) -> None:
    ok(srv, "one.vn.add_ar", 1, 'AR=[TYPE="IP4",IP="10.213.2.100",SIZE="4",MTU="1400"]')
    body = ok(srv, "one.vn.info", 1)
    assert "<AR_ID><![CDATA[1]]></AR_ID><IP><![CDATA[10.213.2.100]]></IP>" in body
    ok(srv, "one.vn.update_ar", 1, 'AR=[AR_ID="1",SIZE="8",MTU="1500",IP="1.1.1.1"]')
    body = ok(srv, "one.vn.info", 1)
    assert "<IP_END><![CDATA[10.213.2.107]]></IP_END>" in body  # the IP is kept
    assert "<MTU><![CDATA[1500]]></MTU>" in body
    reply = fails(srv, "one.vn.update_ar", 1, 'AR=[AR_ID="7",SIZE="8"]')
    assert reply[1] == "[one.vn.update_ar] Address Range with ID 7 was not found."
    vid = ok(srv, "one.vm.allocate", VM.format(name="u")
             + 'NIC=[NETWORK_ID="1",IP="10.213.2.105"]', True)
    reply = fails(srv, "one.vn.update_ar", 1, 'AR=[AR_ID="1",SIZE="2"]')
    assert "There are used leases that would fall outside the range" in reply[1]
    reply = fails(srv, "one.vn.rm_ar", 1, 1)
    assert (reply[1], reply[2]) == ("[one.vn.rm_ar] Address Range has leases in use", INTERNAL)
    reply = fails(srv, "one.vn.free_ar", 1, 1)
    assert reply[1] == "[one.vn.free_ar] Address Range has leases in use"
    ok(srv, "one.vm.action", "terminate-hard", vid)
    ok(srv, "one.vn.rm_ar", 1, 1)
    assert "10.213.2.100" not in ok(srv, "one.vn.info", 1)
    reply = fails(srv, "one.vn.rm_ar", 1, 1)
    assert reply[1] == "[one.vn.rm_ar] Address Range does not exist"


def test_update_keeps_the_driver_attributes(srv: Server, scenario: dict[str, Any]) -> None:
    vn = ok(srv, "one.vn.allocate", 'NAME="upd"\nVN_MAD="dummy"\nBRIDGE="b9"', -1)
    ok(srv, "one.vn.update", vn, 'VN_MAD="bridge"\nDESCRIPTION="new"', 0)
    body = ok(srv, "one.vn.info", vn)
    assert "<BRIDGE><![CDATA[b9]]></BRIDGE>" in body  # BRIDGE kept when not given
    assert "<VN_MAD><![CDATA[bridge]]></VN_MAD>" in body
    assert "<DESCRIPTION><![CDATA[new]]></DESCRIPTION>" in body
    reply = fails(srv, "one.vn.update", vn, 'DESCRIPTION="x"', 0)
    assert reply[1] == ("[one.vn.update] Cannot update template. No VN_MAD in template for "
                        "Virtual Network.")
    ok(srv, "one.vn.update", vn, 'GATEWAY="10.213.9.1"', 1)
    assert "<GATEWAY><![CDATA[10.213.9.1]]></GATEWAY>" in ok(srv, "one.vn.info", vn)
    ok(srv, "one.vn.rename", vn, "upd2")
    assert "<NAME>upd2</NAME>" in ok(srv, "one.vn.info", vn)
    ok(srv, "one.vn.delete", vn)
    assert fails(srv, "one.vn.info", vn)[2] == NO_EXISTS


def test_clusters_list_their_networks(srv: Server, scenario: dict[str, Any]) -> None:
    cid = ok(srv, "one.cluster.allocate", "net-cluster")
    vn = ok(srv, "one.vn.allocate", 'NAME="in-c"\nVN_MAD="dummy"\nBRIDGE="b"\n'
                                    'AR=[TYPE="ETHER",SIZE="1"]', cid)
    assert f"<VNETS><ID>{vn}</ID></VNETS>" in ok(srv, "one.cluster.info", cid)
    assert f"<CLUSTERS><ID>{cid}</ID></CLUSTERS>" in ok(srv, "one.vn.info", vn)
    ok(srv, "one.cluster.addvnet", 0, vn)
    assert f"<CLUSTERS><ID>0</ID><ID>{cid}</ID></CLUSTERS>" in ok(srv, "one.vn.info", vn)
    ok(srv, "one.cluster.delvnet", cid, vn)
    assert "<VNETS></VNETS>" in ok(srv, "one.cluster.info", cid)
    assert fails(srv, "one.cluster.delvnet", cid, vn)[2] == ACTION
    vid = ok(srv, "one.vm.allocate", VM.format(name="c") + f'NIC=[NETWORK_ID="{vn}"]', True)
    assert "<AUTOMATIC_REQUIREMENTS><![CDATA[(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)]]>" \
        in ok(srv, "one.vm.info", vid)
    ok(srv, "one.vm.action", "terminate-hard", vid)
    ok(srv, "one.vn.delete", vn)
    assert "<VNETS>" in ok(srv, "one.cluster.info", 0)
    assert f"<ID>{vn}</ID>" not in re.search(r"<VNETS>.*?</VNETS>",
                                            ok(srv, "one.cluster.info", 0)).group(0)
    ok(srv, "one.cluster.delete", cid)


def test_security_groups(srv: Server, scenario: dict[str, Any]) -> None:
    for rule, message in (
            ('RULE=[PROTOCOL="FOO",RULE_TYPE="inbound"]', "Wrong PROTOCOL in rule. Valid "
             "options: TCP, UDP, ICMP, ICMPV6, IPSEC, ALL."),
            ('RULE=[PROTOCOL="TCP",RULE_TYPE="sideways"]', "Wrong RULE_TYPE in rule. Valid "
             "options: INBOUND, OUTBOUND."),
            ('RULE=[PROTOCOL="ICMP",RULE_TYPE="inbound",RANGE="22"]',
             "RANGE is supported only for TCP and UDP protocols."),
            ('RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="90:80"]',
             "RANGE BEGIN value is greater than RANGE END value"),
            ('RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",IP="10.0.0.1"]', "Wrong or empty SIZE.")):
        reply = fails(srv, "one.secgroup.allocate", f'NAME="bad"\n{rule}')
        assert (reply[1], reply[2]) == (f"[one.secgroup.allocate] {message}", INTERNAL)
    sg = ok(srv, "one.secgroup.allocate", 'NAME="dup"\nRULE=[PROTOCOL="UDP",RULE_TYPE="outbound"]'
            '\nRULE=[PROTOCOL="UDP",RULE_TYPE="outbound"]')
    body = valid(ok(srv, "one.secgroup.info", sg))
    assert body.count("<RULE>") == 1  # duplicates dropped, as oned does
    clone = ok(srv, "one.secgroup.clone", sg, "dup-clone")
    assert "<NAME>dup-clone</NAME>" in ok(srv, "one.secgroup.info", clone)
    ok(srv, "one.secgroup.update", clone, 'RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="80"]', 1)
    assert "<RANGE><![CDATA[80]]></RANGE>" in ok(srv, "one.secgroup.info", clone)
    reply = fails(srv, "one.secgroup.delete", 0)
    assert reply[1] == ("[one.secgroup.delete] Cannot delete security group. The default "
                        "security group (ID 0) cannot be deleted.")
    reply = fails(srv, "one.secgroup.delete", 100)  # VM 0 uses it
    assert reply[1].endswith("The security group has VMs using it")
    ok(srv, "one.secgroup.delete", clone)
    ok(srv, "one.secgroup.delete", sg)


def test_commit_brings_new_rules_to_the_vms(srv: Server, scenario: dict[str, Any]) -> None:
    sg = ok(srv, "one.secgroup.allocate", 'NAME="live"\nRULE=[PROTOCOL="TCP",RULE_TYPE="inbound",'
            'RANGE="22"]')
    vid = ok(srv, "one.vm.allocate", VM.format(name="sgvm")
             + f'NIC=[NETWORK_ID="1",SECURITY_GROUPS="{sg}"]', True)
    ok(srv, "one.secgroup.update", sg, 'RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="443"]', 0)
    assert "<RANGE><![CDATA[22]]></RANGE>" in ok(srv, "one.vm.info", vid)
    ok(srv, "one.secgroup.commit", sg, False)
    body = ok(srv, "one.vm.info", vid)
    assert "<RANGE><![CDATA[443]]></RANGE>" in body and "<![CDATA[22]]>" not in body
    assert f"<UPDATED_VMS><ID>{vid}</ID></UPDATED_VMS>" in ok(srv, "one.secgroup.info", sg)
    ok(srv, "one.vm.action", "terminate-hard", vid)
    assert "<UPDATED_VMS></UPDATED_VMS>" in ok(srv, "one.secgroup.info", sg)
    ok(srv, "one.secgroup.delete", sg)


def test_user_networks_and_reservations(srv: Server, scenario: dict[str, Any],
                                        tmp_path: Path) -> None:
    """A user may not create networks, but may reserve addresses of one he may USE; the
    reservation is his, and its leases are his VMs'. Others do not see his leases. (Members
    of a group may USE every network of the default VDC's clusters: this user's group has
    that rule taken away.)"""
    gid = ok(srv, "one.group.allocate", "netgroup")
    for rule_id, text in re.findall(r"<ACL><ID>(\d+)</ID>.*?<STRING>(.*?)</STRING>",
                                    ok(srv, "one.acl.info")):
        if text.startswith(f"@{gid} ") and "NET" in text:
            ok(srv, "one.acl.delrule", int(rule_id))
    ok(srv, "one.acl.addrule", f"{0x200000000 | gid:x}", "1400000000", "8", "400000000")
    uid = ok(srv, "one.user.allocate", "netuser", "pw", "", [gid])
    user = "netuser:pw"
    assert fails(srv, "one.vn.allocate", NET_B.replace("net-b", "u"), -1,
                 session=user)[2] == AUTHORIZATION
    reply = fails(srv, "one.vm.allocate", VM.format(name="u") + 'NIC=[NETWORK_ID="1"]', True,
                  session=user)
    assert reply[1] == (f"[one.vm.allocate] User [{uid}] : Not authorized to perform USE NET "
                        "[1].") and reply[2] == AUTHORIZATION
    ok(srv, "one.vn.chmod", 1, -1, -1, -1, -1, -1, -1, 1, -1, -1)
    rid = ok(srv, "one.vn.reserve", 1, 'SIZE=2\nNAME="mine"', session=user)
    body = ok(srv, "one.vn.info", rid, session=user)
    assert f"<UID>{uid}</UID>" in body and "<PARENT_NETWORK_ID>1</PARENT_NETWORK_ID>" in body
    ok(srv, "one.vn.update", rid, 'DESCRIPTION="my part"', 0, session=user)
    body = ok(srv, "one.vn.info", rid, session=user)  # the restricted ones kept, as in oned
    assert "<DESCRIPTION><![CDATA[my part]]></DESCRIPTION>" in body
    assert "<TEMPLATE><BRIDGE><![CDATA[br1]]></BRIDGE>" in body
    assert "<VN_MAD><![CDATA[dummy]]></VN_MAD></TEMPLATE>" in body
    reply = fails(srv, "one.vn.update", rid, 'VN_MAD="bridge"', 1, session=user)
    assert reply[:3] == [False, "[one.vn.update] Cannot update template. Tried to change "
                                "restricted attribute: VN_MAD", INTERNAL]
    vid = ok(srv, "one.vm.allocate", VM.format(name="u") + 'NIC=[NETWORK="mine"]', True,
             session=user)
    nic = nic_of(ok(srv, "one.vm.info", vid))
    assert nic["PARENT_NETWORK_ID"] == "1" and nic["NETWORK_ID"] == str(rid)
    parent = ok(srv, "one.vn.info", 1)
    assert parent.count(f"<VNET><![CDATA[{rid}]]></VNET>") == 2
    # The reservation is not owned by the caller of info: its leases are hidden from others.
    ok(srv, "one.user.allocate", "other", "pw", "", [gid])
    hidden = ok(srv, "one.vn.info", 1, session="other:pw")
    assert f"<VNET><![CDATA[{rid}]]></VNET>" not in hidden
    assert "<USED_LEASES>" in hidden
    assert fails(srv, "one.vn.delete", rid, session=user)[2] == ACTION  # a VM's lease in it
    ok(srv, "one.vm.action", "terminate-hard", vid)
    ok(srv, "one.vn.delete", rid, session=user)
    assert f"<VNET><![CDATA[{rid}]]></VNET>" not in ok(srv, "one.vn.info", 1)
    ok(srv, "one.vn.chmod", 1, -1, -1, -1, -1, -1, -1, 0, -1, -1)


@pytest.mark.parametrize("method,params,message", [
    ("one.vn.hold", (0, "X=1"), "Empty lease description."),
    ("one.vn.hold", (0, "LEASES=[AR_ID=0]"), "Missing MAC, IP or IP6."),
    ("one.vn.hold", (0, 'LEASES=[IP="10.213.1.10",MAC="02:00:0a:d5:01:0a"]'),
     "Only one attribute MAC, IP or IP6 can be set."),
    ("one.vn.hold", (0, 'LEASES=[IP="10.213.1.10"]'),
     "Address is not part of the address range or in use."),
    ("one.vn.hold", (0, 'LEASES=[IP="192.0.2.1"]'),
     "Address is not part of the address range or in use."),
    ("one.vn.reserve", (0, "SIZE=0"), "Reservation SIZE must be a greater than 0"),
    ("one.vn.reserve", (0, "SIZE=1"), "NAME for reservation has to be set"),
    ("one.vn.reserve", (3, 'SIZE=1\nNAME="r2"'), "Cannot reserve addresses from a reserved VNET"),
    ("one.vn.reserve", (0, 'SIZE=1\nNAME="r3"\nIP="10.213.1.30"'),
     "AR_ID must be specified for IP/MAC based reservations"),
    ("one.vn.reserve", (0, 'SIZE=1\nNETWORK_ID=1'),
     "Cannot add reservations to a non-reservation VNET"),
    ("one.vn.recover", (0, 7), "Wrong recovery operation code"),
    ("one.vn.recover", (0, 0), "Could not perform 'recover failure' on VN 0, wrong state READY."),
])
def test_refusals_change_nothing(srv: Server, scenario: dict[str, Any], method: str,
                                 params: tuple[Any, ...], message: str) -> None:
    before = ok(srv, "one.vnpool.info", -2, -1, -1), ok(srv, "one.vn.info", 0)
    reply = fails(srv, method, *params)
    assert reply[1] == f"[{method}] {message}"
    assert (ok(srv, "one.vnpool.info", -2, -1, -1), ok(srv, "one.vn.info", 0)) == before
