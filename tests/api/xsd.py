"""Validate documents against OpenNebula 7.4.0's XML Schemas.

The schemas declare ``targetNamespace="http://opennebula.org/XMLSchema"`` while oned's documents
(and ours) carry no namespace, so a parsed *copy* of the document gets the namespace put on
every element before validation; what the server sends is never changed. The schema files
include each other (shared.xsd, vm.xsd…), so they are loaded from their own directory.

The schemas live in ``../shared/reference`` beside the project, which a user's fresh clone does
not have: :func:`require` skips the calling test, saying why, when they are absent.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT.parent / "shared" / "reference"
XSD_DIR = REFERENCE / "opennebula-xsd-7.4.0"
REPLIES_DIR = REFERENCE / "oned-7.4.0-replies"
NS = "http://opennebula.org/XMLSchema"

# Root element → the schema file that declares it. VM_POOL is declared twice (short bodies in
# vm_pool.xsd, full bodies in vm_pool_extended.xsd): callers say which with ``schema=``.
SCHEMA_FOR_ROOT = {
    "VM": "vm.xsd",
    "VM_POOL": "vm_pool.xsd",
    "HOST": "host.xsd",
    "HOST_POOL": "host_pool.xsd",
    "VMTEMPLATE": "vmtemplate.xsd",
    "VMTEMPLATE_POOL": "vmtemplate_pool.xsd",
    "USER": "user.xsd",
    "USER_POOL": "user_pool.xsd",
    "GROUP": "group.xsd",
    "GROUP_POOL": "group_pool.xsd",
    "CLUSTER": "cluster.xsd",
    "CLUSTER_POOL": "cluster_pool.xsd",
    "DATASTORE": "datastore.xsd",
    "DATASTORE_POOL": "datastore_pool.xsd",
    "IMAGE": "image.xsd",
    "IMAGE_POOL": "image_pool.xsd",
    "ACL_POOL": "acl_pool.xsd",
    "MONITORING_DATA": "monitoring_data.xsd",
    "OPENNEBULA_CONFIGURATION": "opennebula_configuration.xsd",
    "ZONE_POOL": "zone_pool.xsd",
    "RAFT": "raftstatus.xsd",
    "HISTORY_RECORDS": "acct.xsd",
}
VM_POOL_EXTENDED = "vm_pool_extended.xsd"


def available() -> bool:
    return XSD_DIR.is_dir()


def require() -> None:
    """Skip the calling test when the reference material is not beside the project."""
    if not available():
        msg = f"OpenNebula 7.4.0 XSDs not found at {XSD_DIR} (no ../shared/reference here)"
        print(msg)
        pytest.skip(msg)


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    """One schema file, its includes resolved relative to its own path."""
    return etree.XMLSchema(etree.parse(str(XSD_DIR / name)))


def namespaced(doc: etree._Element) -> etree._Element:
    """A copy of ``doc`` with every element moved into the OpenNebula namespace."""
    copy = etree.fromstring(etree.tostring(doc))
    for node in copy.iter():
        if isinstance(node.tag, str) and not node.tag.startswith("{"):
            node.tag = f"{{{NS}}}{node.tag}"
    return copy


@dataclass(frozen=True)
class Problem:
    """One validation error, with the namespace stripped so messages read like the document."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def _strip(text: str) -> str:
    # libxml2 writes the namespace as {uri} in messages and as an ns0: prefix in paths.
    return re.sub(r"\bns0:", "", text.replace(f"{{{NS}}}", ""))


def errors(xml: str | bytes, schema_name: str | None = None) -> list[Problem]:
    """Validation errors of ``xml`` (empty when valid). The schema defaults by root element."""
    doc = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    name = schema_name or SCHEMA_FOR_ROOT[doc.tag]
    xsd = schema(name)
    if xsd.validate(namespaced(doc)):
        return []
    return [Problem(_strip(e.path or ""), _strip(e.message)) for e in xsd.error_log]


def reference_documents() -> list[Path]:
    """oned's inner documents (``NAME.xml``, not the whole ``NAME.rpc.xml`` bodies)."""
    if not REPLIES_DIR.is_dir():
        return []
    return sorted(p for p in REPLIES_DIR.glob("*.xml") if not p.name.endswith(".rpc.xml"))


def schema_for_reference(path: Path) -> str | None:
    """The schema a reference document should be checked with (None: the root's default)."""
    return VM_POOL_EXTENDED if "extended" in path.name else None


def child_tags(elem: etree._Element) -> list[str]:
    """The sequence of child element names, a run of repeated names collapsed to one."""
    out: list[str] = []
    for child in elem:
        if isinstance(child.tag, str) and (not out or out[-1] != child.tag):
            out.append(child.tag)
    return out
