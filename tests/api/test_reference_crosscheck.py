"""Our schemas and documents against OpenNebula's reference material beside the project
(``../shared/reference``: oned 7.4.0's recorded replies and OpenNebula 7.4.0's XSDs). The only
test that reads outside the repository; a clone without the reference does not collect it
(tests/conftest.py).

* Our schemas accept every recorded oned reply of a kind the server sends (the kinds it does
  not send yet are listed, and a new kind in the recording fails until it is one or the other).
* OpenNebula's XSDs accept our documents as far as they accept oned's own: a problem of ours
  must be one that some reply of oned has too, at the same place of the same kind of object.
* The oned replies recorded in tests/fixtures/ are the reference's bytes.
"""

from __future__ import annotations

import json
import re

import documents  # tests/api/documents.py, beside this file
import pytest
import xsd  # tests/api/xsd.py, beside this file
from conftest import REFERENCE, ROOT
from lxml import etree

if not REFERENCE.is_dir():  # collected anyway: named on the command line
    pytest.fail(f"no reference material at {REFERENCE}: this cross-check needs it",
                pytrace=False)

REPLIES = REFERENCE / "oned-7.4.0-replies"
ONED_XSD = REFERENCE / "opennebula-xsd-7.4.0"
ONED_NS = "http://opennebula.org/XMLSchema"
FIXTURES = ROOT / "tests" / "fixtures" / "oned-7.4.0-replies.json"

# Recorded kinds the server does not send (yet): no method answers them.
NOT_SERVED = {
    "BACKUPJOB", "BACKUPJOB_POOL", "DEFAULT_GROUP_QUOTAS", "DEFAULT_USER_QUOTAS", "DOCUMENT",
    "DOCUMENT_POOL", "HOOK", "HOOKLOG", "HOOK_POOL", "MARKETPLACE", "MARKETPLACEAPP_POOL",
    "MARKETPLACE_POOL", "SHOWBACK_RECORDS", "VM_GROUP", "VM_GROUP_POOL", "VROUTER",
    "VROUTER_POOL",
}
# Documents the server sends that the recording has no reply of.
NOT_RECORDED = {"vmtemplate.xsd", "vmtemplate_pool.xsd", "image_pool.xsd", "raft.xsd"}
# Our schema file → OpenNebula's for the same document, where the names differ.
ONED_SCHEMA = {
    "accounting.xsd": "acct.xsd",
    "raft.xsd": "raftstatus.xsd",
    xsd.HOST_SAMPLES: "monitoring_data.xsd",
    xsd.VM_SAMPLES: "monitoring_data.xsd",
}
# The configuration is the server's own oned.conf, with other driver blocks than oned's; the
# reference XSD does not list all of oned's either (its reply fails it so). An element the XSD
# does not list is one way a configuration may fail it; the other is a value users outside
# the oneadmin group see as "***" (oned hides them so; its recorded reply is oneadmin's).
NOT_LISTED = "This element is not expected."
HIDDEN = "The value '***' is not"
# oned writes an address range's attributes sorted by name, so an IP6_STATIC range's IP6
# comes between IP and MAC; its vnet.xsd lists IP6 after IP6_GLOBAL_END, so oned's own reply
# of such a network fails it there too (the recording has none).
ONED_XSD_GAPS = {("/VNET/AR_POOL/AR/IP6", f"Element 'IP6': {NOT_LISTED}")}


def replies() -> dict[str, etree._Element]:
    """oned's inner documents (``NAME.xml``; ``NAME.rpc.xml`` are whole HTTP bodies)."""
    return {p.name: etree.parse(str(p)).getroot() for p in sorted(REPLIES.glob("*.xml"))
            if not p.name.endswith(".rpc.xml")}


def our_schema(name: str, root: str) -> str:
    """The schema of a recorded reply: by its root, and by its name where a root has two."""
    if root == "VM_POOL":
        return xsd.VM_POOL_FULL if "extended" in name else xsd.VM_POOL_SHORT
    if root == "MONITORING_DATA":
        return xsd.HOST_SAMPLES if name.startswith("host") else xsd.VM_SAMPLES
    return xsd.FOR_ROOT[root]


