"""``one.acl.*``: ACL rules (evaluated by ``oneserver.model.acl``)."""

from __future__ import annotations

from oneserver import db, numeric
from oneserver.api import Context, api
from oneserver.documents import identity as xml
from oneserver.documents import pool
from oneserver.errors import not_found
from oneserver.model import aclstore
from oneserver.model.acl import INDIVIDUAL, Target, rule_string

# The ACL object: no rule can grant rights on it, so only the oneadmin group passes.
ACL = Target("acl")


@api("one.acl.addrule", "ssss", ("",))
def acl_addrule(ctx: Context, user: str, resource: str, rights: str, zone: str) -> int:
    ctx.authorize(ACL)
    # As AclAPI::add_rule: each part is the hex number a C++ stream reads into a long long
    # (never an error: no number reads 0, too long a number the largest one); no zone is
    # this zone, #0.
    u, r, rt = (numeric.leading_hex64(part) for part in (user, resource, rights))
    z = numeric.leading_hex64(zone) if zone else INDIVIDUAL | 0
    with db.write_transaction():
        oid = aclstore.add(u, r, rt, z)
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
        for r in db.Acl.select().order_by(db.Acl.user, db.Acl.oid)
    ]
    return pool("ACL_POOL", rules)
