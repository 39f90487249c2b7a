"""Numbers and IDs a caller writes get oned's answer, and a VM or host whose record went bad
behind the API's back (its row written directly) never stops the scheduler from placing the
others: it is left out with the reason, in its SCHED_MESSAGE or the log. Image paths in
restricted places are refused without being looked at, so nobody can probe for files.

A private server per backend with one dummy host, so the scheduler's every pass is this
module's and its log shows what happened."""

from __future__ import annotations

import http.client
import json
import sqlite3
import urllib.parse
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, backends, start_server, stop_server, wait_for

INTERNAL, ALLOCATE = 0x2000, 0x4000
CPU_MSG = "CPU attribute must be a positive float or integer value."
MEMORY_MSG = "MEMORY attribute must be a positive integer value."
VCPU_MSG = "VCPU attribute must be a positive integer value."
ADMIN = "<value><string>oneadmin:testpass</string></value>"


@pytest.fixture(scope="module", params=backends())
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp(f"numbers-{request.param}"), request.param)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def host(srv: Server) -> int:
    one = srv.pyone()
    hid = one.host.allocate("good-host", "dummy", "dummy", -1)
    wait_for("host MONITORED", lambda: one.host.info(hid).STATE == 2)
    return hid


def server_log(server: Server) -> str:
    return (server.data_dir.parent / "server.log").read_text(errors="replace")


def rewrite(server: Server, table: str, oid: int, change: Callable[[dict[str, Any]], None]
            ) -> None:
    """Change an object's stored document directly in the database, as a broken tool or a
    hand-edited row would (no API call, so nothing is validated)."""
    if server.backend == "sqlite":
        conn: Any = sqlite3.connect(server.db_url.removeprefix("sqlite:///"), timeout=30)
        mark = "?"
    else:
        import psycopg2
        conn, mark = psycopg2.connect(server.db_url), "%s"
    try:
        with conn:
            cur = conn.cursor()
            cur.execute(f'SELECT doc FROM "{table}" WHERE oid = {mark}', (oid,))
            doc = json.loads(cur.fetchone()[0])
            change(doc)
            cur.execute(f'UPDATE "{table}" SET doc = {mark} WHERE oid = {mark}',
                        (json.dumps(doc), oid))
    finally:
        conn.close()


