"""``one.vn.*`` and ``one.vnpool.info``: virtual networks, their address ranges, holds and
reservations (VirtualNetworkAPI). Leases change through ``oneserver.model.leases``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from oneserver import db, numeric, store
from oneserver.api import Context, api, authz, generic
from oneserver.api import common as c
from oneserver.documents import network as network_xml
from oneserver.errors import ACTION, AUTHORIZATION, INTERNAL, XML_RPC_API, OneError
from oneserver.model import address_range, leases, networks, vdcs
from oneserver.model.acl import MANAGE, Target
from oneserver.template import Template
from oneserver.wire import Escaped, escape

Doc = dict[str, Any]


def _cluster(ctx: Context, cid: int) -> Doc:
    cluster = store.load("cluster", 0 if cid < 0 else cid, for_update=True)
    ctx.authorize(c.target("cluster", cluster))
    return cluster


def insert(ctx: Context, tmpl: Template, clusters: list[Doc], parent: int = -1,
           template_id: int = -1) -> Doc:
    """A new network of the caller's from ``tmpl``, in ``clusters`` (inside the caller's
    transaction)."""
    name = tmpl.get_str("NAME")
    if name:
        c.valid_name(name)
        taken = store.name_taken("vn", name, ctx.caller.uid)
        if taken is not None:
            raise OneError(INTERNAL, f"NAME is already taken by NET {taken}.")
    oid = store.next_id("vn")
    owner = c.new_owned_doc(ctx, oid, name)
    try:
        doc = networks.new_doc(oid, owner, tmpl, [cl["id"] for cl in clusters], parent,
                               template_id)
    except networks.NetworkError as exc:
        raise OneError(INTERNAL, str(exc)) from None
    store.insert("vn", doc)
    for cl in clusters:
        cl["vnets"] = sorted({*cl["vnets"], oid})
        store.save("cluster", cl)
    return doc


@api("one.vn.allocate", "si", (-1,))
def vn_allocate(ctx: Context, text: str, cid: int) -> int:
    ctx.authorize(Target("vn"))
    tmpl = c.parse_template(text)
    _restricted(ctx, tmpl)
    with db.write_transaction():
        cluster = _cluster(ctx, cid)
        return int(insert(ctx, tmpl, [cluster])["id"])


def _restricted(ctx: Context, tmpl: Template, before: Template | None = None) -> None:
    authz.check_restricted(ctx.caller.is_admin, "vn", [tmpl], before)


def _keep_restricted(new: Template, old: Template) -> None:
    """As Template::check_restricted for an update by a user outside the oneadmin group: a
    restricted attribute left out is kept from the network; one given must not differ."""
    for name, member in authz.VNET_RESTRICTED:
        if member is None and name not in new and name in old:
            for value in old.get_all(name):
                new.add(name, value)
    try:
        authz.check_restricted(False, "vn", [new], old)
    except OneError as exc:
        attr = exc.message.rsplit(" ", 1)[-1].rstrip(".").split("/")[0]
        raise OneError(INTERNAL, "Cannot update template. Tried to change restricted "
                                 f"attribute: {attr}") from None


def _ready(doc: Doc, method: str) -> None:
    if doc["state"] not in (networks.READY, networks.UPDATE_FAILURE):
        raise OneError(ACTION, f"Could not execute {method}Virtual Network is in wrong state: "
                               f"{networks.STATE_NAMES[doc['state']]}", doc["id"])


def _checked(ctx: Context, oid: int) -> Doc:
    """The network, row-locked and checked for the call's right and against its lock (for
    calls that delete it, so cannot use ``common.changing``)."""
    doc = c.load_checked(ctx, "vn", oid, for_update=True)
    c.check_lock("vn", doc, ctx.op.right_on("vn", oid))
    return doc


def _drop(doc: Doc) -> None:
    """Delete a network: a reservation's addresses go back to its parent, and it leaves its
    clusters."""
    oid = doc["id"]
    if doc["parent_id"] != -1 and store.exists("vn", doc["parent_id"]):
        parent = store.load("vn", doc["parent_id"], for_update=True)
        leases.free_reservation(parent, oid)
        store.save("vn", parent)
    for cid in doc["clusters"]:
        if store.exists("cluster", cid):
            cl = store.load("cluster", cid, for_update=True)
            cl["vnets"] = [v for v in cl["vnets"] if v != oid]
            store.save("cluster", cl)
    store.delete("vn", oid)
    vdcs.resource_deleted("vn", oid)


@api("one.vn.delete", "i")
def vn_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        doc = _checked(ctx, oid)
        why = ""
        if networks.used(doc) > 0:
            why = "Can not remove a virtual network with leases in use"
        elif doc["state"] in (networks.LOCK_CREATE, networks.LOCK_DELETE, networks.DONE):
            why = ("Can not remove a Virtual Network, wrong state "
                   f"{networks.STATE_NAMES[doc['state']]}")
        if why:
            raise OneError(ACTION, f"Cannot delete virtual network. {why}", oid)
        _drop(doc)
    return oid


@api("one.vn.info", "ib", (False,))
def vn_info(ctx: Context, oid: int, decrypt: bool) -> str:
    """The stored body for whoever may MANAGE the network; for the others, only the leases of
    VMs and reservations they may USE (VirtualNetworkAPI::to_xml)."""
    if ctx.caller.is_admin:
        return c.info(ctx, "vn", oid)
    doc = c.load_checked(ctx, "vn", oid)
    if ctx.may(c.target("vn", doc), MANAGE):
        return c.info(ctx, "vn", oid)
    owners: dict[str, set[int]] = {"VM": set(), "VNET": set()}
    for ar in doc["ars"]:
        for packs in ar["allocated"].values():
            for pack in packs:
                kind = "VM" if pack & address_range.VM else "VNET"
                owners[kind].add(address_range.owner_id(pack))
    visible: network_xml.Visible = {"VROUTER": set()}
    for kind, model, name in (("VM", "vm", "VM"), ("VNET", "vn", "VNET")):
        ids = owners[kind]
        k = store.KINDS[model].model
        rows = k.select(k.doc).where(k.oid << list(ids)) if ids else []
        visible[name] = {r.doc["id"] for r in rows
                         if ctx.may(c.target(model, r.doc))
                         and (model == "vm" or r.doc["parent_id"] != -1)}
    return Escaped(escape(network_xml.vnet(doc, visible)))


@api("one.vn.update", "isi", (0,))
def vn_update(ctx: Context, oid: int, text: str, mode: int) -> int:
    if mode not in (0, 1):
        raise OneError(XML_RPC_API, "Wrong update type", oid)
    new = c.parse_template(text, "Cannot update template. ")
    with c.changing(ctx, "vn", oid) as doc:
        old = Template.from_json(doc["template"])
        if mode == 1:
            merged = old.copy()
            merged.merge(new)
            new = merged
        if not ctx.caller.is_admin:
            _keep_restricted(new, old)
        try:
            networks.updated_template(doc, new)
        except networks.NetworkError as exc:
            raise OneError(INTERNAL, f"Cannot update template. {exc}", oid) from None
    return oid


def _ar_template(text: str) -> Template:
    return c.parse_template(text)


@contextlib.contextmanager
def _changing_ranges(ctx: Context, oid: int) -> Iterator[Doc]:
    """``common.changing`` for add_ar and rm_ar, whose right depends on the network: ADMIN
    (the table's), or only MANAGE on a network made from a VN template."""
    with db.write_transaction():
        doc = store.load("vn", oid, for_update=True)
        right = ctx.op.right if doc["template_id"] == -1 else authz.RANGES_OF_TEMPLATED
        ctx.authorize(c.target("vn", doc), right)
        c.check_lock("vn", doc, right)
        yield doc
        store.save("vn", doc)


@api("one.vn.add_ar", "is")
def vn_add_ar(ctx: Context, oid: int, text: str) -> int:
    tmpl = _ar_template(text)
    with _changing_ranges(ctx, oid) as doc:
        definition = next(iter(tmpl.vectors("AR")), None)
        _ar_restricted(ctx, tmpl)
        _ready(doc, "one.vn.add_ar")
        if definition is None:
            raise OneError(INTERNAL, "Wrong AR definition. AR vector attribute is missing.",
                           oid)
        try:
            networks.add_ar(doc, definition)
        except address_range.ARError as exc:
            raise OneError(INTERNAL, str(exc), oid) from None
    return oid


def _ar_restricted(ctx: Context, tmpl: Template, before: Doc | None = None) -> None:
    if ctx.caller.is_admin:
        return
    for ar in tmpl.vectors("AR"):
        for name in authz.AR_RESTRICTED:
            if name in ar and (before is None or ar[name] != before["attrs"].get(name)):
                raise OneError(AUTHORIZATION, f"AR includes a restricted attribute "
                                                    f"{name}")


def _remove_ar(ctx: Context, oid: int, ar_id: int, force: bool) -> int:
    with (_changing_ranges(ctx, oid) if ctx.method == "one.vn.rm_ar"
          else c.changing(ctx, "vn", oid)) as doc:
        if doc["state"] not in (networks.READY, networks.UPDATE_FAILURE):
            raise OneError(ACTION, "Could not remove Adress Range, Virtual Network is in "
                                   f"wrong state: {networks.STATE_NAMES[doc['state']]}", oid)
        ar = networks.find_ar(doc, ar_id)
        if ar is None:
            raise OneError(INTERNAL, "Address Range does not exist", oid)
        if not force and address_range.used(ar) > 0:
            raise OneError(INTERNAL, "Address Range has leases in use", oid)
        doc["ars"].remove(ar)
        if doc["parent_id"] != -1 and store.exists("vn", doc["parent_id"]):
            parent = store.load("vn", doc["parent_id"], for_update=True)
            leases.free_reservation(parent, oid, ar)
            store.save("vn", parent)
    return oid


@api("one.vn.rm_ar", "iib", (False,))
def vn_rm_ar(ctx: Context, oid: int, ar_id: int, force: bool) -> int:
    return _remove_ar(ctx, oid, ar_id, force)


@api("one.vn.free_ar", "ii")
def vn_free_ar(ctx: Context, oid: int, ar_id: int) -> int:
    return _remove_ar(ctx, oid, ar_id, False)


@api("one.vn.update_ar", "is")
def vn_update_ar(ctx: Context, oid: int, text: str) -> int:
    tmpl = _ar_template(text)
    with c.changing(ctx, "vn", oid) as doc:
        _ready(doc, "one.vn.update_ar")
        given = next(iter(tmpl.vectors("AR")), None)
        if given is None:
            raise OneError(INTERNAL, "Wrong AR definition. AR vector attribute is missing.",
                           oid)
        ar_id = numeric.leading_uint(given.get("AR_ID", ""))
        if ar_id is None:
            raise OneError(INTERNAL, "AR/AR_ID attribute is missing.", oid)
        ar = networks.find_ar(doc, ar_id)
        if ar is None:
            raise OneError(INTERNAL, f"Address Range with ID {ar_id} was not found.", oid)
        _ar_restricted(ctx, tmpl, ar)
        try:
            address_range.update(ar, given, doc["parent_id"] != -1)
        except address_range.ARError as exc:
            raise OneError(INTERNAL, str(exc), oid) from None
    return oid


def _hold(ctx: Context, oid: int, text: str, release: bool) -> int:
    tmpl = c.parse_template(text)
    with c.changing(ctx, "vn", oid) as doc:
        _ready(doc, "one.vn.release" if release else "one.vn.hold")
        lease = next(iter(tmpl.vectors("LEASES")), None)
        if lease is None:
            raise OneError(INTERNAL, "Empty lease description.", oid)
        try:
            leases.hold(doc, lease, release)
        except OneError as exc:
            raise OneError(exc.code, exc.message, oid) from None
    return oid


@api("one.vn.hold", "is")
def vn_hold(ctx: Context, oid: int, text: str) -> int:
    return _hold(ctx, oid, text, release=False)


@api("one.vn.release", "is")
def vn_release(ctx: Context, oid: int, text: str) -> int:
    return _hold(ctx, oid, text, release=True)


@api("one.vn.reserve", "is")
def vn_reserve(ctx: Context, oid: int, text: str) -> int:
    tmpl = c.parse_template(text)
    with db.write_transaction():
        return _reserve(ctx, oid, tmpl)


def _reserve(ctx: Context, oid: int, tmpl: Template) -> int:
    """VirtualNetworkAPI::reserve: ``SIZE`` addresses of network ``oid`` into a new network
    (``NAME``) of the caller's, or into an earlier reservation (``NETWORK_ID``)."""
    num = numeric
    count = num.leading_int(tmpl.get_str("SIZE"))
    if count is None or count <= 0:
        raise OneError(ACTION, "Reservation SIZE must be a greater than 0", oid)
    target_id = num.leading_int(tmpl.get_str("NETWORK_ID")) if "NETWORK_ID" in tmpl else None
    target: Doc | None = None
    if target_id is not None:
        if target_id < 0:
            raise OneError(ACTION, "NETWORK_ID must be equal or greater than 0", oid)
        if target_id == oid:
            raise OneError(ACTION, "Cannot add a reservation from the same network", oid)
        target = store.load("vn", target_id, for_update=True)
        if target["parent_id"] == -1:
            raise OneError(ACTION, "Cannot add reservations to a non-reservation VNET", oid)
        if target["parent_id"] != oid:
            raise OneError(ACTION, f"New reservations for virtual network {target_id} have "
                                   f"to be from network {target['parent_id']}", oid)
    name = tmpl.get_str("NAME")
    if not name and target is None:
        raise OneError(ACTION, "NAME for reservation has to be set", oid)
    ar_id = num.leading_int(tmpl.get_str("AR_ID")) if "AR_ID" in tmpl else None
    if ar_id is not None and ar_id < 0:
        raise OneError(ACTION, "AR_ID must be equal or greater than 0", oid)
    start = next(((k, tmpl.get_str(k)) for k in ("IP", "IP6", "MAC") if tmpl.get_str(k)), None)
    if ar_id is None and start is not None:
        raise OneError(ACTION, "AR_ID must be specified for IP/MAC based reservations", oid)
    parent = store.load("vn", oid, for_update=True)
    if parent["parent_id"] != -1:
        raise OneError(ACTION, "Cannot reserve addresses from a reserved VNET", oid)
    ctx.authorize(c.target("vn", parent))  # USE on the parent
    if target is not None:
        ctx.authorize(c.target("vn", target), authz.RESERVATION_TARGET)
    else:
        rtmpl = Template.from_json(parent["template"])
        for attr in ("ERROR", "AR"):
            rtmpl.remove(attr)
        rtmpl.set("NAME", name)
        clusters = [store.load("cluster", cid, for_update=True) for cid in parent["clusters"]
                    if store.exists("cluster", cid)]
        target = insert(ctx, rtmpl, clusters, parent=oid)
    pack = address_range.owner(address_range.NET, target["id"])
    candidates = [a for a in parent["ars"] if ar_id is None or address_range.ar_id(a) == ar_id]
    for ar in candidates:
        child = address_range.reserve(ar, pack, count, start, target["next_ar"])
        if child is not None:
            target["next_ar"] += 1
            target["ars"].append(child)
            break
    else:
        raise OneError(ACTION, "Not enough free addresses in an address range", oid)
    store.save("vn", parent)
    store.save("vn", target)
    return int(target["id"])


@api("one.vn.recover", "ii")
def vn_recover(ctx: Context, oid: int, op: int) -> int:
    if op < 0 or op > 3:
        raise OneError(ACTION, "Wrong recovery operation code", oid)
    what = ("recover failure", "recover success", "recover delete", "recover retry")[op]
    allowed = ((networks.INIT, networks.LOCK_CREATE, networks.LOCK_DELETE),
               (networks.INIT, networks.LOCK_CREATE, networks.ERROR, networks.LOCK_DELETE,
                networks.UPDATE_FAILURE),
               (networks.INIT, networks.LOCK_CREATE, networks.LOCK_DELETE, networks.ERROR),
               (networks.UPDATE_FAILURE,))[op]
    with db.write_transaction():
        doc = _checked(ctx, oid)
        if doc["state"] not in allowed:
            raise OneError(INTERNAL, f"Could not perform '{what}' on VN {oid}, wrong state "
                                     f"{networks.STATE_NAMES[doc['state']]}.", oid)
        tmpl = Template.from_json(doc["template"])
        delete = False
        if op == 0:
            doc["state"] = networks.ERROR
            tmpl.set("ERROR", "Failure forced by user")
        elif op == 1:
            tmpl.remove("ERROR")
            delete = doc["state"] == networks.LOCK_DELETE
            doc["state"] = networks.READY
            doc["updated"] = sorted({*doc["updated"], *doc["outdated"]})
            doc["outdated"] = []
        elif op == 2:
            delete = True
        else:
            doc["state"] = networks.READY
        doc["template"] = tmpl.to_json()
        if delete:
            _drop(doc)
        else:
            store.save("vn", doc)
    return oid


@api("one.vnpool.info", "iii", (-2, -1, -1))
def vnpool_info(ctx: Context, flag: int, start: int, end: int) -> str:
    return c.listing(ctx, "vn", "VNET_POOL", flag, start, end, column="short_body")


generic.register("one.vn", "vn", "chmod", "chown", "lock", "unlock", "rename",
                 names_per_owner=True)
