"""``one.datastore.*`` and ``one.datastorepool.*`` (the image side lives with images)."""

from __future__ import annotations

from typing import Any

from oneserver import db, settings, store
from oneserver.api import Context, api, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, ALLOCATE, OneError
from oneserver.model import vdcs
from oneserver.model.acl import Target
from oneserver.template import Template

TYPES = {"IMAGE_DS": 0, "SYSTEM_DS": 1, "FILE_DS": 2}


def new_datastore(ctx: Context, oid: int, name: str, tmpl: Template, clusters: list[int]
                  ) -> dict[str, Any]:
    type_name = tmpl.get_str("TYPE", "IMAGE_DS").upper()
    if type_name not in TYPES:
        raise OneError(ALLOCATE, f"Error allocating a new datastore. Unknown TYPE {type_name}")
    ds_mad = tmpl.get_str("DS_MAD", "-" if type_name == "SYSTEM_DS" else "")
    tm_mad = tmpl.get_str("TM_MAD")
    if not tm_mad:
        raise OneError(ALLOCATE, "Error allocating a new datastore. No TM_MAD in template.")
    if not ds_mad:
        raise OneError(ALLOCATE, "Error allocating a new datastore. No DS_MAD in template.")
    tmpl.set("TYPE", type_name)
    tmpl.remove("NAME")
    # Where images may be registered from, unless the template says: oned 7.4's defaults.
    for attr, value in (("RESTRICTED_DIRS", "/"), ("SAFE_DIRS", "/var/tmp")):
        if attr not in tmpl:
            tmpl.set(attr, value)
    doc = c.new_owned_doc(ctx, oid, name)
    doc["perms"] = [1, 1, 0, 1, 0, 0, 0, 0, 0]
    doc.update({
        "ds_mad": ds_mad, "tm_mad": tm_mad,
        "base_path": f"{settings.current().datastores_dir}/{oid}",
        "type": TYPES[type_name], "disk_type": 0, "state": 0, "clusters": clusters,
        "total_mb": 0, "free_mb": 0, "used_mb": 0, "images": [], "template": tmpl.to_json(),
    })
    return doc


@api("one.datastore.allocate", "si", (-1,))
def datastore_allocate(ctx: Context, text: str, cluster_id: int) -> int:
    ctx.authorize(Target("datastore"))
    tmpl = c.parse_template(text)
    name = tmpl.get_str("NAME")
    if not name:
        raise OneError(ALLOCATE, "Error allocating a new datastore. No NAME in template.")
    c.valid_name(name)
    with db.write_transaction():
        c.name_free("datastore", name, "DATASTORE")
        cid = cluster_id if cluster_id >= 0 else 0
        cluster = store.load("cluster", cid, for_update=True)
        oid = store.next_id("datastore")
        store.insert("datastore", new_datastore(ctx, oid, name, tmpl, [cid]))
        cluster["datastores"].append(oid)
        store.save("cluster", cluster)
    return oid


@api("one.datastore.delete", "i")
def datastore_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        ds = c.load_checked(ctx, "datastore", oid, for_update=True)
        if ds["images"]:
            raise OneError(ACTION, "Cannot delete datastore: it has images", oid)
        if oid in (0, 1, 2) and ds["type"] == 1:
            used = db.VM.select().where(db.VM.state != 6).exists()
            if used:
                raise OneError(ACTION, "Cannot delete a system datastore in use", oid)
        for cid in ds["clusters"]:
            cl = store.load("cluster", cid, for_update=True)
            if oid in cl["datastores"]:
                cl["datastores"].remove(oid)
                store.save("cluster", cl)
        store.delete("datastore", oid)
        vdcs.resource_deleted("datastore", oid)
    return oid


@api("one.datastore.enable", "ib")
def datastore_enable(ctx: Context, oid: int, enable: bool) -> int:
    with c.changing(ctx, "datastore", oid) as ds:
        if ds["type"] != 1:
            raise OneError(ACTION, "Only system datastores can be enabled or disabled", oid)
        ds["state"] = 0 if enable else 1
    return oid


@api("one.datastorepool.info")
def datastorepool_info(ctx: Context) -> str:
    return c.listing(ctx, "datastore", "DATASTORE_POOL")


generic.register("one.datastore", "datastore", "update", "rename", "chmod", "chown", "info")
