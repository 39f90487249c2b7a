"""VDCs as oned's Vdc keeps them: groups, and sets of clusters, hosts, datastores and networks
each named by (zone, id), ``-10`` for all of a zone's. Every group of a VDC gets ACL rules on
every resource of it, with the rights oned.conf's ``DEFAULT_VDC_*_ACL`` give (a cluster gives
three: its hosts, networks and datastores); the rules come and go with the group or the
resource. Documents are changed in place; the caller saves them in its transaction."""

from __future__ import annotations

from typing import Any

from oneserver import settings, store
from oneserver.errors import INTERNAL, OneError
from oneserver.model import aclstore
from oneserver.model.acl import (
    ADMIN,
    ALL,
    CLUSTER,
    CREATE,
    GROUP,
    INDIVIDUAL,
    KIND_TYPE,
    LOCAL_ZONE,
    MANAGE,
    TYPES,
    USE,
)

ALL_RESOURCES = -10
DEFAULT_ID = 0  # the default VDC: every new group joins it
DEFAULT_DESCRIPTION = (
    "Every new group is added to this VDC. Use it to store default access rules for your "
    "groups. NOTE: You may need to remove a group from the default VDC before assigning it to "
    "other VDC.")

# Resource set -> (ACL type its rules are on, the oned.conf setting of their rights, oned's
# default for it), in the order oned adds them (by type: HOST, NET, DATASTORE).
RULES: dict[str, tuple[tuple[str, str, str], ...]] = {
    "clusters": (("HOST", "DEFAULT_VDC_CLUSTER_HOST_ACL", "MANAGE"),
                 ("NET", "DEFAULT_VDC_CLUSTER_NET_ACL", "USE"),
                 ("DATASTORE", "DEFAULT_VDC_CLUSTER_DATASTORE_ACL", "USE")),
    "hosts": (("HOST", "DEFAULT_VDC_HOST_ACL", "MANAGE"),),
    "datastores": (("DATASTORE", "DEFAULT_VDC_DATASTORE_ACL", "USE"),),
    "vnets": (("NET", "DEFAULT_VDC_VNET_ACL", "USE"),),
}
# How oned's messages name a set's members (PoolObjectSQL::type_to_str).
TYPE_NAMES = {"clusters": "CLUSTER", "hosts": "HOST", "datastores": "DATASTORE",
              "vnets": "NET"}
_RIGHTS = {"USE": USE, "MANAGE": MANAGE, "ADMIN": ADMIN, "CREATE": CREATE}


def new_doc(oid: int, name: str, template: list[Any]) -> dict[str, Any]:
    return {"id": oid, "name": name, "groups": [], "clusters": [], "hosts": [],
            "datastores": [], "vnets": [], "template": template}


def _rights(setting: str, default: str) -> int:
    """oned's ResourceSet::insert_default_rules: rights joined by "+"; "", "-" and unknown
    words add nothing."""
    text = settings.current().oned_conf.get_str(setting, default)
    rights = 0
    for word in text.split("+"):
        rights |= _RIGHTS.get(word.strip().upper(), 0)
    return rights


def _rules(kind: str, gid: int, zid: int, rid: int) -> list[tuple[int, int, int, int]]:
    """The rules one member (``zid``, ``rid``) of set ``kind`` gives group ``gid``."""
    if rid == ALL_RESOURCES:
        selector = ALL
    elif kind == "clusters":
        selector = CLUSTER | rid
    else:
        selector = INDIVIDUAL | rid
    out = []
    for type_name, setting, default in RULES[kind]:
        rights = _rights(setting, default)
        if rights:
            out.append((GROUP | gid, selector | TYPES[type_name], rights, INDIVIDUAL | zid))
    return out


def _give(kind: str, gid: int, zid: int, rid: int) -> None:
    for rule in _rules(kind, gid, zid, rid):
        aclstore.add_quietly(*rule)


def _take(kind: str, gid: int, zid: int, rid: int) -> None:
    for rule in _rules(kind, gid, zid, rid):
        aclstore.delete_matching(*rule)


