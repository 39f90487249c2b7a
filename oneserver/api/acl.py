"""``one.acl.*``: ACL rules (evaluated by ``oneserver.acl``)."""

from __future__ import annotations

from oneserver import db
from oneserver.acl import Target, rule_string
from oneserver.api import Context, api
from oneserver.documents import identity as xml
from oneserver.documents import pool
from oneserver.errors import INTERNAL, OneError, not_found

# The ACL object: no rule can grant rights on it, so only the oneadmin group passes.
ACL = Target("acl")


def _hex(value: str, what: str) -> int:
    try:
        return int(value, 16)
    except ValueError:
        raise OneError(INTERNAL, f"Error parsing rule: {what} is not hexadecimal") from None


@api("one.acl.addrule", "ssss", ("",))
def acl_addrule(ctx: Context, user: str, resource: str, rights: str, zone: str) -> int:
    ctx.authorize(ACL)
    u, r, rt = _hex(user, "user"), _hex(resource, "resource"), _hex(rights, "rights")
    z = _hex(zone, "zone") if zone else 0x400000000
    if rt == 0 or rt & ~0xF:
        raise OneError(INTERNAL, "Error parsing rule: wrong rights")
    with db.write_transaction():
        same = db.Acl.select().where((db.Acl.user == u) & (db.Acl.resource == r)
                                     & (db.Acl.rights == rt) & (db.Acl.zone == z)).first()
        if same is not None:
            raise OneError(INTERNAL, f"Rule already exists with ID {same.oid}.")
        oid = db.next_oid("acl")
        db.Acl.create(oid=oid, user=u, resource=r, rights=rt, zone=z)
    return oid


@api("one.acl.delrule", "i")
def acl_delrule(ctx: Context, oid: int) -> int:
    ctx.authorize(ACL)
    with db.write_transaction():
        if db.Acl.delete().where(db.Acl.oid == oid).execute() == 0:
            raise not_found("ACL", oid)
    return oid


@api("one.acl.info")
def acl_info(ctx: Context) -> str:
    ctx.authorize(ACL)
    rules = [
        xml.acl({"id": r.oid, "user": r.user, "resource": r.resource, "rights": r.rights,
                 "zone": r.zone, "string": rule_string(r.user, r.resource, r.rights, r.zone)})
        for r in db.Acl.select().order_by(db.Acl.oid)
    ]
    return pool("ACL_POOL", rules)
