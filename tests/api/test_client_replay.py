"""Replays of what real clients send (reference/clients.md): the Ruby CLI 7.4.0 call trace and
goca's calls, with their exact arities, and the shape of every answer as the clients read it.
Byte-level comparisons with oned 7.4.0's replies (recorded in tests/fixtures/) use a private
server whose state is known; everything else runs on the shared server and creates its own
objects."""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ROOT, Server, backends, start_server, stop_server
from lxml import etree

# oned's bodies, line by line; the cross-check with the reference compares them to the originals.
ONED_REPLIES = ROOT / "tests" / "fixtures" / "oned-7.4.0-replies.json"
TMPL = 'NAME="{name}"\nCPU=0.1\nMEMORY=32\n'


def ok(reply: list) -> Any:
    """``[true, value, 0]``: goca wants idx1 an int or a string, pyone a non-empty string."""
    assert len(reply) == 3, reply
    assert reply[0] is True and reply[2] == 0, reply
    value = reply[1]
    assert type(value) in (int, str), reply
    assert value != "", reply
    return value


def failed(reply: list, method: str, code: int, resp_id: int | None = None) -> str:
    """oned's five-element failure: ``[false, "[method] msg", code, resp_id, -1]``."""
    assert len(reply) == 5, reply
    assert reply[0] is False, reply
    assert type(reply[1]) is str and reply[1].startswith(f"[{method}] "), reply
    assert reply[2] == code, reply
    assert type(reply[3]) is int and type(reply[4]) is int and reply[4] == -1, reply
    if resp_id is not None:
        assert reply[3] == resp_id, reply
    return reply[1]


def ids_of(xml: str, tag: str = "VM") -> list[int]:
    root = etree.fromstring(xml.encode())
    return [int(e.findtext("ID")) for e in root.findall(tag)]


def state_of(xml: str) -> int:
    return int(re.search(r"<STATE>(\d+)</STATE>", xml).group(1))


def ruby_body(method: str, *params: object) -> bytes:
    """A methodCall the way ruby-xmlrpc writes it (compact, ``<i4>`` ints)."""
    parts = []
    for p in params:
        if isinstance(p, bool):
            parts.append(f"<boolean>{int(p)}</boolean>")
        elif isinstance(p, int):
            parts.append(f"<i4>{p}</i4>")
        else:
            parts.append(f"<string>{p}</string>")
    inner = "".join(f"<param><value>{v}</value></param>" for v in parts)
    return (f'<?xml version="1.0" ?><methodCall><methodName>{method}</methodName>'
            f"<params>{inner}</params></methodCall>\n").encode()


def post(server: Server, body: bytes) -> tuple[http.client.HTTPResponse, bytes]:
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("POST", url.path, body, {"Content-Type": "text/xml; charset=utf-8",
                                              "Accept-Encoding": "identity"})
        resp = conn.getresponse()
        return resp, resp.read()
    finally:
        conn.close()


def oned_bytes(name: str) -> bytes:
    """oned 7.4.0's whole HTTP body for ``name``: its lines, each ended by CRLF."""
    lines = json.loads(ONED_REPLIES.read_text())["replies"][name]
    return "".join(line + "\r\n" for line in lines).encode()


@pytest.fixture(scope="module", params=backends())
def fresh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Server]:
    """A private server, used first by the tests that need an empty database."""
    srv = start_server(tmp_path_factory.mktemp(f"replay-{request.param}"), request.param)
    yield srv
    stop_server(srv)


# ------------------------------------------------------------------ bytes against oned's

