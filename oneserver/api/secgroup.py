"""``one.secgroup.*`` and ``one.secgrouppool.info`` (SecurityGroupAPI). Group 0, ``default``,
exists from the first start and lets everything in and out."""

from __future__ import annotations

from oneserver import db, store
from oneserver.api import Context, api, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, INTERNAL, XML_RPC_API, OneError
from oneserver.model import secgroups
from oneserver.model.acl import Target
from oneserver.template import Template


def _checked_template(text: str, prefix: str = "") -> Template:
    tmpl = c.parse_template(text, prefix)
    try:
        return secgroups.check_template(tmpl)
    except secgroups.RuleError as exc:
        raise OneError(INTERNAL, f"{prefix}{exc}") from None


def _insert(ctx: Context, name: str, tmpl: Template) -> int:
    c.valid_name(name)
    taken = store.name_taken("secgroup", name, ctx.caller.uid)
    if taken is not None:
        raise OneError(INTERNAL, f"NAME is already taken by SECGROUP {taken}.")
    oid = store.next_id("secgroup")
    owner = c.new_owned_doc(ctx, oid, name)
    store.insert("secgroup", secgroups.new_doc(oid, owner, name, tmpl))
    return oid


@api("one.secgroup.allocate", "s")
def secgroup_allocate(ctx: Context, text: str) -> int:
    ctx.authorize(Target("secgroup"))
    tmpl = _checked_template(text)
    name = tmpl.get_str("NAME")
    tmpl.remove("NAME")
    if not name:
        raise OneError(INTERNAL, "No NAME in template for Security Group.")
    with db.write_transaction():
        return _insert(ctx, name, tmpl)


@api("one.secgroup.clone", "is")
def secgroup_clone(ctx: Context, oid: int, name: str) -> int:
    with db.write_transaction():
        src = c.load_checked(ctx, "secgroup", oid)
        ctx.authorize(Target("secgroup"))
        return _insert(ctx, name, Template.from_json(src["template"]))


@api("one.secgroup.delete", "i")
def secgroup_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        sg = c.load_checked(ctx, "secgroup", oid, for_update=True)
        if oid == secgroups.DEFAULT_ID:
            raise OneError(ACTION, "Cannot delete security group. The default security group "
                                   "(ID 0) cannot be deleted.", oid)
        if any(sg[name] for name in secgroups.VM_LISTS):
            raise OneError(ACTION, "Cannot delete security group. The security group has VMs "
                                   "using it", oid)
        store.delete("secgroup", oid)
    return oid


@api("one.secgroup.update", "isi", (0,))
def secgroup_update(ctx: Context, oid: int, text: str, mode: int) -> int:
    if mode not in (0, 1):
        raise OneError(XML_RPC_API, "Wrong update type", oid)
    new = _checked_template(text, "Cannot update template. ")
    with c.changing(ctx, "secgroup", oid) as sg:
        if mode == 1:
            merged = Template.from_json(sg["template"])
            merged.merge(new)
            new = _checked_template(merged.to_text(), "Cannot update template. ")
        sg["template"] = new.to_json()
    return oid


@api("one.secgroup.commit", "ib", (False,))
def secgroup_commit(ctx: Context, oid: int, recover: bool) -> int:
    """New rules reach the VMs that use the group: each VM's SECURITY_GROUP_RULEs of this
    group are written again from the group's rules (SecurityGroup::commit, then the LCM's
    updatesg). Applying them on a host is the VN driver's."""
    with c.changing(ctx, "secgroup", oid) as sg:
        vms = sorted({*sg["outdated"], *sg["updating"], *sg["error"]} if recover
                     else {*sg["updated"], *sg["outdated"], *sg["updating"], *sg["error"]})
        rules = secgroups.rules_of(sg)
        for vm_id in vms:
            if store.exists("vm", vm_id):
                vm = store.load("vm", vm_id, for_update=True)
                tmpl = Template.from_json(vm["template"])
                keep = [(k, v) for k, v in tmpl.items
                        if not (k == "SECURITY_GROUP_RULE" and isinstance(v, dict)
                                and v.get("SECURITY_GROUP_ID") == str(oid))]
                vm["template"] = Template(keep + [("SECURITY_GROUP_RULE", r) for r in rules]
                                          ).to_json()
                store.save("vm", vm)
        for name in ("outdated", "updating", "error"):
            sg[name] = []
        sg["updated"] = sorted({*sg["updated"], *vms})
    return oid


@api("one.secgrouppool.info", "iii", (-2, -1, -1))
def secgrouppool_info(ctx: Context, flag: int, start: int, end: int) -> str:
    return c.listing(ctx, "secgroup", "SECURITY_GROUP_POOL", flag, start, end)


generic.register("one.secgroup", "secgroup", "info", "chmod", "chown", "rename",
                 names_per_owner=True)