def add_group(doc: dict[str, Any], gid: int) -> None:
    if gid in doc["groups"]:
        raise OneError(INTERNAL, f"Group {gid} is already assigned to the VDC {doc['id']}")
    doc["groups"] = sorted([*doc["groups"], gid])
    for kind in RULES:
        for zid, rid in doc[kind]:
            _give(kind, gid, zid, rid)


def del_group(doc: dict[str, Any], gid: int) -> None:
    if gid not in doc["groups"]:
        raise OneError(INTERNAL, f"Group {gid} is not assigned to the VDC {doc['id']}")
    doc["groups"] = [g for g in doc["groups"] if g != gid]
    for kind in RULES:
        for zid, rid in doc[kind]:
            _take(kind, gid, zid, rid)


def add_resource(doc: dict[str, Any], kind: str, zid: int, rid: int) -> None:
    """Add (zone, id) to set ``kind``; all of a zone's (-10) replaces its single members."""
    if [zid, rid] in doc[kind]:
        raise OneError(INTERNAL, f"{TYPE_NAMES[kind]} {rid} from Zone {zid} is already "
                                 f"assigned to the VDC")
    doc[kind] = sorted([*doc[kind], [zid, rid]])
    for gid in doc["groups"]:
        _give(kind, gid, zid, rid)
    if rid == ALL_RESOURCES:
        for other_zid, other in list(doc[kind]):
            if other_zid == zid and other != ALL_RESOURCES:
                del_resource(doc, kind, zid, other)


def del_resource(doc: dict[str, Any], kind: str, zid: int, rid: int) -> None:
    if [zid, rid] not in doc[kind]:
        # oned's message ends with a space.
        raise OneError(INTERNAL, f"{TYPE_NAMES[kind]} {rid} from Zone {zid} is not assigned "
                                 f"to the VDC ")
    doc[kind] = [m for m in doc[kind] if m != [zid, rid]]
    for gid in doc["groups"]:
        _take(kind, gid, zid, rid)


def drop(doc: dict[str, Any]) -> None:
    """What deleting a VDC takes with it: its groups' rules and the rules on the VDC."""
    for gid in doc["groups"]:
        for kind in RULES:
            for zid, rid in doc[kind]:
                _take(kind, gid, zid, rid)
    aclstore.delete_object_rules(TYPES["VDC"], doc["id"])


# Kind of object -> the VDC set it can be a member of.
_SET_OF = {"cluster": "clusters", "host": "hosts", "datastore": "datastores", "vn": "vnets"}


def resource_deleted(kind: str, oid: int) -> None:
    """A deleted cluster, host, datastore or network leaves every VDC, with the rules it gave
    their groups, and takes the rules naming it (ClusterAPI/HostAPI/DatastoreAPI::drop, and
    SharedAPI's del_resource_rules or AclManager::del_cid_rules); inside the caller's
    transaction."""
    members = _SET_OF[kind]
    model = store.KINDS["vdc"].model
    for row in model.select(model.doc):
        doc = row.doc
        if [LOCAL_ZONE, oid] in doc[members]:
            del_resource(doc, members, LOCAL_ZONE, oid)
            store.save("vdc", doc)
    if kind == "cluster":
        aclstore.delete_cluster_rules(oid)
    else:
        aclstore.delete_object_rules(TYPES[KIND_TYPE[kind]], oid)


def group_created(gid: int) -> None:
    """A new group joins the default VDC (GroupAPI::pool_allocate); inside the caller's
    transaction."""
    if store.exists("vdc", DEFAULT_ID):
        doc = store.load("vdc", DEFAULT_ID, for_update=True)
        add_group(doc, gid)
        store.save("vdc", doc)


def group_deleted(gid: int) -> None:
    """A deleted group leaves every VDC and its rules go (GroupAPI::drop); inside the
    caller's transaction."""
    aclstore.delete_group_rules(gid)
    model = store.KINDS["vdc"].model
    for row in model.select(model.doc):
        doc = row.doc
        if gid in doc["groups"]:
            doc["groups"] = [g for g in doc["groups"] if g != gid]
            store.save("vdc", doc)
