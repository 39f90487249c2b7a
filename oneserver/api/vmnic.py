"""``one.vm.attachnic`` and ``one.vm.detachnic``: a NIC added to or taken from a VM, its lease
with it (``oneserver.model.nic_hotplug``); on a running VM the core runs the VMM's hotplug.
``one.vm.attachsg`` and ``one.vm.detachsg``: a security group on one NIC of a VM."""

from __future__ import annotations

from typing import Any

from oneserver import store, wakeup
from oneserver.api import Context, api, authz
from oneserver.api import common as c
from oneserver.model import capabilities, nic_hotplug, operations


def _host_vm_mad(vm: dict[str, Any]) -> str | None:
    hist = vm["history"]
    if not hist or not store.exists("host", hist[-1]["hid"]):
        return None
    return str(store.load("host", hist[-1]["hid"])["vm_mad"])


@api("one.vm.attachnic", "is")
def vm_attachnic(ctx: Context, oid: int, text: str) -> int:
    given = c.parse_template(text)
    authz.check_restricted(ctx.caller.is_admin, "vm", [given])
    with c.changing(ctx, "vm", oid) as vm:
        vm_mad = _host_vm_mad(vm)
        if vm_mad is not None and nic_hotplug.running(vm):
            capabilities.require(vm_mad, "nic-attach", vm)
        ops = nic_hotplug.attach(vm, given, lambda kind, obj: ctx.authorize(c.target(kind, obj)),
                                 ctx.caller.uid, ctx.caller.gid)
        operations.enqueue(vm, ops)
    if ops:
        wakeup.notify()
    return oid


@api("one.vm.detachnic", "ii")
def vm_detachnic(ctx: Context, oid: int, nic_id: int) -> int:
    with c.changing(ctx, "vm", oid) as vm:
        vm_mad = _host_vm_mad(vm)
        if vm_mad is not None and nic_hotplug.running(vm):
            capabilities.require(vm_mad, "nic-detach", vm)
        ops = nic_hotplug.detach(vm, nic_id, ctx.caller.uid, ctx.caller.gid)
        operations.enqueue(vm, ops)
    if ops:
        wakeup.notify()
    return oid


def _group(ctx: Context, sg_id: int, check: bool) -> dict[str, Any] | None:
    """The group (row-locked after the VM, as every path locks them), USE checked."""
    if not store.exists("secgroup", sg_id):
        return None
    sg = store.load("secgroup", sg_id, for_update=True)
    if check:
        ctx.authorize(c.target("secgroup", sg))
    return sg


def _change_sg(ctx: Context, oid: int, nic_id: int, sg_id: int, attach: bool) -> int:
    """Attach (USE checked) or detach a security group on one NIC of the VM."""
    with c.changing(ctx, "vm", oid) as vm:
        sg = _group(ctx, sg_id, check=attach)
        change = nic_hotplug.attach_sg if attach else nic_hotplug.detach_sg
        ops = change(vm, nic_id, sg, sg_id)
        if sg is not None:
            store.save("secgroup", sg)
        operations.enqueue(vm, ops)
    if ops:
        wakeup.notify()
    return oid


@api("one.vm.attachsg", "iii")
def vm_attachsg(ctx: Context, oid: int, nic_id: int, sg_id: int) -> int:
    return _change_sg(ctx, oid, nic_id, sg_id, attach=True)


@api("one.vm.detachsg", "iii")
def vm_detachsg(ctx: Context, oid: int, nic_id: int, sg_id: int) -> int:
    return _change_sg(ctx, oid, nic_id, sg_id, attach=False)
