"""Every document the server sends, against the project's own schemas (``schemas/``).

The documents come from a live server whose objects are in several states (documents.py):
every method that answers a document is called, its answer must validate against the schema of
its kind. The schemas are checked too: each file compiles, is described in the README, and
refuses what a client would choke on (a word where an integer goes, a missing element,
elements out of order, text at a template's top level).
"""

from __future__ import annotations

import uuid

import documents  # tests/api/documents.py, beside this file
import pytest
import xsd  # tests/api/xsd.py, beside this file
from lxml import etree

from oneserver import api
from oneserver.template import parse

# ---------------------------------------------------------------------------- the schemas


def test_every_schema_compiles_and_declares_one_root() -> None:
    files = xsd.schema_files()
    assert "common.xsd" in files
    roots = {}
    for name in files:
        xsd.schema(name)
        if name != "common.xsd":
            roots[name] = xsd.root_of(name)
    for root, name in xsd.FOR_ROOT.items():
        assert roots[name] == root, name
    assert set(roots) == set(xsd.FOR_ROOT.values()) | {
        xsd.VM_POOL_SHORT, xsd.VM_POOL_FULL, xsd.HOST_SAMPLES, xsd.VM_SAMPLES}


def test_readme_covers_every_schema() -> None:
    readme = (xsd.SCHEMAS / "README.md").read_text()
    assert [n for n in xsd.schema_files() if f"`{n}`" not in readme] == []


def test_every_document_method_has_a_schema() -> None:
    """A new method that answers a string must name its schema here (or say why it has none)."""
    api.load_all()
    answering_str = {name for name, m in api.METHODS.items()
                     if m.handler.__annotations__.get("return") == "str"}
    assert answering_str - set(documents.NOT_DOCUMENTS) == set(documents.METHODS)
    assert set(documents.METHODS.values()) <= set(xsd.schema_files())


# ---------------------------------------------------------------------------- our documents


@pytest.fixture(scope="module")
def docs(server) -> list[documents.Document]:  # noqa: ANN001 - conftest's Server
    return documents.collect(server)


@pytest.mark.parametrize("method", sorted(documents.METHODS))
def test_documents_of(docs: list[documents.Document], method: str) -> None:
    mine = [d for d in docs if d.method == method]
    assert mine, f"{method} was never called"
    for doc in mine:
        problems = xsd.errors(doc.xml, doc.schema)
        assert not problems, f"{doc}:\n" + "\n".join(map(str, problems)) + "\n" + doc.xml[:3000]


def test_states_shown(docs: list[documents.Document]) -> None:
    """The documents show what the schemas allow for: locks, history, samples, tokens."""
    def one(method: str, state: str) -> etree._Element:
        (doc,) = [d for d in docs if d.method == method and d.state == state]
        return etree.fromstring(doc.xml.encode())

    migrated = one("one.vm.info", "VM RUNNING after a migration: two history records")
    assert len(migrated.findall("HISTORY_RECORDS/HISTORY")) == 2
    assert one("one.vm.info", "VM locked, HOLD").find("LOCK/OWNER") is not None
    short = one("one.vmpool.infoset", "short bodies of every state")
    assert short.find("VM/LOCK/LOCKED") is not None and short.find("VM/LOCK/OWNER") is None
    assert short.find("VM/TEMPLATE/DISK/IMAGE_ID").text
    assert short.find("VM/TEMPLATE/NIC/IP").text == "10.0.0.1"
    assert short.find("VM/MONITORING/CPU") is not None
    assert one("one.vm.monitoring", "a monitored VM").find("MONITORING/TIMESTAMP") is not None
    sample = one("one.host.monitoring", "a monitored host")
    assert sample.find("MONITORING/CAPACITY/FREE_CPU") is not None
    assert one("one.host.info", "host in ERROR, never monitored").find("MONITORING/*") is None
    user = one("one.user.info", "user with a template, two groups and two login tokens")
    assert len(user.findall("LOGIN_TOKEN")) == 2 and len(user.findall("GROUPS/ID")) == 2
    assert one("one.vmpool.accounting", "every record").find("HISTORY/VM/ID") is not None
    assert one("one.image.info", "image READY, locked, used by a VM").find("LOCK") is not None
    hidden = one("one.system.config", "as a plain user: DB hidden")
    assert hidden.findtext("DB/BACKEND") == "***" and hidden.find("DB/TIMEOUT") is not None


# ---------------------------------------------------------------------------- what they refuse


