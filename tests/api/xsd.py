"""Validate documents against the project's own XML Schemas (``schemas/`` at the top of the
repository, described in ``schemas/README.md``).

The schemas carry no namespace, like the documents, so documents are validated as sent. Each
schema file declares one root element; a document is checked against the file named for its
root (:data:`FOR_ROOT`) unless the caller names another: VM_POOL (short or full bodies) and
MONITORING_DATA (host or VM samples) have two files each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
XS = "{http://www.w3.org/2001/XMLSchema}"

FOR_ROOT = {
    "VM": "vm.xsd",
    "HISTORY_RECORDS": "accounting.xsd",
    "HOST": "host.xsd",
    "HOST_POOL": "host_pool.xsd",
    "IMAGE": "image.xsd",
    "IMAGE_POOL": "image_pool.xsd",
    "DATASTORE": "datastore.xsd",
    "DATASTORE_POOL": "datastore_pool.xsd",
    "CLUSTER": "cluster.xsd",
    "CLUSTER_POOL": "cluster_pool.xsd",
    "USER": "user.xsd",
    "USER_POOL": "user_pool.xsd",
    "GROUP": "group.xsd",
    "GROUP_POOL": "group_pool.xsd",
    "VMTEMPLATE": "vmtemplate.xsd",
    "VMTEMPLATE_POOL": "vmtemplate_pool.xsd",
    "ACL_POOL": "acl_pool.xsd",
    "OPENNEBULA_CONFIGURATION": "opennebula_configuration.xsd",
    "RAFT": "raft.xsd",
    "VNET": "vnet.xsd",
    "VNET_POOL": "vnet_pool.xsd",
    "SECURITY_GROUP": "security_group.xsd",
    "SECURITY_GROUP_POOL": "security_group_pool.xsd",
    "VNTEMPLATE": "vntemplate.xsd",
    "VNTEMPLATE_POOL": "vntemplate_pool.xsd",
    "ZONE": "zone.xsd",
    "ZONE_POOL": "zone_pool.xsd",
    "VDC": "vdc.xsd",
    "VDC_POOL": "vdc_pool.xsd",
    "TEMPLATE": "template.xsd",
}
VM_POOL_SHORT, VM_POOL_FULL = "vm_pool.xsd", "vm_pool_extended.xsd"
HOST_SAMPLES, VM_SAMPLES = "host_monitoring.xsd", "vm_monitoring.xsd"


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    """One schema file, its includes resolved beside it."""
    return etree.XMLSchema(etree.parse(str(SCHEMAS / name)))


@functools.cache
def root_of(name: str) -> str:
    """The root element a schema file is for: the one element it declares itself (the
    elements of the files it includes do not count)."""
    tree = etree.parse(str(SCHEMAS / name))
    (element,) = tree.getroot().findall(f"{XS}element")
    return element.get("name")


def schema_files() -> list[str]:
    return sorted(p.name for p in SCHEMAS.glob("*.xsd"))


@dataclass(frozen=True)
class Problem:
    """One validation error: where (an XPath into the document) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def errors(xml: str | bytes, schema_name: str | None = None) -> list[Problem]:
    """What is wrong with ``xml`` (nothing when valid). The schema defaults by root element;
    a document whose root is not the one the schema is for is wrong too (a schema also
    declares the elements of the files it includes)."""
    doc = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    name = schema_name or FOR_ROOT[doc.tag]
    if doc.tag != root_of(name):
        return [Problem(f"/{doc.tag}", f"{name} describes <{root_of(name)}>, not <{doc.tag}>")]
    xsd = schema(name)
    if xsd.validate(doc):
        return []
    return [Problem(e.path or "", e.message) for e in xsd.error_log]
