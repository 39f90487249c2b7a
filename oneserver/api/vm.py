"""``one.vm.*``: one virtual machine."""

from __future__ import annotations

import uuid
from typing import Any

from oneserver import db, numeric, store, wakeup
from oneserver.api import Context, api, authz, generic
from oneserver.api import common as c
from oneserver.errors import (
    ACTION,
    ALLOCATE,
    INTERNAL,
    XML_RPC_API,
    OneError,
)
from oneserver.model import capabilities, capacity, history, images, leases, lifecycle, operations
from oneserver.model.acl import Target
from oneserver.model.vmstate import Lcm, VmState
from oneserver.template import Template

# Attributes oned moves from the user's template into the system TEMPLATE (VirtualMachine::
# insert and VirtualMachineParser); INIT and LXC_* are ours, read by the LXC driver.
SYSTEM_ATTRS = frozenset({
    "CPU", "MEMORY", "VCPU", "DISK", "NIC", "NIC_ALIAS", "CONTEXT", "OS", "GRAPHICS", "VIDEO",
    "FEATURES", "INPUT", "RAW", "EMULATOR", "TOPOLOGY", "NUMA_NODE", "PCI", "SNAPSHOT",
    "SECURITY_GROUP_RULE", "TM_MAD_SYSTEM", "SUBMIT_ON_HOLD", "CPU_COST", "MEMORY_COST",
    "DISK_COST", "MEMORY_MAX", "VCPU_MAX", "TEMPLATE_ID", "CLONING_TEMPLATE_ID",
    "HYPERV_OPTIONS", "SPICE_OPTIONS", "MEMORY_SLOTS", "MEMORY_RESIZE_MODE", "CPU_MODEL",
    "BACKUP_CONFIG", "INIT", "INIT_ARGS", "LXC_IDMAP", "LXC_UNPRIVILEGED", "LXC_CPU_QUOTA",
})
UPDATECONF_ATTRS = frozenset({"OS", "FEATURES", "INPUT", "GRAPHICS", "RAW", "CONTEXT",
                              "CPU_MODEL", "VIDEO", "BACKUP_CONFIG", "INIT"})


def _positive(tmpl: Template, name: str, integer: bool, required: bool) -> None:
    raw = tmpl.get_str(name, "")
    if raw == "" and not required:
        return
    kind = "integer" if integer else "float or integer"
    msg = f"{name} attribute must be a positive {kind} value."
    # As oned reads it, a C long or float: NaN, infinities and Python-only spellings that
    # int()/float() take would reach the scheduler and the drivers otherwise.
    value = numeric.to_int(raw, 64) if integer else numeric.to_float(raw)
    if value is None or value <= 0:
        raise OneError(ALLOCATE, f"Error allocating a new virtual machine. {msg}")


def _disk_size(disk: dict[str, str], disk_id: int) -> None:
    """SIZE of a disk that is no image (an image disk gets its image's): a positive C long,
    as oned wants it of a volatile disk."""
    raw = disk.get("SIZE", "")
    if raw == "" or disk.get("IMAGE_ID", "") != "" or disk.get("IMAGE"):
        return
    size = numeric.to_int(raw, 64)
    # A disk copied from a SOURCE may say it weighs nothing (the sim's zero-transfer runs);
    # a volatile one must have a size.
    if size is None or size < 0 or (size == 0 and not disk.get("SOURCE")):
        raise OneError(ALLOCATE, f"Error allocating a new virtual machine. DISK {disk_id}: "
                                 "SIZE attribute must be a positive integer value.")