def _vm(docs: list[documents.Document]) -> etree._Element:
    (doc,) = [d for d in docs if d.state == "VM RUNNING with a disk and a NIC"]
    return etree.fromstring(doc.xml.encode())


def _problems(elem: etree._Element, schema: str | None = None) -> list[str]:
    return [str(p) for p in xsd.errors(etree.tostring(elem), schema)]


def test_refused_text_where_an_integer_goes(docs: list[documents.Document]) -> None:
    vm = _vm(docs)
    vm.find("STATE").text = "ACTIVE"
    assert any("/VM/STATE" in p for p in _problems(vm))
    vm = _vm(docs)
    vm.find("STATE").text = "7"  # FAILED, gone since OpenNebula 4
    assert _problems(vm)
    vm = _vm(docs)
    vm.find("PERMISSIONS/OWNER_U").text = "2"
    assert _problems(vm)


def test_refused_missing_or_misplaced_elements(docs: list[documents.Document]) -> None:
    vm = _vm(docs)
    vm.remove(vm.find("PERMISSIONS"))
    assert _problems(vm)
    vm = _vm(docs)
    history = vm.find("HISTORY_RECORDS")
    vm.remove(history)
    vm.insert(3, history)
    assert _problems(vm)
    vm = _vm(docs)
    record = vm.find("HISTORY_RECORDS/HISTORY")
    hid = record.find("HID")
    record.remove(hid)
    record.append(hid)
    assert _problems(vm)


def test_refused_a_full_body_as_a_short_one(docs: list[documents.Document]) -> None:
    full = [d for d in docs if d.schema == xsd.VM_POOL_FULL and "<VM>" in d.xml][0]
    assert xsd.errors(full.xml, xsd.VM_POOL_SHORT)
    short = [d for d in docs if d.schema == xsd.VM_POOL_SHORT and "<VM>" in d.xml][0]
    assert xsd.errors(short.xml, xsd.VM_POOL_FULL)
    # A <VM> is not a <VM_POOL>, though vm_pool.xsd includes the declaration of <VM>.
    vm = etree.tostring(_vm(docs))
    assert xsd.errors(vm, xsd.VM_POOL_SHORT) and xsd.errors(vm, "vm.xsd") == []


def test_refused_a_vm_sample_as_a_host_sample(docs: list[documents.Document]) -> None:
    (host,) = [d for d in docs if d.state == "a monitored host"]
    (vm,) = [d for d in docs if d.state == "a monitored VM"]
    assert xsd.errors(vm.xml, xsd.HOST_SAMPLES)
    # VM samples are templates: a host sample is one too, the schema cannot tell it apart.
    assert xsd.errors(host.xml, xsd.VM_SAMPLES) == []


# ---------------------------------------------------------------------------- templates


TEMPLATES = {
    "plain": "<TEMPLATE><NAME>{name}</NAME><CPU>1</CPU><MEMORY><![CDATA[64]]></MEMORY>"
             "</TEMPLATE>",
    "vectors": "<TEMPLATE><NAME>{name}</NAME><DISK><IMAGE>img</IMAGE><SIZE>10</SIZE></DISK>"
               "<DISK><SIZE>5</SIZE></DISK><CONTEXT><NETWORK><![CDATA[YES]]></NETWORK>"
               "</CONTEXT><LABELS>a &amp; b</LABELS></TEMPLATE>",
}


@pytest.mark.parametrize("kind", sorted(TEMPLATES))
def test_xml_templates_the_server_takes(server, kind: str) -> None:  # noqa: ANN001
    """A template in XML form as template.xsd describes it is what the server takes; the
    TEMPLATE of the stored object is a template in XML form again, with the same attributes."""
    text = TEMPLATES[kind].replace("{name}", f"xsd-{kind}-{uuid.uuid4().hex[:8]}")
    assert xsd.errors(text, "template.xsd") == []
    reply = server.call("one.template.allocate", text)
    assert reply[0] is True, reply
    body = server.call("one.template.info", reply[1], False, False)[1]
    stored = etree.fromstring(body.encode()).find("TEMPLATE")
    assert xsd.errors(etree.tostring(stored), "template.xsd") == []
    assert sorted(e.tag for e in stored) == sorted(name for name, _ in parse(text).items)


def test_refused_text_at_a_templates_top_level() -> None:
    assert xsd.errors("<TEMPLATE/>", "template.xsd") == []
    assert xsd.errors("<TEMPLATE>CPU=1<MEMORY>64</MEMORY></TEMPLATE>", "template.xsd")