def test_our_schemas_accept_oneds_replies() -> None:
    served: dict[str, list[str]] = {}
    unknown, failing = [], []
    for name, doc in replies().items():
        if doc.tag in NOT_SERVED:
            continue
        if doc.tag not in xsd.FOR_ROOT and doc.tag not in ("VM_POOL", "MONITORING_DATA"):
            unknown.append(f"{name} <{doc.tag}>")
            continue
        schema = our_schema(name, doc.tag)
        served.setdefault(schema, []).append(name)
        failing += [f"{name} ({schema}) {p}" for p in xsd.errors(etree.tostring(doc), schema)]
    assert unknown == [], "a recorded kind that is neither served nor listed in NOT_SERVED"
    assert failing == []
    assert not NOT_SERVED & set(xsd.FOR_ROOT)
    assert set(served) == set(documents.METHODS.values()) - NOT_RECORDED, sorted(served)


def _oned_schema(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(ONED_XSD / name)))


def _oned_problems(doc: etree._Element, schema: etree.XMLSchema) -> list[tuple[str, str]]:
    """(place, what) of each problem of ``doc`` under an XSD of OpenNebula's. Those declare a
    namespace that documents lack, so a copy with the namespace on every element is checked.
    The place is the path without indexes and without a pool's root, so that a VM inside a
    VM_POOL is where a VM alone is; what is the message without the alternatives it lists."""
    copy = etree.fromstring(etree.tostring(doc))
    for node in copy.iter():
        if isinstance(node.tag, str):
            node.tag = f"{{{ONED_NS}}}{node.tag}"
    if schema.validate(copy):
        return []
    out = []
    for e in schema.error_log:
        path = re.sub(r"\[\d+\]", "", (e.path or "").replace("ns0:", ""))
        path = re.sub(r"^/[A-Z_]+_POOL(?=/)", "", path)
        message = e.message.replace(f"{{{ONED_NS}}}", "").split(" Expected is")[0]
        out.append((path, message))
    return out


def test_oned_schemas_accept_our_documents_as_far_as_oneds(server) -> None:  # noqa: ANN001
    schemas: dict[str, etree.XMLSchema] = {}

    def schema(ours: str) -> etree.XMLSchema:
        name = ONED_SCHEMA.get(ours, ours)
        if name not in schemas:
            schemas[name] = _oned_schema(name)
        return schemas[name]

    oned: set[tuple[str, str]] = set()
    for name, doc in replies().items():
        if doc.tag not in NOT_SERVED:
            problems = _oned_problems(doc, schema(our_schema(name, doc.tag)))
            if doc.tag == "OPENNEBULA_CONFIGURATION":
                assert problems and {m.split(": ")[1] for _, m in problems} == {NOT_LISTED}
            oned |= set(problems)
    ours = []
    for doc in documents.collect(server):
        for place, message in _oned_problems(etree.fromstring(doc.xml.encode()),
                                             schema(doc.schema)):
            config_extra = doc.method == "one.system.config" and (
                message.endswith(": " + NOT_LISTED) or HIDDEN in message)
            # What a caller wrote with one.*.update stands in TEMPLATE as written, in oned's
            # documents too; some of oned's XSDs close TEMPLATE to the attributes oned itself
            # sets (SECURITY_GROUP's), which other tests on this server add to.
            caller_attr = "/TEMPLATE/" in place and message.endswith("is not expected.")
            if (place, message) not in oned | ONED_XSD_GAPS and not config_extra \
                    and not caller_attr:
                ours.append(f"{doc}: {place}: {message}")
    assert ours == []


def test_recorded_replies_are_oneds_bytes() -> None:
    recorded = json.loads(FIXTURES.read_text())["replies"]
    for name, lines in recorded.items():
        body = "".join(line + "\r\n" for line in lines).encode()
        assert body == (REPLIES / name).read_bytes(), name