class TestBytes:
    """Run in file order on ``fresh``: empty pools first, then the first host and VM."""

    def test_empty_pools(self, fresh: Server) -> None:
        for method, params, name in (
            ("one.vmpool.info", (-2, -1, -1, -1, ""), "vmpool_info_empty.rpc.xml"),
            ("one.hostpool.info", (), "hostpool_info_empty.rpc.xml"),
        ):
            resp, body = post(fresh, ruby_body(method, fresh.session, *params))
            assert resp.status == 200
            assert body == oned_bytes(name)

    def test_version(self, fresh: Server) -> None:
        resp, body = post(fresh, ruby_body("one.system.version", fresh.session))
        assert body == oned_bytes("system_version.rpc.xml")
        assert resp.getheader("Content-Type") == "text/xml; charset=utf-8"
        assert int(resp.getheader("Content-Length")) == len(body)

    def test_first_host_and_vm(self, fresh: Server) -> None:
        _, body = post(fresh, ruby_body("one.host.allocate", fresh.session, "h1", "dummy",
                                        "dummy", -1))
        assert body == oned_bytes("host_allocate.rpc.xml")
        _, body = post(fresh, ruby_body("one.host.allocate", fresh.session, "h1", "dummy",
                                        "dummy", -1))
        assert body == oned_bytes("host_allocate_dup.rpc.xml")
        for hold, name in ((False, "vm_allocate.rpc.xml"), (True, "vm_allocate_hold.rpc.xml")):
            _, body = post(fresh, ruby_body("one.vm.allocate", fresh.session,
                                            'NAME="v"\nCPU=1\nMEMORY=128\n', hold))
            assert body == oned_bytes(name)

    def test_failures(self, fresh: Server) -> None:
        for method, params, name in (
            ("one.vm.info", (fresh.session, 99999), "vm_info_missing.rpc.xml"),
            ("one.vm.action", (fresh.session, "nosuchaction", 0), "vm_action_bad.rpc.xml"),
            ("one.vm.info", ("oneadmin:wrong", 0), "vm_info_badauth.rpc.xml"),
        ):
            _, body = post(fresh, ruby_body(method, *params))
            assert body == oned_bytes(name), body
            # CRLF line ends and the i8 replication index, like xmlrpc-c.
            assert b"\r\n<value><i8>-1</i8></value>\r\n" in body
            assert body.count(b"\r\n") == body.count(b"\n")

    def test_bad_template_failure_shape(self, fresh: Server) -> None:
        """oned's parse message carries a garbage line number; compare all but the message."""
        _, body = post(fresh, ruby_body("one.vm.allocate", fresh.session, "CPU="))
        oned = oned_bytes("vm_allocate_bad_template.rpc.xml")
        msg = re.compile(rb"<string>.*</string>")
        assert msg.sub(b"", body) == msg.sub(b"", oned)
        assert b"[one.vm.allocate] Parse error: syntax error, unexpected $end" in body


# ------------------------------------------------------------------ pagination and order

@pytest.fixture(scope="class")
def vms(fresh: Server) -> list[int]:
    """Twelve held VMs made once for TestPagination; all VM ids of the server, oldest first."""
    before = ids_of(ok(fresh.call("one.vmpool.info", -2, -1, -1, -2)))
    made = [ok(fresh.call("one.vm.allocate", TMPL.format(name=f"p{i}"), True))
            for i in range(12)]
    return sorted(before + made)


class TestPagination:
    """Pools are listed newest first; ``end < -1`` pages (offset, size), else an id range."""

    def test_whole_pool_newest_first(self, fresh: Server, vms: list[int]) -> None:
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, -1, -1, -2))) == vms[::-1]

    def test_pages(self, fresh: Server, vms: list[int]) -> None:
        newest = vms[::-1]
        # The Ruby CLI on a TTY: one.vmpool.info(-2, offset, -page_size, -1, "").
        seen: list[int] = []
        offset = 0
        while True:
            page = ids_of(ok(fresh.call("one.vmpool.info", -2, offset, -5, -1, "")))
            seen += page
            offset += 5
            if len(page) < 5:
                break
        assert seen == [i for i in newest]
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, 3, -4, -2))) == newest[3:7]
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, 1000, -4, -2))) == []

    def test_id_ranges(self, fresh: Server, vms: list[int]) -> None:
        lo, hi = vms[2], vms[6]
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, lo, hi, -2))) == [
            i for i in vms[::-1] if lo <= i <= hi]
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, hi, -1, -2))) == [
            i for i in vms[::-1] if i >= hi]
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, -1, lo, -2))) == [
            i for i in vms[::-1] if i <= lo]
        assert ids_of(ok(fresh.call("one.vmpool.info", -2, hi, lo, -2))) == []

    def test_extended_and_templates_page_alike(self, fresh: Server, vms: list[int]) -> None:
        assert ids_of(ok(fresh.call("one.vmpool.infoextended", -2, 0, -3, -2))) == vms[::-1][:3]
        made = [ok(fresh.call("one.template.allocate", TMPL.format(name=f"pt{i}")))
                for i in range(4)]
        page = ids_of(ok(fresh.call("one.templatepool.info", -2, 0, -2)), "VMTEMPLATE")
        assert page == made[::-1][:2]

    def test_users_newest_first(self, fresh: Server) -> None:
        uid = ok(fresh.call("one.user.allocate", "replay-u", "pw", "", []))
        users = ids_of(ok(fresh.call("one.userpool.info")), "USER")
        assert users == sorted(users, reverse=True) and users[0] == uid and users[-1] == 0


# ------------------------------------------------------------------ the Ruby CLI trace