def build(ctx: Context, oid: int, given: Template, hold: bool) -> dict[str, Any]:
    """A new VM document from the user's template, as ``VirtualMachine::insert`` builds it."""
    user_tmpl = given.copy()
    system = Template()
    base = user_tmpl.get_str("TEMPLATE_NAME")
    name = user_tmpl.get_str("NAME").rstrip() or (f"{base}-{oid}" if base else f"one-{oid}")
    user_tmpl.remove("NAME")
    user_tmpl.remove("TEMPLATE_NAME")
    for legacy, modern in (("REQUIREMENTS", "SCHED_REQUIREMENTS"), ("RANK", "SCHED_RANK")):
        if legacy in user_tmpl and modern not in user_tmpl:
            user_tmpl.set(modern, user_tmpl.get_str(legacy))
        user_tmpl.remove(legacy)
    for attr, value in list(user_tmpl.items):
        if attr in SYSTEM_ATTRS:
            system.add(attr, value)
    for attr in SYSTEM_ATTRS:
        user_tmpl.remove(attr)
    _positive(system, "MEMORY", True, True)
    _positive(system, "CPU", False, True)
    _positive(system, "VCPU", True, False)
    c.valid_name(name)
    for i, disk in enumerate(system.vectors("DISK")):
        disk["DISK_ID"] = str(i)
        _disk_size(disk, i)
    try:  # DISK = [IMAGE_ID = n] / [IMAGE = "name"]: the VM takes the image now, as oned does
        images.attach(oid, system, ctx.caller.uid,
                      lambda img: ctx.authorize(c.target("image", img)))
    except OneError as exc:
        if exc.code != ACTION:
            raise
        raise OneError(ALLOCATE, f"Error allocating a new virtual machine. {exc.message}"
                       ) from None
    os_vec = system.vectors("OS")
    if os_vec:
        os_vec[0].setdefault("UUID", str(uuid.uuid4()))
    else:
        system.add("OS", {"UUID": str(uuid.uuid4())})
    system.set("AUTOMATIC_REQUIREMENTS", "!(PIN_POLICY = PINNED)")
    # NIC / NIC_ALIAS = [NETWORK…]: each takes a lease of its network now, as oned does
    leases.attach_vm(oid, system, ctx.caller.uid,
                     lambda kind, obj: ctx.authorize(c.target(kind, obj)))
    system.set("VMID", str(oid))
    on_hold = hold or system.get_str("SUBMIT_ON_HOLD").upper() == "YES"
    return {
        **c.new_owned_doc(ctx, oid, name), "last_poll": 0,
        "state": int(VmState.HOLD if on_hold else VmState.PENDING), "lcm_state": 0,
        "prev_state": int(VmState.HOLD if on_hold else VmState.PENDING), "prev_lcm_state": 0,
        "resched": 0, "stime": history.now(), "etime": 0, "deploy_id": "",
        "monitoring": [], "template": system.to_json(), "user_template": user_tmpl.to_json(),
        "history": [],
    }


def allocate_vm(ctx: Context, tmpl: Template, hold: bool, given: Template | None = None) -> int:
    """Insert a VM (inside the caller's write transaction) and return its id. ``given``: what
    the caller wrote, checked for restricted attributes (default: all of ``tmpl``)."""
    ctx.authorize(Target("vm"))
    authz.check_restricted(ctx.caller.is_admin, "vm", [tmpl if given is None else given])
    oid = store.next_id("vm")
    doc = build(ctx, oid, tmpl, hold)
    store.insert("vm", doc)
    return oid


@api("one.vm.allocate", "sb", (False,))
def vm_allocate(ctx: Context, text: str, hold: bool) -> int:
    tmpl = c.parse_template(text)
    with db.write_transaction():
        oid = allocate_vm(ctx, tmpl, hold)
    if not hold:
        wakeup.notify()
    return oid


