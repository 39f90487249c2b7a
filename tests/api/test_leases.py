"""The lease ledger through the API: a lease per NIC at one.vm.allocate and
one.template.instantiate (NETWORK, NETWORK_ID, NETWORK_UNAME, a chosen IP or MAC), given back
when the VM is DONE and handed out again afterwards, never twice, also when many clients
allocate at once through several API workers; refusals (no free address, a held or taken
address, a network the caller may not USE) keep nothing: no VM, no lease, no change to the
network or its security groups. On SQLite and PostgreSQL (the session's server)."""

from __future__ import annotations

import re
import threading
import uuid
import xmlrpc.client
from collections import Counter
from typing import Any

import pytest

from tests.conftest import Server

INTERNAL, AUTHORIZATION = 0x2000, 0x200
VM = 'NAME="{name}"\nCPU=0.1\nMEMORY=16\nSCHED_REQUIREMENTS="ID = -1"\n'


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(server: Server, method: str, *params: Any, session: str | None = None) -> Any:
    reply = server.call(method, *params, session=session)
    assert reply[0] is True, (method, params, reply)
    return reply[1]


def network(server: Server, size: int, first: str = "10.213.40.10") -> tuple[int, str]:
    name = uniq("lnet")
    oid = ok(server, "one.vn.allocate", f'NAME="{name}"\nVN_MAD="dummy"\nBRIDGE="bl"\n'
             f'AR=[TYPE="IP4",IP="{first}",SIZE="{size}"]', -1)
    return oid, name


def vm_ips(server: Server, vid: int) -> list[str]:
    body = ok(server, "one.vm.info", vid)
    return re.findall(r"<NIC(?:_ALIAS)?>.*?<IP><!\[CDATA\[(.*?)\]\]></IP>", body)


def leases(server: Server, vn: int) -> list[tuple[str, str]]:
    """(IP, owner) of every lease vn.info lists."""
    body = ok(server, "one.vn.info", vn)
    return re.findall(r"<LEASE><IP><!\[CDATA\[(.*?)\]\]></IP><MAC>.*?</MAC>"
                      r"<(?:VM|VNET)><!\[CDATA\[(.*?)\]\]>", body)


def used(server: Server, vn: int) -> int:
    m = re.search(r"<USED_LEASES>(\d+)</USED_LEASES>", ok(server, "one.vn.info", vn))
    assert m
    return int(m.group(1))


def vm_count(server: Server) -> int:
    return len(re.findall(r"<VM><ID>", ok(server, "one.vmpool.info", -2, -1, -1, -1)))


def done(server: Server, vid: int) -> None:
    ok(server, "one.vm.action", "terminate-hard", vid)
    server.wait_vm(vid, 6)


def test_a_lease_per_nic_given_back_at_done_and_reused(server: Server) -> None:
    vn, name = network(server, 2)
    a = ok(server, "one.vm.allocate", VM.format(name="a") + f'NIC=[NETWORK="{name}"]', True)
    b = ok(server, "one.vm.allocate", VM.format(name="b") + f'NIC=[NETWORK_ID="{vn}"]', True)
    assert vm_ips(server, a) == ["10.213.40.10"] and vm_ips(server, b) == ["10.213.40.11"]
    before = (ok(server, "one.vn.info", vn), ok(server, "one.secgroup.info", 0), vm_count(server))
    reply = server.call("one.vm.allocate", VM.format(name="c") + f'NIC=[NETWORK_ID="{vn}"]',
                        True)
    assert reply[:3] == [False, f"[one.vm.allocate] Cannot get IP/MAC lease from virtual "
                                f"network {vn}.", INTERNAL]
    after = (ok(server, "one.vn.info", vn), ok(server, "one.secgroup.info", 0), vm_count(server))
    assert after == before  # nothing kept: no VM, no lease, no security group change
    done(server, a)
    assert leases(server, vn) == [("10.213.40.11", str(b))]
    assert f"<ID>{a}</ID>" not in re.search(r"<UPDATED_VMS>.*?</UPDATED_VMS>", ok(
        server, "one.secgroup.info", 0)).group(0)
    c = ok(server, "one.vm.allocate", VM.format(name="c") + f'NIC=[NETWORK_ID="{vn}"]', True)
    assert vm_ips(server, c) == ["10.213.40.10"]  # the freed address, handed out again
    for vid in (b, c):
        done(server, vid)
    assert used(server, vn) == 0
    ok(server, "one.vn.delete", vn)