def test_ruby_onehost(server: Server) -> None:
    hid = ok(server.call("one.host.allocate", "replay-n", "kvm", "kvm", -1))
    assert type(hid) is int
    assert hid in ids_of(ok(server.call("one.hostpool.info")), "HOST")
    xml = ok(server.call("one.host.info", hid, False))
    assert "<VM_MAD><![CDATA[kvm]]></VM_MAD>" in xml
    assert ok(server.call("one.clusterpool.info")).startswith("<CLUSTER_POOL>")
    assert ok(server.call("one.vmpool.info", -2, -1, -1, -1, "")).startswith("<VM_POOL>")
    for status, state in ((1, 4), (2, 8), (0, None)):
        assert ok(server.call("one.host.status", hid, status)) == hid
        now = state_of(ok(server.call("one.host.info", hid, False)))
        if state is None:
            assert now not in (4, 8)
        else:
            assert now == state
    assert ok(server.call("one.host.delete", hid)) == hid
    failed(server.call("one.host.info", hid, False), "one.host.info", 1024, hid)


def test_ruby_onevm(server: Server) -> None:
    hid = ok(server.call("one.host.allocate", "replay-vmh1", "dummy", "dummy", -1))
    hid2 = ok(server.call("one.host.allocate", "replay-vmh2", "dummy", "dummy", -1))
    # Released VMs are placed at once on the shared server: this one matches no host (the
    # trace deploys it by hand).
    vid = ok(server.call("one.vm.allocate",
                         'NAME="vm1"\nCPU=1\nMEMORY=128\nSCHED_REQUIREMENTS="ID = -1"\n', True))
    assert state_of(ok(server.call("one.vm.info", vid, False))) == 2  # HOLD
    ok(server.call("one.clusterpool.info"))
    assert vid in ids_of(ok(server.call("one.vmpool.info", -2, -1, -1, -1, "")))
    assert ok(server.call("one.vm.action", "release", vid)) == vid
    assert ok(server.call("one.vm.action", "hold", vid)) == vid
    assert ok(server.call("one.vm.deploy", vid, hid, False, -1, "")) == vid
    server.wait_vm(vid, 3, 3)
    xml = ok(server.call("one.vm.info", vid, False))
    cid = int(re.search(r"<CID>(\d+)</CID>", xml).group(1))
    assert ok(server.call("one.cluster.info", cid, False)).startswith("<CLUSTER>")
    assert ok(server.call("one.vm.rename", vid, "x")) == vid
    assert ok(server.call("one.vm.update", vid, 'DESCRIPTION="d"\n', 0)) == vid
    assert ok(server.call("one.vm.chown", vid, 0, 0)) == vid
    assert ok(server.call("one.vm.chmod", vid, 1, 1, 0, 1, 1, 0, 0, 0, 0)) == vid
    xml = ok(server.call("one.vm.info", vid, False))
    assert "<NAME>x</NAME>" in xml and "<GROUP_U>1</GROUP_U><GROUP_M>1</GROUP_M>" in xml
    assert "<DESCRIPTION><![CDATA[d]]></DESCRIPTION>" in xml
    assert ok(server.call("one.vm.migrate", vid, hid2, False, False, -1, 0)) == vid
    server.wait_vm(vid, 3, 3)
    assert f"<HID>{hid2}</HID>" in ok(server.call("one.vm.info", vid, False))
    assert ok(server.call("one.vm.action", "poweroff", vid)) == vid
    server.wait_vm(vid, 8)
    assert ok(server.call("one.vm.action", "resume", vid)) == vid
    server.wait_vm(vid, 3, 3)
    assert ok(server.call("one.vm.action", "terminate", vid)) == vid
    server.wait_vm(vid, 6)
    other = ok(server.call("one.vm.allocate", 'NAME="vm2"\nCPU=1\nMEMORY=128\n', True))
    assert ok(server.call("one.vm.action", "terminate-hard", other)) == other
    server.wait_vm(other, 6)
    third = ok(server.call("one.vm.allocate", 'NAME="vm3"\nCPU=1\nMEMORY=128\n', True))
    assert ok(server.call("one.vm.recover", third, 3)) == third
    server.wait_vm(third, 6)


