"""``one.template.*`` and ``one.templatepool.*`` (VM templates, ``<VMTEMPLATE>``)."""

from __future__ import annotations

from oneserver import db, store, wakeup
from oneserver.api import Context, api, authz, generic
from oneserver.api import common as c
from oneserver.api.vm import allocate_vm
from oneserver.model.acl import Target
from oneserver.model.history import now
from oneserver.template import Template


def _insert(ctx: Context, name: str, tmpl: Template) -> int:
    oid = store.next_id("template")
    name = name or f"template-{oid}"
    c.valid_name(name)
    c.name_free("template", name, "TEMPLATE", ctx.caller.uid)
    doc = c.new_owned_doc(ctx, oid, name)
    tmpl.set("NAME", name)
    doc.update({"regtime": now(), "template": tmpl.to_json()})
    store.insert("template", doc)
    return oid


@api("one.template.allocate", "s")
def template_allocate(ctx: Context, text: str) -> int:
    ctx.authorize(Target("template"))
    tmpl = c.parse_template(text)
    authz.check_restricted(ctx.caller.is_admin, "template", [tmpl])
    name = tmpl.get_str("NAME")
    with db.write_transaction():
        return _insert(ctx, name, tmpl)


@api("one.template.clone", "isb", (False,))
def template_clone(ctx: Context, oid: int, name: str, recursive: bool) -> int:
    ctx.authorize(Target("template"))
    with db.write_transaction():
        src = c.load_checked(ctx, "template", oid)
        return _insert(ctx, name, Template.from_json(src["template"]))


@api("one.template.delete", "ib", (False,))
def template_delete(ctx: Context, oid: int, recursive: bool) -> int:
    with db.write_transaction():
        doc = c.load_checked(ctx, "template", oid, for_update=True)
        c.check_lock("template", doc, ctx.op.right)
        store.delete("template", oid)
    return oid


@api("one.template.instantiate", "isbsb", (False, "", False))
def template_instantiate(ctx: Context, oid: int, name: str, hold: bool, extra: str,
                         persistent: bool) -> int:
    extra_tmpl = c.parse_template(extra) if extra else Template()
    with db.write_transaction():
        doc = c.load_checked(ctx, "template", oid)
        c.check_lock("template", doc, ctx.op.right)
        tmpl = Template.from_json(doc["template"])
        tmpl.merge(extra_tmpl)
        tmpl.set("TEMPLATE_ID", str(oid))
        if name:
            tmpl.set("NAME", name)
        else:  # oned names it <template name>-<vm id>
            tmpl.remove("NAME")
            tmpl.set("TEMPLATE_NAME", doc["name"])
        # Only what the caller adds is checked for restricted attributes (as oned): the
        # template's own were checked when its owner wrote them.
        vmid = allocate_vm(ctx, tmpl, hold, given=extra_tmpl)
    if not hold:
        wakeup.notify()
    return vmid


@api("one.template.rename", "is")
def template_rename(ctx: Context, oid: int, name: str) -> int:
    result = c.rename(ctx, "template", oid, name, unique_per_owner=True)
    with db.write_transaction():
        doc = store.load("template", oid, for_update=True)
        tmpl = Template.from_json(doc["template"])
        tmpl.set("NAME", name)
        doc["template"] = tmpl.to_json()
        store.save("template", doc)
    return result


@api("one.template.info", "ibb", (False, False))
def template_info(ctx: Context, oid: int, extended: bool, decrypt: bool) -> str:
    return c.info(ctx, "template", oid)


@api("one.templatepool.info", "iii", (-1, -1))
def templatepool_info(ctx: Context, flag: int, start: int, end: int) -> str:
    return c.listing(ctx, "template", "VMTEMPLATE_POOL", flag, start, end)


generic.register("one.template", "template", "update", "chmod", "chown", "lock", "unlock")
