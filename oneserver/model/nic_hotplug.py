"""NICs attached to and detached from a VM (DispatchManager::attach_nic / detach_nic): on a
POWEROFF VM at once; on a RUNNING VM through HOTPLUG_NIC while the core runs the VMM's
``attach_nic``/``detach_nic`` as a durable operation, whose outcome is written here. The lease
of the NIC changes with it (``leases.py``), in the same transaction. Security groups attached
to and detached from a NIC (attach_sg / detach_sg) change its rules the same way."""

from __future__ import annotations

from typing import Any

from oneserver.errors import ACTION, OneError
from oneserver.model import address_range, leases, secgroups
from oneserver.model.history import close_history, last_history, now, record_action
from oneserver.model.lifecycle import Op, clear_error, is_, set_error, set_state
from oneserver.model.vmstate import Lcm, VmState
from oneserver.template import Template

Doc = dict[str, Any]
Vector = dict[str, str]


def running(vm: Doc) -> bool:
    return is_(vm, VmState.ACTIVE, Lcm.RUNNING)


def _poweroff(vm: Doc) -> bool:
    return is_(vm, VmState.POWEROFF)


def _state_str(vm: Doc) -> str:
    return VmState(vm["state"]).name


def _new_record(vm: Doc, action: str, uid: int, gid: int) -> None:
    """close_cp_history: the open record is closed with ``action`` and who asked; a copy of it
    opens, the VM running on from now (a POWEROFF VM's copy is closed for running at once)."""
    h = last_history(vm)
    if h is None:
        return
    record_action(vm, action, uid, gid)
    t = now()
    if h["rstime"] and not h["retime"]:
        h["retime"] = t
    close_history(vm)
    vm["history"].append(dict(
        h, seq=h["seq"] + 1, stime=t, etime=0, pstime=0, petime=0, rstime=t,
        retime=t if _poweroff(vm) else 0, estime=0, eetime=0, action=0, uid=-1, gid=-1,
        request_id=-1))


def _host_id(vm: Doc) -> int:
    h = last_history(vm)
    return int(h["hid"]) if h is not None else -1


def attach(vm: Doc, given: Template, may_use: leases.MayUse, uid: int, gid: int) -> list[Op]:
    """Add the NIC of ``given`` to ``vm`` (its lease taken now); the operations to queue."""
    if not (running(vm) or _poweroff(vm)):
        raise OneError(ACTION, f"Could not add a new NIC to VM {vm['id']}, wrong state "
                               f"{_state_str(vm)}.", vm["id"])
    nic = next(iter(given.vectors("NIC")), None)
    if nic is None:
        raise OneError(ACTION, "VM Template does not include a NIC attribute", vm["id"])
    live = running(vm)
    if live:
        nic = {**nic, "ATTACH": "YES"}
    added = leases.attach_nic(vm, nic, may_use)
    _new_record(vm, "nic-attach", uid, gid)
    if not live:
        return []
    set_state(vm, VmState.ACTIVE, Lcm.HOTPLUG_NIC)
    vm["resched"] = 0
    return [Op("attach_nic", _host_id(vm), {"nic_id": int(added["NIC_ID"])})]


def detach(vm: Doc, nic_id: int, uid: int, gid: int) -> list[Op]:
    """Take NIC ``nic_id`` out of ``vm``: at once when it is off (its lease given back), else
    once the VMM removed it."""
    if not (running(vm) or _poweroff(vm)):
        raise OneError(ACTION, f"Could not detach NIC from VM {vm['id']}, wrong state "
                               f"{_state_str(vm)}.", vm["id"])
    tmpl = Template.from_json(vm["template"])
    nic = next((n for n in tmpl.vectors("NIC") if n.get("NIC_ID") == str(nic_id)), None)
    if nic is None:
        raise OneError(ACTION, f"Could not detach NIC with NIC_ID {nic_id}, it does not "
                               "exist.", vm["id"])
    _new_record(vm, "nic-detach", uid, gid)
    if not running(vm):
        leases.detach_nic(vm, nic_id)
        return []
    nic["DETACH"] = "YES"
    vm["template"] = tmpl.to_json()
    set_state(vm, VmState.ACTIVE, Lcm.HOTPLUG_NIC)
    vm["resched"] = 0
    return [Op("detach_nic", _host_id(vm), {"nic_id": nic_id})]


def _flag(vm: Doc, nic_id: int, flag: str) -> None:
    tmpl = Template.from_json(vm["template"])
    for nic in tmpl.vectors("NIC"):
        if nic.get("NIC_ID") == str(nic_id):
            nic.pop(flag, None)
    vm["template"] = tmpl.to_json()


def done(vm: Doc, action: str, nic_id: int) -> None:
    """The VMM attached (or detached) the NIC: the VM runs on with it (without it)."""
    if action == "attach_nic":
        _flag(vm, nic_id, "ATTACH")
    else:
        leases.detach_nic(vm, nic_id)
    set_state(vm, VmState.ACTIVE, Lcm.RUNNING)
    clear_error(vm)


