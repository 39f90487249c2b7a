"""``one.cluster.*`` and ``one.clusterpool.*``."""

from __future__ import annotations

from oneserver import db, store
from oneserver.api import Context, api, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, OneError
from oneserver.model import vdcs
from oneserver.model.acl import Target


@api("one.cluster.allocate", "s")
def cluster_allocate(ctx: Context, name: str) -> int:
    ctx.authorize(Target("cluster"))
    c.valid_name(name)
    with db.write_transaction():
        c.name_free("cluster", name, "CLUSTER")
        oid = store.next_id("cluster")
        store.insert("cluster", {"id": oid, "name": name, "hosts": [], "datastores": [],
                                 "vnets": [], "template": []})
    return oid


@api("one.cluster.delete", "i")
def cluster_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        cl = c.load_checked(ctx, "cluster", oid, for_update=True)
        if cl["hosts"] or cl["datastores"] or cl["vnets"]:
            raise OneError(ACTION, "Cannot delete cluster. Cluster has hosts, datastores or "
                                   "networks", oid)
        store.delete("cluster", oid)
        vdcs.resource_deleted("cluster", oid)
    return oid


@api("one.cluster.rename", "is")
def cluster_rename(ctx: Context, oid: int, name: str) -> int:
    result = c.rename(ctx, "cluster", oid, name, unique_per_owner=False)
    with db.write_transaction():
        for hid in store.load("cluster", oid)["hosts"]:
            host = store.load("host", hid, for_update=True)
            host["cluster"] = name
            store.save("host", host)
    return result


@api("one.clusterpool.info")
def clusterpool_info(ctx: Context) -> str:
    return c.listing(ctx, "cluster", "CLUSTER_POOL")


def _move_host(ctx: Context, cid: int, hid: int, to_default: bool) -> int:
    with db.write_transaction():
        named = c.load_checked(ctx, "cluster", cid, for_update=True)
        target = store.load("cluster", 0, for_update=True) if to_default else named
        host = c.load_checked(ctx, "host", hid, for_update=True)
        if to_default and host["cluster_id"] != cid:
            raise OneError(ACTION, f"Host {hid} is not in cluster {cid}", cid)
        old = store.load("cluster", host["cluster_id"], for_update=True)
        if hid in old["hosts"]:
            old["hosts"].remove(hid)
            store.save("cluster", old)
        target = store.load("cluster", target["id"], for_update=True)
        target["hosts"].append(hid)
        store.save("cluster", target)
        host["cluster_id"], host["cluster"] = target["id"], target["name"]
        store.save("host", host)
    return cid


@api("one.cluster.addhost", "ii")
def cluster_addhost(ctx: Context, cid: int, hid: int) -> int:
    return _move_host(ctx, cid, hid, to_default=False)


@api("one.cluster.delhost", "ii")
def cluster_delhost(ctx: Context, cid: int, hid: int) -> int:
    return _move_host(ctx, cid, hid, to_default=True)


def _datastore_membership(ctx: Context, cid: int, ds_id: int, add: bool) -> int:
    with db.write_transaction():
        cl = c.load_checked(ctx, "cluster", cid, for_update=True)
        ds = c.load_checked(ctx, "datastore", ds_id, for_update=True)
        if add and ds_id not in cl["datastores"]:
            cl["datastores"].append(ds_id)
            ds["clusters"].append(cid)
        elif not add:
            if ds_id not in cl["datastores"]:
                raise OneError(ACTION, f"Datastore {ds_id} is not in cluster {cid}", cid)
            cl["datastores"].remove(ds_id)
            ds["clusters"].remove(cid)
        store.save("cluster", cl)
        store.save("datastore", ds)
    return cid


@api("one.cluster.adddatastore", "ii")
def cluster_adddatastore(ctx: Context, cid: int, ds_id: int) -> int:
    return _datastore_membership(ctx, cid, ds_id, add=True)


@api("one.cluster.deldatastore", "ii")
def cluster_deldatastore(ctx: Context, cid: int, ds_id: int) -> int:
    return _datastore_membership(ctx, cid, ds_id, add=False)


def _vnet_membership(ctx: Context, cid: int, vn_id: int, add: bool) -> int:
    with db.write_transaction():
        cl = c.load_checked(ctx, "cluster", cid, for_update=True)
        vn = c.load_checked(ctx, "vn", vn_id, for_update=True)
        if add:
            cl["vnets"] = sorted({*cl["vnets"], vn_id})
            vn["clusters"] = sorted({*vn["clusters"], cid})
        else:
            if vn_id not in cl["vnets"]:
                raise OneError(ACTION, f"Virtual network {vn_id} is not in cluster {cid}", cid)
            cl["vnets"].remove(vn_id)
            vn["clusters"] = [x for x in vn["clusters"] if x != cid]
        store.save("cluster", cl)
        store.save("vn", vn)
    return cid


@api("one.cluster.addvnet", "ii")
def cluster_addvnet(ctx: Context, cid: int, vn_id: int) -> int:
    return _vnet_membership(ctx, cid, vn_id, add=True)


@api("one.cluster.delvnet", "ii")
def cluster_delvnet(ctx: Context, cid: int, vn_id: int) -> int:
    return _vnet_membership(ctx, cid, vn_id, add=False)


generic.register("one.cluster", "cluster", "update", "info")