def test_ruby_onetemplate(server: Server) -> None:
    tid = ok(server.call("one.template.allocate", 'NAME="tpl1"\nCPU=1\nMEMORY=128\n'))
    assert tid in ids_of(ok(server.call("one.templatepool.info", -2, -1, -1)), "VMTEMPLATE")
    assert "<NAME>tpl1</NAME>" in ok(server.call("one.template.info", tid, False, False))
    vid = ok(server.call("one.template.instantiate", tid, "", False, "", False))
    xml = ok(server.call("one.vm.info", vid, False))
    assert f"<NAME>tpl1-{vid}</NAME>" in xml
    assert f"<TEMPLATE_ID><![CDATA[{tid}]]></TEMPLATE_ID>" in xml
    # The scheduler may be deploying it (no terminate in PROLOG, as in oned): recover-delete.
    ok(server.call("one.vm.recover", vid, 3))
    held = ok(server.call("one.template.instantiate", tid, "named", True, 'MEMORY="64"\n',
                          False))
    xml = ok(server.call("one.vm.info", held))
    assert "<NAME>named</NAME>" in xml and "<MEMORY><![CDATA[64]]></MEMORY>" in xml
    assert state_of(xml) == 2


def test_ruby_failures(server: Server) -> None:
    failed(server.call("one.vm.info", 99999, False), "one.vm.info", 1024, 99999)
    failed(server.call("one.host.info", 99999, False), "one.host.info", 1024, 99999)
    failed(server.call("one.template.info", 99999, False, False), "one.template.info",
           1024, 99999)
    vid = ok(server.call("one.vm.allocate", TMPL.format(name="rf"), True))
    msg = failed(server.call("one.vm.action", "poweroff", vid), "one.vm.action", 2048, vid)
    assert "not available for state HOLD" in msg
    failed(server.call("one.vm.deploy", vid, 99999, False, -1, ""), "one.vm.deploy", 1024,
           99999)


# ------------------------------------------------------------------ goca

def test_goca_host_suite(server: Server) -> None:
    hid = ok(server.call("one.host.allocate", "replay-goca", "dummy", "dummy", -1))
    ok(server.call("one.host.update", hid, 'DESCRIPTION="goca test"', 1))
    xml = ok(server.call("one.host.info", hid, False))
    assert "<DESCRIPTION><![CDATA[goca test]]></DESCRIPTION>" in xml
    assert "<VM_MAD><![CDATA[dummy]]></VM_MAD>" in xml
    ok(server.call("one.host.rename", hid, "replay-goca2"))
    assert "<NAME>replay-goca2</NAME>" in ok(server.call("one.host.info", hid, False))
    ok(server.call("one.host.status", hid, 2))
    assert state_of(ok(server.call("one.host.info", hid, False))) == 8  # OFFLINE
    ok(server.call("one.host.status", hid, 0))
    deadline = time.time() + 20
    while state_of(ok(server.call("one.host.info", hid, False))) != 2 and time.time() < deadline:
        time.sleep(0.1)
    assert ok(server.call("one.host.monitoring", hid)).startswith("<MONITORING_DATA>")
    for seconds in (-1, 0, 3600):
        xml = ok(server.call("one.hostpool.monitoring", seconds))
        assert etree.fromstring(xml.encode()).tag == "MONITORING_DATA"
    ok(server.call("one.host.delete", hid))


def test_goca_system_suite(server: Server) -> None:
    assert ok(server.call("one.system.version")) == "7.4.0"
    assert ok(server.call("one.system.config")).startswith("<OPENNEBULA_CONFIGURATION>")


def test_goca_vm_hold_release(server: Server) -> None:
    # Released VMs are placed at once on the shared server: this one matches no host.
    tmpl = TMPL.format(name="goca-vm") + '\nSCHED_REQUIREMENTS="ID = -1"\n'
    vid = ok(server.call("one.vm.allocate", tmpl, True))
    ok(server.call("one.vm.action", "release", vid))
    ok(server.call("one.vm.action", "hold", vid))
    xml = ok(server.call("one.vmpool.infoextended", -2, vid, vid, -1, ""))
    assert ids_of(xml) == [vid]
    xml = ok(server.call("one.vmpool.infoset", str(vid), True))
    assert ids_of(xml) == [vid]
    ok(server.call("one.vm.action", "terminate-hard", vid))


def test_pyone_reads_every_shape(server: Server) -> None:
    """pyone parses what it is given through its 7.3.80 bindings."""
    one = server.pyone()
    vid = one.vm.allocate({"NAME": "py", "CPU": "0.1", "MEMORY": "32"}, True)
    assert one.vm.info(vid).NAME == "py"
    assert any(v.ID == vid for v in one.vmpool.info(-2, -1, -1, -1).VM)
    assert one.userpool.info().USER
    one.vm.action("terminate-hard", vid)


def test_http_side(server: Server) -> None:
    """GET is refused the way xmlrpc-c refuses it; POST to / works like /RPC2."""
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request("GET", "/RPC2")
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 405 and b"POST is the only HTTP method" in body
    root = xmlrpc.client.ServerProxy(f"http://{url.hostname}:{url.port}/")
    assert root.one.system.version(server.session)[1] == "7.4.0"

