"""``one.vdc.*`` and ``one.vdcpool.info``: VDCs, whose groups get ACL rules on the clusters,
hosts, datastores and networks of the VDC (``oneserver.model.vdcs``). As oned's VdcAPI: every change
needs ADMIN on the VDC, on the group, and on the zone and the resource when they exist here."""

from __future__ import annotations

from oneserver import db, store
from oneserver.api import Context, api, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, INTERNAL, OneError, not_found
from oneserver.model import vdcs
from oneserver.model.acl import LOCAL_ZONE, Target

# Set -> the kind of its members here (None: a kind this server does not have yet) and how
# oned's messages name one.
MEMBERS: dict[str, tuple[str, str]] = {
    "clusters": ("cluster", "cluster"), "hosts": ("host", "host"),
    "datastores": ("datastore", "datastore"), "vnets": ("vn", "virtual network"),
}


@api("one.vdc.allocate", "s")
def vdc_allocate(ctx: Context, text: str) -> int:
    tmpl = c.parse_template(text)
    ctx.authorize(Target("vdc"))
    name = c.valid_name(tmpl.get_str("NAME"))
    tmpl.remove("NAME")
    with db.write_transaction():
        taken = store.name_taken("vdc", name)
        if taken is not None:
            raise OneError(INTERNAL, f"NAME is already taken by Vdc {taken}.")
        oid = store.next_id("vdc")
        store.insert("vdc", vdcs.new_doc(oid, name, tmpl.to_json()))
    return oid


@api("one.vdc.delete", "i")
def vdc_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        doc = c.load_checked(ctx, "vdc", oid, for_update=True)
        if oid < 100:
            raise OneError(ACTION, "Cannot delete VDC. System VDCs (ID < 100) cannot be "
                                   "deleted.")
        vdcs.drop(doc)
        store.delete("vdc", oid)
    return oid


def _edit_group(ctx: Context, oid: int, gid: int, adding: bool) -> int:
    with db.write_transaction():
        doc = c.load_checked(ctx, "vdc", oid, for_update=True)
        if store.exists("group", gid):
            ctx.authorize(c.target("group", store.load("group", gid)))
        elif adding:
            raise not_found("group", gid)
        (vdcs.add_group if adding else vdcs.del_group)(doc, gid)
        store.save("vdc", doc)
    return oid


@api("one.vdc.addgroup", "ii")
def vdc_addgroup(ctx: Context, oid: int, gid: int) -> int:
    return _edit_group(ctx, oid, gid, adding=True)


@api("one.vdc.delgroup", "ii")
def vdc_delgroup(ctx: Context, oid: int, gid: int) -> int:
    return _edit_group(ctx, oid, gid, adding=False)


def _edit_resource(ctx: Context, kind: str, oid: int, zid: int, rid: int,
                   adding: bool) -> int:
    """VdcAPI::edit_resource: the VDC, then the zone and (in this zone) the resource must
    exist to be added; each that exists needs ADMIN."""
    member, label = MEMBERS[kind]
    with db.write_transaction():
        doc = c.load_checked(ctx, "vdc", oid, for_update=True)
        if store.exists("zone", zid):
            ctx.authorize(c.target("zone", store.load("zone", zid)))
        elif adding:
            raise not_found("zone", zid)
        if rid != vdcs.ALL_RESOURCES and zid == LOCAL_ZONE:
            # Networks may not be a kind of this server yet: then none exists.
            if member in store.KINDS and store.exists(member, rid):
                ctx.authorize(c.target(member, store.load(member, rid)))
            elif adding:
                raise not_found(label, rid)
        (vdcs.add_resource if adding else vdcs.del_resource)(doc, kind, zid, rid)
        store.save("vdc", doc)
    return oid


def _register(verb: str, kind: str) -> None:
    for adding, prefix in ((True, "add"), (False, "del")):
        def handler(ctx: Context, oid: int, zid: int, rid: int, _adding: bool = adding
                    ) -> int:
            return _edit_resource(ctx, kind, oid, zid, rid, _adding)
        api(f"one.vdc.{prefix}{verb}", "iii")(handler)


for _verb, _kind in (("cluster", "clusters"), ("host", "hosts"), ("datastore", "datastores"),
                     ("vnet", "vnets")):
    _register(_verb, _kind)


@api("one.vdcpool.info")
def vdcpool_info(ctx: Context) -> str:
    return c.listing(ctx, "vdc", "VDC_POOL")


generic.register("one.vdc", "vdc", "info", "update", "rename")