def set_attr(section: str, name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc[section] = [[n, value if n == name else v] for n, v in doc[section]]
    return change


def sched_message(server: Server, vid: int) -> str:
    one = server.pyone()
    return wait_for(f"SCHED_MESSAGE of VM {vid}", lambda: dict(
        one.vm.info(vid).USER_TEMPLATE or {}).get("SCHED_MESSAGE", ""))


def raw_call(server: Server, method: str, *values: str) -> list | xmlrpc.client.Fault:
    body = (f"<?xml version='1.0'?><methodCall><methodName>{method}</methodName><params>"
            + "".join(f"<param>{v}</param>" for v in (ADMIN, *values))
            + "</params></methodCall>").encode()
    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request("POST", url.path, body, {"Content-Type": "text/xml"})
        reply = conn.getresponse().read()
    finally:
        conn.close()
    try:
        return xmlrpc.client.loads(reply)[0][0]
    except xmlrpc.client.Fault as fault:
        return fault


def refused(reply: list, method: str, code: int, text: str) -> None:
    assert reply[0] is False and reply[2] == code, reply
    assert reply[1] == f"[{method}] {text}", reply


# ----------------------------------------------------------------------------- at the entry

@pytest.mark.parametrize(("template", "detail"), [
    ("CPU=nan\nMEMORY=32", CPU_MSG), ("CPU=inf\nMEMORY=32", CPU_MSG),
    ("CPU=-inf\nMEMORY=32", CPU_MSG), ("CPU=1e39\nMEMORY=32", CPU_MSG),
    ("CPU=0x10\nMEMORY=32", CPU_MSG), ("CPU=1e-50\nMEMORY=32", CPU_MSG),
    ("CPU=1_0\nMEMORY=32", CPU_MSG),
    ("CPU=\u0663\nMEMORY=32", CPU_MSG), ("CPU=1\nMEMORY=nan", MEMORY_MSG),
    ("CPU=1\nMEMORY=inf", MEMORY_MSG), ("CPU=1\nMEMORY=1e3", MEMORY_MSG),
    ("CPU=1\nMEMORY=99999999999999999999", MEMORY_MSG),
    ("CPU=1\nMEMORY=32\nVCPU=nan", VCPU_MSG), ("CPU=1\nMEMORY=32\nVCPU=inf", VCPU_MSG),
    ('CPU=1\nMEMORY=32\nDISK=[SOURCE="/x",SIZE="inf"]',
     "DISK 0: SIZE attribute must be a positive integer value."),
    ('CPU=1\nMEMORY=32\nDISK=[IMAGE="x",IMAGE_UID="abc"]',
     "DISK 0: User 0 does not own an image with name: x . Set IMAGE_UNAME or IMAGE_UID of "
     "owner in DISK."),
    ('CPU=1\nMEMORY=32\nDISK=[IMAGE="x",IMAGE_UID="99999999999999999999"]',
     "DISK 0: User 0 does not own an image with name: x . Set IMAGE_UNAME or IMAGE_UID of "
     "owner in DISK."),
    ('CPU=1\nMEMORY=32\nDISK=[IMAGE="x",IMAGE_UNAME="nobody-at-all"]',
     "DISK 0: User 0 does not own an image with name: x . Set IMAGE_UNAME or IMAGE_UID of "
     "owner in DISK."),
    ('CPU=1\nMEMORY=32\nDISK=[IMAGE_ID="99999999999999999999"]', "DISK 0: Unknown disk type "),
])
def test_bad_numbers_are_refused(srv: Server, template: str, detail: str) -> None:
    for hold in (True, False):
        refused(srv.call("one.vm.allocate", template, hold), "one.vm.allocate", ALLOCATE,
                f"Error allocating a new virtual machine. {detail}")


def test_good_numbers_as_oned_reads_them(srv: Server) -> None:
    one = srv.pyone()
    vid = one.vm.allocate('CPU=" 0.5"\nMEMORY="+64"\nVCPU=2\n'
                          'DISK=[SOURCE="/x",SIZE="1024"]', True)
    assert one.vm.info(vid).TEMPLATE["CPU"] == " 0.5"


def test_resize_reads_sizes_as_oned(srv: Server) -> None:
    one = srv.pyone()
    vid = one.vm.allocate("CPU=0.5\nMEMORY=64\nVCPU=1", True)
    # What is no number of its type reads 0 in VirtualMachineAPI::resize: left as it is.
    for text in ("CPU=nan\nMEMORY=inf\nVCPU=1e3", "CPU=0x1\nMEMORY=1.5", "VCPU=99999999999"):
        assert srv.call("one.vm.resize", vid, text, False)[:2] == [True, vid]
    tmpl = one.vm.info(vid).TEMPLATE
    assert (tmpl["CPU"], tmpl["MEMORY"], tmpl["VCPU"]) == ("0.5", "64", "1")
    for text, word, kind in (("CPU=-1", "CPU", "float or integer"),
                             ("CPU=1\nMEMORY=-1", "MEMORY", "integer"),
                             ("VCPU=-2", "VCPU", "integer")):
        refused(srv.call("one.vm.resize", vid, text, False), "one.vm.resize", INTERNAL,
                f"{word} must be a positive {kind} value.")
    assert srv.call("one.vm.resize", vid, "CPU=2\nMEMORY=128", False)[0] is True
    assert one.vm.info(vid).TEMPLATE["MEMORY"] == "128"


def test_ids_in_lists_and_arrays(srv: Server) -> None:
    one = srv.pyone()
    vid = one.vm.allocate("CPU=0.1\nMEMORY=8", True)
    for ids in ("99999999999999999999", "abc", "", ",,,", "-x", "9" * 10000):
        assert srv.call("one.vmpool.infoset", ids, False) == [True, "<VM_POOL></VM_POOL>", 0]
    # As oned's split_unique: each piece read as a number from its start, the rest ignored.
    for ids in (f"{vid}", f" {vid}", f"{vid}abc,zzz", f"99999999999999999999,{vid}",
                ",".join(map(str, range(vid, vid + 50_000)))):
        ok, body, _ = srv.call("one.vmpool.infoset", ids, False)
        assert ok and f"<ID>{vid}</ID>" in body, ids
    group = raw_call(srv, "one.user.allocate", "<value><string>u-i8</string></value>",
                     "<value><string>pw</string></value>", "<value><string></string></value>",
                     "<value><array><data><value><i8>1</i8></value></data></array></value>")
    assert isinstance(group, xmlrpc.client.Fault) and group.faultCode == -500, group
    assert "Not integer type" in group.faultString
    huge = raw_call(srv, "one.user.allocate", "<value><string>u-big</string></value>",
                    "<value><string>pw</string></value>", "<value><string></string></value>",
                    "<value><array><data><value><int>99999999999999999999</int></value>"
                    "</data></array></value>")
    assert isinstance(huge, xmlrpc.client.Fault) and huge.faultCode == -503, huge
    assert srv.call("one.user.allocate", "u-missing", "pw", "", [2**31 - 1])[:3] == [
        False, "[one.user.allocate] Error getting group [2147483647].", 0x400]


@pytest.mark.parametrize("param", ["<i8>0</i8>", "<i8>-1</i8>", "<ex:i8>0</ex:i8>"])
def test_i8_is_refused_where_oned_wants_i4(srv: Server, param: str) -> None:
    for method in ("one.vm.info", "one.host.info", "one.user.info", "one.vm.monitoring"):
        fault = raw_call(srv, method, f"<value>{param}</value>")
        assert isinstance(fault, xmlrpc.client.Fault) and fault.faultCode == -501, fault
        assert "must be a 32-bit integer, not an <i8>" in fault.faultString
    assert raw_call(srv, "one.vm.action", "<value><string>hold</string></value>",
                    f"<value>{param}</value>").faultCode == -501
    # The same value as an <i4> is an ordinary call.
    assert raw_call(srv, "one.user.info", "<value><i4>0</i4></value>")[0] is True


def test_acl_rules_read_as_oned_reads_them(srv: Server) -> None:
    user = "1" * 30  # too long for a long long: the stream leaves LLONG_MAX
    reply = srv.call("one.acl.addrule", user, "1", "1", "")
    assert reply[0] is False and reply[2] == INTERNAL, reply
    assert reply[1].startswith("[one.acl.addrule] Rule @-1 /?? USE #0 is malformed: [user] "
                               "INDIVIDUAL (#) and GROUP (@) bits are exclusive; "), reply
    refused(srv.call("one.acl.addrule", "100000000", "1000000000", "0", ""), "one.acl.addrule",
            INTERNAL, "Rule #0 VM/??  #0 is malformed: [resource] is missing one of the "
            "INDIVIDUAL, GROUP, CLUSTER or ALL bits; wrong [rights], it cannot be 0")
    refused(srv.call("one.acl.addrule", "zz", "zz", "zz", "zz"), "one.acl.addrule", INTERNAL,
            "Rule ?? /??  ?? is malformed: [user] is missing one of the INDIVIDUAL, GROUP or "
            "ALL bits; [resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL "
            "bits; [resource] type is missing; wrong [rights], it cannot be 0; [zone] is "
            "missing one of the INDIVIDUAL or ALL bits")
    # A leading 0x and anything after the number are what a C++ stream allows.
    rid = srv.call("one.acl.addrule", "0x100000002", "0x1004200000001zz", "1", "")[1]
    rules = {r.ID: r.STRING for r in srv.pyone().acl.info().ACL}
    assert rules[rid] == "#2 NET+SECGROUP/@1 USE #0"
    refused(srv.call("one.acl.addrule", "100000002", "1004200000001", "1", "100000000"),
            "one.acl.addrule", INTERNAL, "Rule #2 NET+SECGROUP/@1 USE #0 already exists")


# ----------------------------------------------------------------------------- the scheduler

@pytest.mark.parametrize(("section", "name", "value", "detail"), [
    ("template", "CPU", "nan", CPU_MSG), ("template", "CPU", "inf", CPU_MSG),
    ("template", "CPU", "-1", CPU_MSG), ("template", "MEMORY", "1e400", MEMORY_MSG),
    ("template", "MEMORY", "lots", MEMORY_MSG),
])
def test_bad_vm_row_does_not_stop_scheduling(srv: Server, host: int, section: str, name: str,
                                             value: str, detail: str) -> None:
    one = srv.pyone()
    bad = one.vm.allocate(f'NAME="bad-{name}"\nCPU=0.1\nMEMORY=16', True)
    good = one.vm.allocate('NAME="good"\nCPU=0.1\nMEMORY=16', True)
    rewrite(srv, "vm", bad, set_attr(section, name, value))
    one.vm.action("release", bad)  # the bad one first: its id comes first in the pass too
    one.vm.action("release", good)
    srv.wait_vm(good, 3, 3)
    assert sched_message(srv, bad).endswith(f" : Cannot dispatch VM: {detail}")
    assert one.vm.info(bad).STATE == 1  # PENDING, and the next passes run as well
    again = one.vm.allocate('NAME="after"\nCPU=0.1\nMEMORY=16')
    srv.wait_vm(again, 3, 3)
    assert "Traceback" not in server_log(srv)


def test_unreadable_vm_record_is_left_out(srv: Server, host: int) -> None:
    one = srv.pyone()
    bad = one.vm.allocate('NAME="no-template"\nCPU=0.1\nMEMORY=999999999')  # stays PENDING
    assert "not enough memory" in sched_message(srv, bad)
    rewrite(srv, "vm", bad, lambda doc: doc.pop("template"))
    good = one.vm.allocate('NAME="good-2"\nCPU=0.1\nMEMORY=16')
    srv.wait_vm(good, 3, 3)
    wait_for("the log to name the VM", lambda: f"VM {bad} left out of scheduling: KeyError"
             in server_log(srv))
    assert "Traceback" not in server_log(srv)


def test_vm_that_cannot_be_deployed_is_left_out(srv: Server, host: int) -> None:
    one = srv.pyone()
    # PENDING, for a host that comes only once its record is broken.
    bad = one.vm.allocate('NAME="no-history"\nCPU=0.1\nMEMORY=16\n'
                          'SCHED_REQUIREMENTS="NAME = \\"later-host\\""')
    assert "Cannot dispatch VM" in sched_message(srv, bad)
    rewrite(srv, "vm", bad, lambda doc: doc.pop("history"))
    later = one.host.allocate("later-host", "dummy", "dummy", -1)
    good = one.vm.allocate(f'NAME="good-3"\nCPU=0.1\nMEMORY=16\nSCHED_REQUIREMENTS="ID = {later}"')
    srv.wait_vm(good, 3, 3)  # though the bad VM comes first in every pass
    wait_for("the log to name the VM", lambda: f"VM {bad} left out of scheduling: KeyError: "
             "'history'" in server_log(srv))
    assert one.vm.info(bad).STATE == 1
    assert "Traceback" not in server_log(srv)


@pytest.mark.parametrize(("requirements", "placed"), [
    ("(" * 3000 + "ID > -1" + ")" * 3000, False),  # deeper than any stack: refused
    ("!" * 5000 + "ID > -1", False),
    (" & ".join(f"ID != {100000 + i}" for i in range(5000)), True),  # long, not deep: fine
    (" | ".join(f"ID = {100000 + i}" for i in range(5000)) + " | ID > -1", True),
], ids=["deep-parentheses", "deep-negation", "long-and", "long-or"])
def test_expressions_of_any_size_do_not_stop_scheduling(srv: Server, host: int,
                                                        requirements: str, placed: bool) -> None:
    one = srv.pyone()
    odd = one.vm.allocate(f'NAME="odd"\nCPU=0.1\nMEMORY=16\nSCHED_REQUIREMENTS="{requirements}"\n'
                          f'SCHED_RANK="{" + ".join(["FREE_CPU"] * 3000)}"')
    good = one.vm.allocate('NAME="plain"\nCPU=0.1\nMEMORY=16')
    srv.wait_vm(good, 3, 3)
    if placed:
        srv.wait_vm(odd, 3, 3)
    else:
        assert "nested deeper than 100 levels" in sched_message(srv, odd)
        assert one.vm.info(odd).STATE == 1
    assert "Traceback" not in server_log(srv)


def test_bad_host_row_does_not_stop_scheduling(srv: Server, host: int) -> None:
    one = srv.pyone()
    bad = one.host.allocate("bad-host", "dummy", "dummy", -1)
    wait_for("host MONITORED", lambda: one.host.info(bad).STATE == 2)
    rewrite(srv, "host", bad, lambda doc: doc["share"].update(cpu_usage=float("nan")))
    pinned = one.vm.allocate(f'NAME="on-bad"\nCPU=0.1\nMEMORY=16\nSCHED_REQUIREMENTS="ID = {bad}"')
    free = one.vm.allocate(f'NAME="on-good"\nCPU=0.1\nMEMORY=16\nSCHED_REQUIREMENTS="ID = {host}"')
    srv.wait_vm(free, 3, 3)
    message = sched_message(srv, pinned)
    assert f"1 host left out, unreadable (HOST {bad}: ValueError: HOST_SHARE/CPU_USAGE is nan" \
           in message, message
    assert one.vm.info(pinned).STATE == 1
    wait_for("the log to name the host", lambda: f"host {bad} left out of scheduling"
             in server_log(srv))
    one.host.delete(bad)
    assert "Traceback" not in server_log(srv)


# ----------------------------------------------------------------------------- image paths

def test_image_paths_cannot_be_probed(srv: Server, tmp_path: Path) -> None:
    one = srv.pyone()
    safe, outside = tmp_path / "safe", tmp_path / "outside"
    safe.mkdir()
    outside.mkdir()
    (outside / "exists.tar.gz").write_bytes(b"x")
    (safe / "to-existing").symlink_to(outside / "exists.tar.gz")
    (safe / "to-missing").symlink_to(outside / "missing.tar.gz")
    (safe / "to-etc").symlink_to("/etc")
    ds = one.datastore.allocate(f'NAME="probe"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
                                f'RESTRICTED_DIRS="/"\nSAFE_DIRS="{safe}"\n', -1)

    def answer(path: str) -> str:
        ok, message, code, *_ = srv.call("one.image.allocate", f'NAME="p"\nPATH="{path}"', ds)
        assert not ok and code == ALLOCATE, message
        return message.replace(f"PATH {path} ", "PATH <PATH> ", 1)

    restricted = answer(str(outside / "exists.tar.gz"))
    assert "restricted directory" in restricted
    for path in (outside / "missing.tar.gz", outside / "no-dir" / "x", Path("/etc/shadow"),
                 Path("/etc/no-such-file"), Path("/root"), Path("/"), safe / "to-existing",
                 safe / "to-missing", safe / "to-etc" / "shadow", safe / "to-etc" / "nothing",
                 Path(f"{safe}/../outside/exists.tar.gz"), Path(f"{safe}/../outside/gone")):
        assert answer(str(path)) == restricted, path
    assert "does not exist" in answer(str(safe / "missing.tar.gz"))
    assert "does not exist" in answer(str(safe / "to-missing-dir" / "x"))
