"""``one.group.*`` and ``one.grouppool.*``."""

from __future__ import annotations

from oneserver import db, store
from oneserver.api import Context, api, generic
from oneserver.api import common as c
from oneserver.documents import identity as xml
from oneserver.documents import pool
from oneserver.errors import ACTION, OneError
from oneserver.model import vdcs
from oneserver.model.acl import Target

RESERVED_GROUPS = (0, 1)


@api("one.group.allocate", "s")
def group_allocate(ctx: Context, name: str) -> int:
    ctx.authorize(Target("group"))
    c.valid_name(name)
    with db.write_transaction():
        c.name_free("group", name, "GROUP")
        oid = store.next_id("group")
        store.insert("group", {"id": oid, "name": name, "template": [], "users": [],
                               "admins": []})
        vdcs.group_created(oid)
    return oid


@api("one.group.delete", "i")
def group_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        doc = c.load_checked(ctx, "group", oid, for_update=True)
        if oid in RESERVED_GROUPS:
            raise OneError(ACTION, "Cannot delete reserved group", oid)
        if doc["users"]:
            raise OneError(ACTION, "Cannot delete group, it contains users", oid)
        store.delete("group", oid)
        vdcs.group_deleted(oid)
    return oid


@api("one.group.info", "ib", (False,))
def group_info(ctx: Context, oid: int, decrypt: bool) -> str:
    oid = ctx.caller.gid if oid == -1 else oid
    return xml.group(c.load_checked(ctx, "group", oid))


@api("one.grouppool.info")
def grouppool_info(ctx: Context) -> str:
    rows = db.Group.select(db.Group.oid, db.Group.doc).order_by(db.Group.oid.desc())
    bodies = [xml.group_in_pool(r.doc) for r in rows
              if ctx.may(c.target("group", r.doc))]
    return pool("GROUP_POOL", bodies, xml.DEFAULT_GROUP_QUOTAS)


generic.register("one.group", "group", "update")