def _vm_and_host(ctx: Context, oid: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The VM (checked and lock-checked for the call's right) and the host it is on."""
    vm = c.load_checked(ctx, "vm", oid, for_update=True)
    c.check_lock("vm", vm, ctx.op.right)
    hid = vm["history"][-1]["hid"] if vm["history"] else -1
    host = store.load("host", hid, for_update=True) if hid >= 0 and store.exists(
        "host", hid) else None
    return vm, host


def _commit(vm: dict[str, Any], host: dict[str, Any] | None, ops: list[lifecycle.Op]) -> None:
    store.save("vm", vm)
    if host is not None:
        store.save("host", host)
    operations.enqueue(vm, ops)


def _system_ds(ctx: Context, ds_id: int) -> tuple[int, str]:
    if ds_id < 0:
        ds_id = 0
    ds = c.load_checked(ctx, "datastore", ds_id)
    if ds["type"] != 1:
        raise OneError(ACTION, f"Datastore [{ds_id}] is not a system datastore", ds_id)
    return ds_id, ds["tm_mad"]


@api("one.vm.deploy", "iibis", (False, -1, ""))
def vm_deploy(ctx: Context, oid: int, hid: int, enforce: bool, ds_id: int, nic: str) -> int:
    with db.write_transaction():
        vm, _ = _vm_and_host(ctx, oid)
        host = c.load_checked(ctx, "host", hid, for_update=True)
        if vm["state"] not in (VmState.PENDING, VmState.HOLD, VmState.STOPPED,
                               VmState.UNDEPLOYED):
            raise lifecycle.refuse(vm, "deploy")
        if enforce and not capacity.fits(host, vm):
            raise OneError(ACTION, f"Host {hid} does not have enough capacity to run the VM",
                           oid)
        ds, tm_mad = _system_ds(ctx, ds_id)
        place(vm, host, ds, tm_mad)
    wakeup.notify()
    return oid


def place(vm: dict[str, Any], host: dict[str, Any], ds_id: int, tm_mad: str,
          backoff: float | None = None) -> None:
    """Deploy ``vm`` on ``host`` within the caller's transaction (also the scheduler's path).
    ``backoff`` (scheduler placements only): if this deploy fails, the VM returns to PENDING
    and avoids this host for that many seconds, instead of stopping in a failure state."""
    tmpl = Template.from_json(vm["template"])
    tmpl.set("TM_MAD_SYSTEM", tm_mad)
    vm["template"] = tmpl.to_json()
    ut = Template.from_json(vm["user_template"])
    if "SCHED_MESSAGE" in ut:
        ut.remove("SCHED_MESSAGE")
        vm["user_template"] = ut.to_json()
    op = lifecycle.deploy(vm, host, ds_id, tm_mad)
    if backoff is not None:
        op.args["backoff"] = backoff
    _commit(vm, host, [op])


def migrate_to(vm: dict[str, Any], src: dict[str, Any], dst: dict[str, Any], ds_id: int,
               tm_mad: str, uid: int = -1, gid: int = -1) -> None:
    """Cold-migrate ``vm`` from ``src`` to ``dst`` within the caller's transaction."""
    op = lifecycle.migrate(vm, src, dst, ds_id, tm_mad, uid, gid)
    store.save("host", src)
    _commit(vm, dst, [op])


@api("one.vm.action", "si")
def vm_action(ctx: Context, action: str, oid: int) -> int:
    if action not in lifecycle.VALID_ACTIONS:
        raise OneError(ACTION, f'Action "{action}" is not supported')
    with db.write_transaction():
        vm, host = _vm_and_host(ctx, oid)
        if host is not None:
            capabilities.require(host["vm_mad"], action, vm)
        ops = lifecycle.action(vm, action, ctx.caller.uid, ctx.caller.gid)
        _commit(vm, host, ops)
    wakeup.notify()
    return oid


@api("one.vm.migrate", "iibbii", (False, False, -1, 0))
def vm_migrate(ctx: Context, oid: int, hid: int, live: bool, enforce: bool, ds_id: int,
               mode: int) -> int:
    with db.write_transaction():
        vm, src = _vm_and_host(ctx, oid)
        dst = c.load_checked(ctx, "host", hid, for_update=True)
        if src is None or vm["state"] not in (VmState.ACTIVE, VmState.POWEROFF,
                                              VmState.SUSPENDED):
            raise lifecycle.refuse(vm, "migrate")
        if src["id"] == hid:
            raise OneError(ACTION, "VM is already running on host [" + str(hid) + "] and "
                           "datastore [" + str(vm["history"][-1]["ds_id"]) + "]", oid)
        capabilities.require(src["vm_mad"], "live-migrate" if live else "migrate", vm)
        if enforce and not capacity.fits(dst, vm):
            raise OneError(ACTION, f"Host {hid} does not have enough capacity to run the VM",
                           oid)
        ds, tm_mad = _system_ds(ctx, ds_id)
        migrate_to(vm, src, dst, ds, tm_mad, ctx.caller.uid, ctx.caller.gid)
    wakeup.notify()
    return oid


@api("one.vm.update", "isi", (0,))
def vm_update(ctx: Context, oid: int, text: str, mode: int) -> int:
    """Replaces or merges the USER_TEMPLATE (the TEMPLATE changes through updateconf)."""
    return c.update(ctx, "vm", oid, text, mode, field="user_template")


@api("one.vm.updateconf", "isi", (0,))
def vm_updateconf(ctx: Context, oid: int, text: str, mode: int) -> int:
    if mode not in (0, 1):
        raise OneError(XML_RPC_API, "Wrong update type", oid)
    new = c.parse_template(text)
    authz.check_restricted(ctx.caller.is_admin, "vm", [new])
    with c.changing(ctx, "vm", oid) as vm:
        if vm["state"] == VmState.ACTIVE and vm["lcm_state"] != Lcm.RUNNING:
            raise lifecycle.refuse(vm, "updateconf")
        tmpl = Template.from_json(vm["template"])
        for name in UPDATECONF_ATTRS:
            if name in new:
                tmpl.remove(name)
                for value in new.get_all(name):
                    tmpl.add(name, value)
        vm["template"] = tmpl.to_json()
    return oid


@api("one.vm.rename", "is")
def vm_rename(ctx: Context, oid: int, name: str) -> int:
    with c.changing(ctx, "vm", oid) as vm:  # VM names need not be unique, unlike others'
        c.valid_name(name)
        vm["name"] = name
    return oid


@api("one.vm.recover", "ii")
def vm_recover(ctx: Context, oid: int, op: int) -> int:
    if op not in range(6):
        raise OneError(ACTION, "Wrong recovery operation code", oid)
    with db.write_transaction():
        vm, host = _vm_and_host(ctx, oid)
        ops = lifecycle.recover(vm, host, op, ctx.caller.uid, ctx.caller.gid)
        _commit(vm, host, ops)
    wakeup.notify()
    return oid


@api("one.vm.resize", "isb", (False,))
def vm_resize(ctx: Context, oid: int, text: str, enforce: bool) -> int:
    new = c.parse_template(text)
    with db.write_transaction():
        vm, host = _vm_and_host(ctx, oid)
        sizes = _resize_sizes(new, oid)
        live = vm["state"] == VmState.ACTIVE and vm["lcm_state"] == Lcm.RUNNING
        if not live and vm["state"] not in (VmState.POWEROFF, VmState.UNDEPLOYED,
                                            VmState.PENDING, VmState.HOLD, VmState.STOPPED,
                                            VmState.CLONING, VmState.CLONING_FAILURE):
            raise lifecycle.refuse(vm, "resize")
        if live and host is not None:
            capabilities.require(host["vm_mad"], "resize", vm)
        tmpl = Template.from_json(vm["template"])
        # The host whose share counts the VM, which the new size replaces in it.
        holder = host if host is not None and vm["id"] in host["vms"] else None
        if holder is not None:
            capacity.del_capacity(holder, vm)
        for name, raw in sizes.items():
            tmpl.set(name, raw)
        vm["template"] = tmpl.to_json()
        if holder is not None:
            if enforce and not capacity.fits(holder, vm):
                raise OneError(ACTION, "Host does not have enough capacity for the new size",
                               oid)
            capacity.add_capacity(holder, vm)
        ops = []
        if live:
            lifecycle.set_state(vm, VmState.ACTIVE, Lcm.HOTPLUG_RESIZE)
            ops = [lifecycle.Op("resize", host["id"] if host else -1)]
        _commit(vm, host, ops)
    wakeup.notify()
    return oid


def _resize_sizes(new: Template, oid: int) -> dict[str, str]:
    """The sizes a resize sets, read as VirtualMachineAPI::resize reads them (CPU a C float,
    MEMORY a long, VCPU an int): what is no such number reads 0, and 0 leaves the size as it
    is; a negative one is refused with oned's words."""
    sizes = {}
    for name, kind in (("CPU", "float or integer"), ("MEMORY", "integer"), ("VCPU", "integer")):
        raw = new.get_str(name, "")
        value = numeric.to_float(raw) if name == "CPU" else numeric.to_int(
            raw, 64 if name == "MEMORY" else 32)
        if value is not None and value < 0:
            raise OneError(INTERNAL, f"{name} must be a positive {kind} value.", oid)
        if value:
            sizes[name] = raw
    return sizes


@api("one.vm.monitoring", "i")
def vm_monitoring(ctx: Context, oid: int) -> str:
    c.load_checked(ctx, "vm", oid)
    rows = (db.VMMonitoring.select(db.VMMonitoring.body).where(db.VMMonitoring.vm_id == oid)
            .order_by(db.VMMonitoring.timestamp))
    return "<MONITORING_DATA>" + "".join(r.body for r in rows) + "</MONITORING_DATA>"


generic.register("one.vm", "vm", "info", "chmod", "chown", "lock", "unlock")