def failed(vm: Doc, action: str, nic_id: int, message: str) -> None:
    """The VMM could not: an attached NIC goes (with its lease), a detached one stays."""
    if action == "attach_nic":
        leases.detach_nic(vm, nic_id)
        set_error(vm, f"Error attaching new NIC: {message}")
    else:
        _flag(vm, nic_id, "DETACH")
        set_error(vm, f"Error detaching NIC: {message}")
    set_state(vm, VmState.ACTIVE, Lcm.RUNNING)


# ----------------------------------------------------------------------------- groups

# LCM states in which a VM's groups may not change (DispatchManager::attach_sg): its rules
# are being set up on a host.
_SG_BUSY = frozenset({
    Lcm.BOOT, Lcm.BOOT_MIGRATE, Lcm.BOOT_SUSPENDED, Lcm.BOOT_STOPPED, Lcm.BOOT_UNDEPLOY,
    Lcm.BOOT_POWEROFF, Lcm.BOOT_UNKNOWN, Lcm.BOOT_FAILURE, Lcm.BOOT_MIGRATE_FAILURE,
    Lcm.BOOT_UNDEPLOY_FAILURE, Lcm.BOOT_STOPPED_FAILURE, Lcm.MIGRATE, Lcm.HOTPLUG_NIC,
    Lcm.HOTPLUG_NIC_POWEROFF, Lcm.UNKNOWN})
# States in which the host's filters follow at once (the VM runs there).
_SG_LIVE = frozenset({Lcm.RUNNING, Lcm.HOTPLUG, Lcm.HOTPLUG_RESIZE})


def _sg_nic(vm: Doc, nic_id: int, tmpl: Template) -> Vector:
    if vm["state"] == VmState.ACTIVE and vm["lcm_state"] in _SG_BUSY:
        raise OneError(ACTION, f"VM {vm['id']} is in wrong state {_state_str(vm)}", vm["id"])
    nic = next((n for n in (*tmpl.vectors("NIC"), *tmpl.vectors("NIC_ALIAS"))
                if n.get("NIC_ID") == str(nic_id)), None)
    if nic is None:
        raise OneError(ACTION, f"VM {vm['id']} doesn't have NIC id {nic_id}", vm["id"])
    return nic


def _set_rules(vm: Doc, tmpl: Template, sg: Doc, keep: bool) -> None:
    """The VM's SECURITY_GROUP_RULEs of ``sg`` written again from it (``keep``) or dropped."""
    tmpl.items = [(k, v) for k, v in tmpl.items if not (
        k == "SECURITY_GROUP_RULE" and isinstance(v, dict)
        and v.get("SECURITY_GROUP_ID") == str(sg["id"]))]
    if keep:
        for rule in secgroups.rules_of(sg):
            tmpl.add("SECURITY_GROUP_RULE", rule)
    vm["template"] = tmpl.to_json()


def _update_op(vm: Doc, sg_id: int) -> list[Op]:
    live = vm["state"] == VmState.ACTIVE and vm["lcm_state"] in _SG_LIVE
    return [Op("update_sg", _host_id(vm), {"sg_id": sg_id})] if live else []


def attach_sg(vm: Doc, nic_id: int, sg: Doc | None, sg_id: int) -> list[Op]:
    """one.vm.attachsg: group ``sg`` on NIC ``nic_id``, its rules in the VM's TEMPLATE (the
    caller saves ``sg``); on a running VM the host's filters are set up again."""
    if sg is None:
        raise OneError(ACTION, f"Could not attach SG {sg_id} to VM, SG does not exist",
                       vm["id"])
    tmpl = Template.from_json(vm["template"])
    nic = _sg_nic(vm, nic_id, tmpl)
    groups = address_range.security_groups(nic.get("SECURITY_GROUPS", ""))
    if sg_id in groups:
        raise OneError(ACTION, f"VM {vm['id']} SG {sg_id} already in NIC {nic_id}", vm["id"])
    nic["SECURITY_GROUPS"] = address_range.join(groups | {sg_id})
    _set_rules(vm, tmpl, sg, keep=True)
    secgroups.uses(sg, vm["id"], True)
    return _update_op(vm, sg_id)


def detach_sg(vm: Doc, nic_id: int, sg: Doc | None, sg_id: int) -> list[Op]:
    """one.vm.detachsg: group ``sg_id`` off NIC ``nic_id``; its rules stay while another NIC
    of the VM has it."""
    tmpl = Template.from_json(vm["template"])
    nic = _sg_nic(vm, nic_id, tmpl)
    groups = address_range.security_groups(nic.get("SECURITY_GROUPS", ""))
    if sg_id not in groups:
        raise OneError(ACTION, f"VM {vm['id']} NIC {nic_id} doesn't contain SG {sg_id}",
                       vm["id"])
    nic["SECURITY_GROUPS"] = address_range.join(groups - {sg_id})
    still = any(sg_id in address_range.security_groups(n.get("SECURITY_GROUPS", ""))
                for n in (*tmpl.vectors("NIC"), *tmpl.vectors("NIC_ALIAS")))
    if sg is not None:
        _set_rules(vm, tmpl, sg, keep=still)
        secgroups.uses(sg, vm["id"], still)
    else:
        vm["template"] = tmpl.to_json()
    return _update_op(vm, sg_id)
