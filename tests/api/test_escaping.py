"""Hostile values never break or forge a stored document: names that cannot be XML element
names are refused where they enter, and every value a caller (or a driver) controls reads back
exactly from bodies that parse, with no element more than the objects there are."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from conftest import Server, backends, start_server, stop_server, wait_for
from lxml import etree

INTERNAL = 8192
MALFORMED = "Parse error: XML Template malformed."
BAD_MEMBER = "Parse error: syntax error, attribute name 9X must start with a letter or _"
CDATA_END = "]]>"
# Closes LABELS, the short body's USER_TEMPLATE and VM, then opens a VM of its own.
FORGED = "x]]></LABELS></USER_TEMPLATE><HISTORY_RECORDS/></VM><VM><ID>4242</ID></VM><VM>" \
         "<USER_TEMPLATE><LABELS><![CDATA[y"


@dataclass
class World:
    server: Server
    vms: set[int] = field(default_factory=set)

    def ok(self, method: str, *params: object) -> object:
        reply = self.server.call(method, *params)
        assert reply[0], reply
        return reply[1]

    def vm(self, template: str) -> int:
        oid = self.ok("one.vm.allocate", template, True)
        assert isinstance(oid, int)
        self.vms.add(oid)
        return oid

    def parsed(self, method: str, *params: object) -> etree._Element:
        """The reply's document, parsed (fails the test when it does not parse)."""
        return etree.fromstring(str(self.ok(method, *params)).encode())

    def vm_pools_agree(self) -> None:
        for method in ("one.vmpool.info", "one.vmpool.infoextended"):
            root = self.parsed(method, -2, -1, -1, -1)
            assert sorted(int(v.findtext("ID")) for v in root) == sorted(self.vms), method


@pytest.fixture(scope="module", params=backends())
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    srv = start_server(tmp_path_factory.mktemp(f"escaping-{request.param}"), request.param)
    yield World(srv)
    stop_server(srv)


def xml_form(**attrs: str) -> str:
    """An XML-form template: values escaped as XML text, so they arrive exactly as given."""
    root = etree.Element("TEMPLATE")
    for name, value in attrs.items():
        etree.SubElement(root, name).text = value
    return etree.tostring(root, encoding="unicode")


# --- names: checked where they enter -----------------------------------------------------------


@pytest.mark.parametrize("method", ["one.vm.allocate", "one.template.allocate"])
def test_vector_member_starting_with_a_digit_is_refused(world: World, method: str) -> None:
    source = 'NAME="a"\nCPU=0.1\nMEMORY=32\nDISK=[9X="1"]'
    params = (source, True) if method == "one.vm.allocate" else (source,)
    reply = world.server.call(method, *params)
    assert reply[:3] == [False, f"[{method}] {BAD_MEMBER} at line 4, columns 7:9", INTERNAL]
    xml = '<TEMPLATE><NAME>a</NAME><CPU>1</CPU><MEMORY>32</MEMORY><DISK><a-b>1</a-b></DISK>' \
          '</TEMPLATE>'
    reply = world.server.call(method, xml, *params[1:])
    assert reply[:3] == [False, f"[{method}] {MALFORMED}", INTERNAL]
    world.vm_pools_agree()
    world.parsed("one.templatepool.info", -2, -1, -1)


@pytest.mark.parametrize("method", ["one.vm.update", "one.template.update"])
def test_update_with_a_bad_member_name_changes_nothing(world: World, method: str) -> None:
    if method == "one.vm.update":
        oid = world.vm('NAME="u"\nCPU=0.1\nMEMORY=32\nLABELS="kept"')
        info = "one.vm.info"
    else:
        oid = world.ok("one.template.allocate", 'NAME="t-upd"\nCPU=0.1\nMEMORY=32')
        info = "one.template.info"
    before = world.ok(info, oid)
    for mode in (0, 1):
        reply = world.server.call(method, oid, 'V = [ A = 1, 9X = "2" ]', mode)
        assert not reply[0] and reply[2] == INTERNAL and BAD_MEMBER in reply[1], reply
    assert world.ok(info, oid) == before
    world.parsed(info, oid)
    world.vm_pools_agree()


# --- values: one escaping path for every body ------------------------------------------------


