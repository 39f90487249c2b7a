"""Loading and saving pool objects: the structured document plus the bodies rendered from it,
written together so a stored body never disagrees with its document. Bodies are stored escaped
for the wire (``wire.Escaped``): a reply copies them out unchanged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from oneserver import db
from oneserver.documents import host as host_xml
from oneserver.documents import identity, infra, perms_to_int, tenancy
from oneserver.documents import image as image_xml
from oneserver.documents import network as network_xml
from oneserver.documents import vm as vm_xml
from oneserver.errors import not_found
from oneserver.wire import escape


@dataclass(frozen=True)
class Kind:
    model: type[db.PoolObject]
    table: str             # pool_control name, as oned's tables
    obj_name: str          # as in oned's messages ("virtual machine")
    columns: Callable[[dict[str, Any]], dict[str, Any]]


def _owned(doc: dict[str, Any]) -> dict[str, Any]:
    return {"uid": doc["uid"], "gid": doc["gid"], "perms": perms_to_int(doc["perms"])}


def _vm_columns(doc: dict[str, Any]) -> dict[str, Any]:
    hist = doc["history"]
    return {
        **_owned(doc), "state": doc["state"], "lcm_state": doc["lcm_state"],
        "host_id": hist[-1]["hid"] if hist else -1, "resched": doc["resched"],
        "body": escape(vm_xml.full(doc)), "short_body": escape(vm_xml.short(doc)),
        "ext_body": escape(vm_xml.full(doc, all_history=False)) if len(hist) > 1 else None,
    }


def _host_columns(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "state": doc["state"], "cluster_id": doc["cluster_id"], "im_mad": doc["im_mad"],
        "vm_mad": doc["vm_mad"], "body": escape(host_xml.host(doc)),
        "last_monitored": doc.get("last_monitored", 0),
    }


def _user_columns(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "gid": doc["gid"], "password": doc["password"], "auth_driver": doc["auth_driver"],
        "enabled": doc["enabled"], "groups": ",".join(str(g) for g in doc["groups"]),
        "body": escape(identity.user(doc)),
    }


KINDS: dict[str, Kind] = {
    "vm": Kind(db.VM, "vm_pool", "virtual machine", _vm_columns),
    "host": Kind(db.Host, "host_pool", "host", _host_columns),
    "user": Kind(db.User, "user_pool", "user", _user_columns),
    "group": Kind(db.Group, "group_pool", "group",
                  lambda d: {"body": escape(identity.group(d))}),
    "cluster": Kind(db.Cluster, "cluster_pool", "cluster",
                    lambda d: {"body": escape(infra.cluster(d))}),
    "datastore": Kind(db.Datastore, "datastore_pool", "datastore",
                      lambda d: {**_owned(d), "body": escape(infra.datastore(d))}),
    "template": Kind(db.VMTemplate, "template_pool", "virtual machine template",
                     lambda d: {**_owned(d), "body": escape(infra.vmtemplate(d))}),
    "image": Kind(db.Image, "image_pool", "image",
                  lambda d: {**_owned(d), "state": d["state"], "datastore_id": d["datastore_id"],
                             "body": escape(image_xml.image(d))}),
    "zone": Kind(db.Zone, "zone_pool", "zone", lambda d: {"body": escape(tenancy.zone(d))}),
    "vdc": Kind(db.Vdc, "vdc_pool", "VDC", lambda d: {"body": escape(tenancy.vdc(d))}),
    "vn": Kind(db.VNet, "network_pool", "virtual network",
                 lambda d: {**_owned(d), "parent_id": d["parent_id"],
                            "body": escape(network_xml.vnet(d)),
                            "short_body": escape(network_xml.vnet_short(d))}),
    "secgroup": Kind(db.SecGroup, "secgroup_pool", "security group",
                     lambda d: {**_owned(d), "body": escape(network_xml.secgroup(d))}),
    "vntemplate": Kind(db.VNTemplate, "vn_template_pool", "virtual network template",
                       lambda d: {**_owned(d), "body": escape(network_xml.vntemplate(d))}),
}

# Called with the document just before it is written (inside the caller's transaction), so a
# rule that spans kinds (a VM reaching DONE releases its images) holds on every write path.
BEFORE_SAVE: dict[str, list[Callable[[dict[str, Any]], None]]] = {}


def before_save(kind: str, hook: Callable[[dict[str, Any]], None]) -> None:
    hooks = BEFORE_SAVE.setdefault(kind, [])
    if hook not in hooks:
        hooks.append(hook)


def load(kind: str, oid: int, for_update: bool = False) -> dict[str, Any]:
    """The document of one object; NO_EXISTS when there is none. ``for_update`` locks the row on
    PostgreSQL (SQLite's IMMEDIATE transaction already holds the write lock)."""
    k = KINDS[kind]
    query = k.model.select(k.model.doc).where(k.model.oid == oid)
    if for_update and not db.is_sqlite():
        query = query.for_update()
    row = query.first()
    if row is None:
        raise not_found(k.obj_name, oid)
    doc: dict[str, Any] = row.doc
    return doc


def next_id(kind: str) -> int:
    """Reserve the id of a new object of that kind (ids are never reused)."""
    return db.next_oid(KINDS[kind].table)


def exists(kind: str, oid: int) -> bool:
    k = KINDS[kind]
    return k.model.select(k.model.oid).where(k.model.oid == oid).exists()


def insert(kind: str, doc: dict[str, Any]) -> None:
    k = KINDS[kind]
    k.model.insert(oid=doc["id"], name=doc["name"], doc=doc, **k.columns(doc)).execute()


def save(kind: str, doc: dict[str, Any]) -> None:
    k = KINDS[kind]
    for hook in BEFORE_SAVE.get(kind, ()):
        hook(doc)
    if "prev_state" in doc:
        # oned's VirtualMachinePool::update and HostPool::update call set_prev_state() before
        # writing, so a stored VM or host always shows PREV_STATE = STATE (7.4.0 replies).
        doc["prev_state"] = doc["state"]
        if "prev_lcm_state" in doc:
            doc["prev_lcm_state"] = doc["lcm_state"]
    k.model.update(name=doc["name"], doc=doc, **k.columns(doc)).where(
        k.model.oid == doc["id"]
    ).execute()


def delete(kind: str, oid: int) -> None:
    k = KINDS[kind]
    k.model.delete().where(k.model.oid == oid).execute()


def name_taken(kind: str, name: str, uid: int | None = None) -> int | None:
    """Id of the object of that kind with that name (per owner when ``uid`` is given)."""
    model = KINDS[kind].model
    query = model.select(model.oid).where(model.name == name)
    if uid is not None:
        assert issubclass(model, db.OwnedObject), kind  # only owned kinds are named per owner
        query = query.where(model.uid == uid)
    row = query.first()
    return None if row is None else row.oid