def test_chosen_addresses_and_refusals(server: Server) -> None:
    vn, name = network(server, 4, "10.213.41.10")
    vid = ok(server, "one.vm.allocate", VM.format(name="ip")
             + f'NIC=[NETWORK_ID="{vn}",IP="10.213.41.12"]', True)
    assert vm_ips(server, vid) == ["10.213.41.12"]
    mac = ok(server, "one.vm.allocate", VM.format(name="mac")
             + f'NIC=[NETWORK_ID="{vn}",MAC="02:00:0a:d5:29:0d"]', True)
    assert vm_ips(server, mac) == ["10.213.41.13"]
    ok(server, "one.vn.hold", vn, 'LEASES=[IP="10.213.41.10"]')
    before = ok(server, "one.vn.info", vn), vm_count(server)
    for nic in ('IP="10.213.41.12"', 'IP="10.213.41.10"', 'IP="192.0.2.7"',
                'MAC="02:00:0a:d5:29:0c"', 'IP="10.213.41.11",MAC="02:00:0a:d5:29:0b"'):
        reply = server.call("one.vm.allocate", VM.format(name="no")
                            + f'NIC=[NETWORK_ID="{vn}",{nic}]', True)
        assert reply[:3] == [False, f"[one.vm.allocate] Cannot get IP/MAC lease from virtual "
                                    f"network {vn}.", INTERNAL], nic
    # The second NIC fails: the first one's lease is not kept either.
    reply = server.call("one.vm.allocate", VM.format(name="two") + f'NIC=[NETWORK_ID="{vn}"]\n'
                        'NIC=[NETWORK_ID="999999"]', True)
    assert reply[1] == "[one.vm.allocate] Virtual network with ID: 999999 does not exist"
    reply = server.call("one.vm.allocate", VM.format(name="un")
                        + f'NIC=[NETWORK="{name}",NETWORK_UNAME="nobody-{uuid.uuid4().hex}"]',
                        True)
    assert reply[1] == "[one.vm.allocate] User set in NETWORK_UNAME does not exist"
    reply = server.call("one.vm.allocate", VM.format(name="alias")
                        + f'NIC=[NETWORK_ID="{vn}"]\nNIC_ALIAS=[NETWORK_ID="{vn}",PARENT="NICX"]',
                        True)
    assert reply[1] == "[one.vm.allocate] NIC named NICX not found for alias"
    assert (ok(server, "one.vn.info", vn), vm_count(server)) == before
    reply = server.call("one.vn.delete", vn)
    assert reply[1].endswith("Can not remove a virtual network with leases in use")
    reply = server.call("one.vn.rm_ar", vn, 0)
    assert reply[1] == "[one.vn.rm_ar] Address Range has leases in use"
    owner = ok(server, "one.vm.allocate", VM.format(name="uname")
               + f'NIC=[NETWORK="{name}",NETWORK_UNAME="oneadmin"]', True)
    assert vm_ips(server, owner) == ["10.213.41.11"]
    for v in (vid, mac, owner):
        done(server, v)
    ok(server, "one.vn.release", vn, 'LEASES=[IP="10.213.41.10"]')
    assert used(server, vn) == 0
    ok(server, "one.vn.delete", vn)


def test_instantiate_takes_leases_too(server: Server) -> None:
    vn, name = network(server, 1, "10.213.42.10")
    tid = ok(server, "one.template.allocate", VM.format(name=uniq("t"))
             + f'NIC=[NETWORK="{name}"]')
    vid = ok(server, "one.template.instantiate", tid, "", True, "", False)
    assert vm_ips(server, vid) == ["10.213.42.10"]
    reply = server.call("one.template.instantiate", tid, "", True, "", False)
    assert reply[1] == f"[one.template.instantiate] Cannot get IP/MAC lease from virtual " \
                       f"network {vn}."
    done(server, vid)
    ok(server, "one.template.delete", tid, False)
    ok(server, "one.vn.delete", vn)


def test_a_network_the_caller_may_not_use(server: Server) -> None:
    vn, _ = network(server, 2, "10.213.43.10")
    gid = ok(server, "one.group.allocate", uniq("lg"))
    for rule_id, text in re.findall(r"<ACL><ID>(\d+)</ID>.*?<STRING>(.*?)</STRING>",
                                    ok(server, "one.acl.info")):
        if text.startswith(f"@{gid} ") and "NET" in text:  # the default VDC's rule
            ok(server, "one.acl.delrule", int(rule_id))
    ok(server, "one.acl.addrule", f"{0x200000000 | gid:x}", "1400000000", "8", "400000000")
    name = uniq("lu")
    uid = ok(server, "one.user.allocate", name, "pw", "", [gid])
    before = ok(server, "one.vn.info", vn), vm_count(server)
    reply = server.call("one.vm.allocate", VM.format(name="x") + f'NIC=[NETWORK_ID="{vn}"]',
                        True, session=f"{name}:pw")
    assert reply[:3] == [False, f"[one.vm.allocate] User [{uid}] : Not authorized to perform "
                                f"USE NET [{vn}].", AUTHORIZATION]
    assert (ok(server, "one.vn.info", vn), vm_count(server)) == before
    ok(server, "one.vn.delete", vn)