def test_template_value_cannot_forge_a_vm(world: World) -> None:
    oid = world.vm(xml_form(NAME="forger", CPU="0.1", MEMORY="32", LABELS=FORGED,
                            DESCRIPTION=f"<b>&amp;{CDATA_END}"))
    world.vm_pools_agree()  # no VM 4242, no element more than the VMs there are
    short = world.parsed("one.vmpool.info", -2, oid, oid, -1)
    assert short.findtext("VM/USER_TEMPLATE/LABELS") == FORGED
    full = world.parsed("one.vm.info", oid)
    assert full.findtext("USER_TEMPLATE/LABELS") == FORGED
    assert full.findtext("USER_TEMPLATE/DESCRIPTION") == f"<b>&amp;{CDATA_END}"


def test_driver_names_and_secrets_read_back(world: World) -> None:
    im, vmm = f"dummy{CDATA_END}<im>", f"vm{CDATA_END}</VM_MAD>"
    hid = world.ok("one.host.allocate", "esc-host", im, vmm, -1)
    host = world.parsed("one.host.info", hid)
    assert (host.findtext("IM_MAD"), host.findtext("VM_MAD")) == (im, vmm)
    world.parsed("one.hostpool.info")

    ds_mad, tm_mad = f"fs{CDATA_END}&", f"ssh{CDATA_END}</TM_MAD>"
    dsid = world.ok("one.datastore.allocate", xml_form(NAME="esc-ds", DS_MAD=ds_mad,
                                                       TM_MAD=tm_mad), -1)
    ds = world.parsed("one.datastore.info", dsid)
    assert (ds.findtext("DS_MAD"), ds.findtext("TM_MAD")) == (ds_mad, tm_mad)
    ids = [int(d.findtext("ID")) for d in world.parsed("one.datastorepool.info")]
    assert dsid in ids and len(ids) == len(set(ids))

    driver = f"core{CDATA_END}</AUTH_DRIVER><X>"
    uid = world.ok("one.user.allocate", "esc-user", f"pw{CDATA_END}<", driver, [])
    token = f"t{CDATA_END}<&>"
    assert world.ok("one.user.login", "esc-user", token, 3600, -1) == token
    user = world.parsed("one.user.info", uid)
    assert user.findtext("AUTH_DRIVER") == driver
    assert user.findtext("LOGIN_TOKEN/TOKEN") == token
    users = world.parsed("one.userpool.info")
    assert len(users.findall("USER")) == 3  # oneadmin, serveradmin and this one


def test_history_fields_and_driver_errors_read_back(world: World) -> None:
    vmm, tm = f"none{CDATA_END}<x>", f"none{CDATA_END}</TM_MAD>"
    hid = world.ok("one.host.allocate", "esc-deploy", "dummy", vmm, -1)
    dsid = world.ok("one.datastore.allocate",
                    xml_form(NAME="esc-sys", TYPE="SYSTEM_DS", TM_MAD=tm), -1)
    oid = world.vm('NAME="deployed"\nCPU=0.1\nMEMORY=32')
    world.ok("one.vm.deploy", oid, hid, False, dsid)
    # No driver has that name: the VM fails and the error naming it is stored in the VM.
    error = wait_for("the deploy error", lambda: world.parsed("one.vm.info", oid)
                     .findtext("USER_TEMPLATE/ERROR"))
    assert vmm in error
    vm = world.parsed("one.vm.info", oid)
    assert (vm.findtext("HISTORY_RECORDS/HISTORY/VM_MAD"),
            vm.findtext("HISTORY_RECORDS/HISTORY/TM_MAD")) == (vmm, tm)
    short = world.parsed("one.vmpool.info", -2, oid, oid, -1)
    assert short.findtext("VM/HISTORY_RECORDS/HISTORY/VM_MAD") == vmm
    world.vm_pools_agree()
    world.parsed("one.host.info", hid)


def test_sched_message_quoting_a_hostile_expression(world: World) -> None:
    req = f"x {CDATA_END} </SCHED_MESSAGE> <"
    oid = world.ok("one.vm.allocate", xml_form(NAME="unplaceable", CPU="0.1", MEMORY="32",
                                               SCHED_REQUIREMENTS=req), False)
    world.vms.add(oid)
    message = wait_for("SCHED_MESSAGE", lambda: world.parsed("one.vmpool.info", -2, oid, oid, -1)
                       .findtext("VM/USER_TEMPLATE/SCHED_MESSAGE"))
    assert req in message
    assert world.parsed("one.vm.info", oid).findtext("USER_TEMPLATE/SCHED_REQUIREMENTS") == req
    world.vm_pools_agree()
    world.ok("one.vm.action", "terminate-hard", oid)
    world.server.wait_vm(oid, 6)
    world.vms.discard(oid)
    world.vm_pools_agree()
