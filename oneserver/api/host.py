"""``one.host.*`` and ``one.hostpool.*``."""

from __future__ import annotations

import time
from typing import Any

from oneserver import db, store, wakeup
from oneserver.api import Context, api, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, ALLOCATE, XML_RPC_API, OneError
from oneserver.model import vdcs
from oneserver.model.acl import Target
from oneserver.model.vmstate import HostState
from oneserver.template import Template


def new_host(oid: int, name: str, im: str, vmm: str, cluster: dict[str, Any]) -> dict[str, Any]:
    tmpl = Template([("IM_MAD", im), ("VM_MAD", vmm), ("RESERVED_CPU", ""),
                     ("RESERVED_MEM", "")])
    return {
        "id": oid, "name": name, "state": int(HostState.INIT), "prev_state": int(HostState.INIT),
        "im_mad": im, "vm_mad": vmm, "cluster_id": cluster["id"], "cluster": cluster["name"],
        "share": {"mem_usage": 0, "cpu_usage": 0, "total_mem": 0, "total_cpu": 0,
                  "max_mem": 0, "max_cpu": 0, "running_vms": 0},
        "datastores": {"disk_usage": 0, "free_disk": 0, "max_disk": 0, "used_disk": 0},
        "vms": [], "template": tmpl.to_json(), "monitoring": None, "last_monitored": 0,
    }


@api("one.host.allocate", "sssi", (-1,))
def host_allocate(ctx: Context, name: str, im: str, vmm: str, cluster_id: int) -> int:
    ctx.authorize(Target("host"))
    for value, what in ((name, "NAME"), (im, "IM_MAD"), (vmm, "VM_MAD")):
        if not value.strip():
            raise OneError(ALLOCATE, f"Error allocating a new host. {what} cannot be empty.")
    c.valid_name(name)
    with db.write_transaction():
        c.name_free("host", name, "HOST")
        cluster = store.load("cluster", cluster_id if cluster_id >= 0 else 0, for_update=True)
        oid = store.next_id("host")
        store.insert("host", new_host(oid, name, im, vmm, cluster))
        cluster["hosts"].append(oid)
        store.save("cluster", cluster)
    wakeup.notify()
    return oid


@api("one.host.delete", "i")
def host_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        host = c.load_checked(ctx, "host", oid, for_update=True)
        if host["vms"]:
            raise OneError(ACTION, "Can not remove a host with running VMs", oid)
        cluster = store.load("cluster", host["cluster_id"], for_update=True)
        if oid in cluster["hosts"]:
            cluster["hosts"].remove(oid)
            store.save("cluster", cluster)
        store.delete("host", oid)
        vdcs.resource_deleted("host", oid)
        db.HostMonitoring.delete().where(db.HostMonitoring.host_id == oid).execute()
    return oid


@api("one.host.status", "ii")
def host_status(ctx: Context, oid: int, status: int) -> int:
    new = {0: HostState.INIT, 1: HostState.DISABLED, 2: HostState.OFFLINE}.get(status)
    if new is None:
        raise OneError(XML_RPC_API, "Wrong status code", oid)
    with db.write_transaction():
        host = c.load_checked(ctx, "host", oid, for_update=True)
        if not (status == 0 and host["state"] in (HostState.MONITORED, HostState.INIT)):
            host["prev_state"], host["state"] = host["state"], int(new)
            if status == 0:
                host["last_monitored"] = 0  # monitor it again at once
            store.save("host", host)
    wakeup.notify()
    return oid


@api("one.host.update", "isi", (0,))
def host_update(ctx: Context, oid: int, text: str, mode: int) -> int:
    result = c.update(ctx, "host", oid, text, mode)
    wakeup.notify()  # capacity limits (RESERVED_*) or requirements may have changed
    return result


@api("one.host.monitoring", "i")
def host_monitoring(ctx: Context, oid: int) -> str:
    c.load_checked(ctx, "host", oid)
    rows = (db.HostMonitoring.select(db.HostMonitoring.body)
            .where(db.HostMonitoring.host_id == oid).order_by(db.HostMonitoring.timestamp))
    return "<MONITORING_DATA>" + "".join(r.body for r in rows) + "</MONITORING_DATA>"


@api("one.hostpool.info")
def hostpool_info(ctx: Context) -> str:
    return c.listing(ctx, "host", "HOST_POOL")


@api("one.hostpool.monitoring", "i", (-1,))
def hostpool_monitoring(ctx: Context, seconds: int) -> str:
    q = db.HostMonitoring.select(db.HostMonitoring.host_id, db.HostMonitoring.body)
    if seconds > 0:
        q = q.where(db.HostMonitoring.timestamp >= int(time.time()) - seconds)
    rows = list(q.order_by(db.HostMonitoring.host_id, db.HostMonitoring.timestamp))
    if not ctx.caller.is_admin:  # only the hosts the caller may USE, as hostpool.info
        visible = {r.oid for r in db.Host.select(db.Host.oid, db.Host.doc)
                   if ctx.may(c.target("host", r.doc))}
        rows = [r for r in rows if r.host_id in visible]
    if seconds == 0:
        last = {r.host_id: r.body for r in rows}
        return "<MONITORING_DATA>" + "".join(last.values()) + "</MONITORING_DATA>"
    return "<MONITORING_DATA>" + "".join(r.body for r in rows) + "</MONITORING_DATA>"


generic.register("one.host", "host", "rename", "info")