def test_leases_are_never_handed_out_twice_under_concurrency(server: Server) -> None:
    """8 clients allocate 40 VMs with two NICs each on a network of 50 addresses, through
    the server's API workers: exactly 25 VMs get their two leases, all 50 addresses are
    distinct, and the network counts exactly them; the rest are refused and leave nothing."""
    size, clients, per_client = 50, 8, 5
    vn, _ = network(server, size, "10.213.44.1")
    results: list[tuple[bool, Any]] = []
    lock = threading.Lock()

    def client() -> None:
        proxy = xmlrpc.client.ServerProxy(server.url)
        for _ in range(per_client):
            reply = proxy.one.vm.allocate(server.session, VM.format(name="cc")
                                          + f'NIC=[NETWORK_ID="{vn}"]\n'
                                            f'NIC=[NETWORK_ID="{vn}"]', True)
            with lock:
                results.append((reply[0], reply[1]))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == clients * per_client
    made = [vid for success, vid in results if success]
    refused = [msg for success, msg in results if not success]
    assert len(made) == size // 2
    assert set(refused) == {f"[one.vm.allocate] Cannot get IP/MAC lease from virtual network "
                            f"{vn}."}
    ips = [ip for vid in made for ip in vm_ips(server, vid)]
    assert len(ips) == size and len(set(ips)) == size
    held = leases(server, vn)
    assert sorted(ip for ip, _ in held) == sorted(ips)
    assert Counter(owner for _, owner in held) == Counter({str(v): 2 for v in made})
    assert used(server, vn) == size
    for vid in made:
        ok(server, "one.vm.action", "terminate-hard", vid)
    for vid in made:
        server.wait_vm(vid, 6)
    assert used(server, vn) == 0
    ok(server, "one.vn.delete", vn)


@pytest.mark.parametrize("alias", [False, True])
def test_nic_alias_leases(server: Server, alias: bool) -> None:
    vn, name = network(server, 3, "10.213.45.10")
    extra = f'NIC_ALIAS=[NETWORK="{name}",PARENT="NIC0"]' if alias else ""
    vid = ok(server, "one.vm.allocate", VM.format(name="al") + f'NIC=[NETWORK="{name}"]\n'
             + extra, True)
    assert vm_ips(server, vid) == (["10.213.45.10", "10.213.45.11"] if alias
                                   else ["10.213.45.10"])
    done(server, vid)
    assert used(server, vn) == 0
    ok(server, "one.vn.delete", vn)


def test_nic_hotplug_when_off_and_when_the_driver_fails(server: Server) -> None:
    """A POWEROFF VM takes and gives back a NIC at once; on a RUNNING VM whose driver fails
    the attach, the NIC and its lease go again and the VM runs on with the error."""
    vn, name = network(server, 4, "10.213.46.10")
    hid = ok(server, "one.host.allocate", uniq("hp"), "dummy", "dummy", -1)
    vid = ok(server, "one.vm.allocate", VM.format(name="hp"), False)
    ok(server, "one.vm.deploy", vid, hid, False, -1, "")
    server.wait_vm(vid, 3, 3)
    ok(server, "one.host.update", hid, 'DUMMY_FAIL="attach_nic"', 1)
    ok(server, "one.vm.attachnic", vid, f'NIC=[NETWORK="{name}"]')
    server.wait_vm(vid, 3, 3)
    body = ok(server, "one.vm.info", vid)
    assert "<NIC>" not in body and "Error attaching new NIC" in body
    assert used(server, vn) == 0
    ok(server, "one.host.update", hid, 'DUMMY_FAIL=""', 1)
    ok(server, "one.vm.action", "poweroff-hard", vid)
    server.wait_vm(vid, 8)
    ok(server, "one.vm.attachnic", vid, f'NIC=[NETWORK="{name}",IP="10.213.46.12"]')
    assert vm_ips(server, vid) == ["10.213.46.12"] and used(server, vn) == 1
    reply = server.call("one.vm.attachnic", vid, f'NIC=[NETWORK="{name}",IP="10.213.46.12"]')
    assert reply[1] == f"[one.vm.attachnic] Cannot get IP/MAC lease from virtual network {vn}."
    assert vm_ips(server, vid) == ["10.213.46.12"]
    ok(server, "one.vm.detachnic", vid, 0)
    assert vm_ips(server, vid) == [] and used(server, vn) == 0
    ok(server, "one.vm.attachnic", vid, f'NIC=[NETWORK="{name}"]')
    done(server, vid)
    assert used(server, vn) == 0
    ok(server, "one.vn.delete", vn)
