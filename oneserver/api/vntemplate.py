"""``one.vntemplate.*`` and ``one.vntemplatepool.info`` (VNTemplateAPI): network templates,
instantiated into networks of the caller's that remember them (TEMPLATE_ID)."""

from __future__ import annotations

from oneserver import db, store
from oneserver.api import Context, api, authz, generic
from oneserver.api import common as c
from oneserver.api.vn import insert as insert_network
from oneserver.errors import ALLOCATE, AUTHORIZATION, INTERNAL, OneError
from oneserver.model.acl import Target
from oneserver.model.history import now
from oneserver.template import Template


def _insert(ctx: Context, name: str, tmpl: Template) -> int:
    c.valid_name(name)
    taken = store.name_taken("vntemplate", name, ctx.caller.uid)
    if taken is not None:
        raise OneError(INTERNAL, f"NAME is already taken by VNTEMPLATE {taken}.")
    oid = store.next_id("vntemplate")
    store.insert("vntemplate", {**c.new_owned_doc(ctx, oid, name), "regtime": now(),
                                "template": tmpl.to_json()})
    return oid


@api("one.vntemplate.allocate", "s")
def vntemplate_allocate(ctx: Context, text: str) -> int:
    ctx.authorize(Target("vntemplate"))
    tmpl = c.parse_template(text)
    authz.check_restricted(ctx.caller.is_admin, "vn", [tmpl])
    name = tmpl.get_str("NAME")
    tmpl.remove("NAME")
    if not name:
        raise OneError(INTERNAL, "No NAME in template for Virtual Network Template.")
    with db.write_transaction():
        return _insert(ctx, name, tmpl)


@api("one.vntemplate.clone", "is")
def vntemplate_clone(ctx: Context, oid: int, name: str) -> int:
    with db.write_transaction():
        src = c.load_checked(ctx, "vntemplate", oid)
        ctx.authorize(Target("vntemplate"))
        return _insert(ctx, name, Template.from_json(src["template"]))


@api("one.vntemplate.delete", "i")
def vntemplate_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        doc = c.load_checked(ctx, "vntemplate", oid, for_update=True)
        c.check_lock("vntemplate", doc, ctx.op.right_on("vntemplate", oid))
        store.delete("vntemplate", oid)
    return oid


def _merge(ctx: Context, tmpl: Template, extra: Template) -> None:
    """VNTemplateAPI::merge: the caller's ARs are added, the rest merged; restricted
    attributes only from the oneadmin group."""
    ars = extra.remove("AR")
    if not ctx.caller.is_admin:
        for ar in ars:
            for name in authz.AR_RESTRICTED:
                if isinstance(ar, dict) and name in ar:
                    raise OneError(AUTHORIZATION, "Extra Template includes a restricted "
                                                  f"attribute AR/{name}")
        try:
            authz.check_restricted(False, "vn", [extra], tmpl)
        except OneError as exc:
            raise OneError(AUTHORIZATION, exc.message.replace(
                "VNET Template", "Extra Template").rstrip(".")) from None
    for ar in ars:
        tmpl.add("AR", ar)
    tmpl.merge(extra)


@api("one.vntemplate.instantiate", "iss", ("",))
def vntemplate_instantiate(ctx: Context, oid: int, name: str, extra: str) -> int:
    given = c.parse_template(extra) if extra.strip() else Template()
    with db.write_transaction():
        src = c.load_checked(ctx, "vntemplate", oid)
        tmpl = Template.from_json(src["template"])
        if len(given):
            _merge(ctx, tmpl, given)
        tmpl.remove("NAME")
        tmpl.set("TEMPLATE_NAME", src["name"])
        if name:
            tmpl.set("NAME", name)
        wanted = {int(x) for x in tmpl.get_str("CLUSTER_IDS").split(",") if x.strip().isdigit()}
        clusters = [store.load("cluster", cid, for_update=True) for cid in sorted(wanted)
                    if store.exists("cluster", cid)]
        if not tmpl.get_str("CLUSTER_IDS"):
            clusters = [store.load("cluster", 0, for_update=True)]
        try:
            doc = insert_network(ctx, tmpl, clusters, template_id=oid)
        except OneError as exc:
            raise OneError(ALLOCATE, exc.message) from None
    return int(doc["id"])


@api("one.vntemplatepool.info", "iii", (-2, -1, -1))
def vntemplatepool_info(ctx: Context, flag: int, start: int, end: int) -> str:
    return c.listing(ctx, "vntemplate", "VNTEMPLATE_POOL", flag, start, end)


generic.register("one.vntemplate", "vntemplate", "info", "update", "chmod", "chown", "lock",
                 "unlock", "rename", names_per_owner=True)
