"""State changes of VMs and hosts, applied to their documents. Each function checks that the
change is valid, changes the documents and returns the driver operations the core must run;
the caller saves everything in one transaction. Policy lives here; XML lives in ``documents``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from oneserver.errors import action_error
from oneserver.model import leases
from oneserver.model.capacity import add_capacity, del_capacity
from oneserver.model.history import (
    close_history,
    last_history,
    new_history,
    now,
    record_action,
    reopen_on_same_host,
)
from oneserver.model.vmstate import FAILURE_STATES, Lcm, VmState, state_name
from oneserver.template import Template

Doc = dict[str, Any]


@dataclass
class Op:
    """A driver operation to queue for the core."""

    action: str
    host_id: int
    args: dict[str, Any] = field(default_factory=dict)


def set_state(vm: Doc, state: int, lcm: int = Lcm.LCM_INIT) -> None:
    vm["prev_state"], vm["prev_lcm_state"] = vm["state"], vm["lcm_state"]
    vm["state"], vm["lcm_state"] = int(state), int(lcm)
    # When it changed: a monitoring sample taken before that can't speak for the new state.
    vm["state_time"] = time.time()
    # Which change this is: an operation remembers the number its VM had when it was queued
    # or after its own last step, and so knows after a crash whether the VM is still where it
    # left it (go on from there) or was moved on by someone else since (nothing left to do).
    vm["state_seq"] = state_seq(vm) + 1


def state_seq(vm: Doc) -> int:
    """How many state changes the VM has had (0 for a VM stored before they were counted)."""
    return int(vm.get("state_seq", 0))


def is_(vm: Doc, state: VmState, *lcms: Lcm) -> bool:
    return vm["state"] == state and (not lcms or vm["lcm_state"] in lcms)


def refuse(vm: Doc, action: str) -> Exception:
    return action_error(action, state_name(vm["state"], vm["lcm_state"]), vm["id"])


def set_error(vm: Doc, message: str) -> None:
    ut = Template.from_json(vm["user_template"])
    stamp = time.strftime("%a %b %d %H:%M:%S %Y")
    ut.set("ERROR", f"{stamp}: {message}")
    vm["user_template"] = ut.to_json()


def clear_error(vm: Doc) -> None:
    ut = Template.from_json(vm["user_template"])
    if "ERROR" in ut:
        ut.remove("ERROR")
        vm["user_template"] = ut.to_json()


def finish(vm: Doc) -> None:
    """Move to DONE, closing the history record."""
    h = last_history(vm)
    t = now()
    if h is not None:
        for key in ("retime", "estime", "eetime"):
            if h[key] == 0 and (key != "retime" or h["rstime"]):
                h[key] = t
        close_history(vm)
    set_state(vm, VmState.DONE)
    vm["etime"] = t
    vm["resched"] = 0
    leases.release_vm(vm)


# ----------------------------------------------------------------------------- deploy

def deploy(vm: Doc, host: Doc, ds_id: int, tm_mad: str) -> Op:
    """PENDING/HOLD/STOPPED/UNDEPLOYED → ACTIVE/PROLOG* on ``host``, capacity reserved."""
    resumed = vm.pop("resume_from", None)
    if vm["state"] in (VmState.PENDING, VmState.HOLD) and resumed is None:
        lcm, mode = Lcm.PROLOG, "new"
    elif vm["state"] == VmState.STOPPED or resumed == VmState.STOPPED:
        lcm, mode = Lcm.PROLOG_RESUME, "resume"
    elif vm["state"] == VmState.UNDEPLOYED or resumed == VmState.UNDEPLOYED:
        lcm, mode = Lcm.PROLOG_UNDEPLOY, "undeploy"
    else:
        raise refuse(vm, "deploy")
    close_history(vm)
    new_history(vm, host, ds_id, tm_mad)
    set_state(vm, VmState.ACTIVE, lcm)
    vm["resched"] = 0
    add_capacity(host, vm)
    return Op("deploy", host["id"], {"mode": mode})


def migrate(vm: Doc, src: Doc, dst: Doc, ds_id: int, tm_mad: str, uid: int, gid: int) -> Op:
    """Cold migration (LXC has no live one): save/stop on ``src``, move disks, boot on ``dst``.
    Capacity moves to ``dst`` now, so a concurrent placement never over-commits it."""
    if is_(vm, VmState.ACTIVE, Lcm.RUNNING, Lcm.UNKNOWN):
        lcm, mode = Lcm.SAVE_MIGRATE, "running"
    elif vm["state"] == VmState.POWEROFF:
        lcm, mode = Lcm.PROLOG_MIGRATE_POWEROFF, "poweroff"
    elif vm["state"] == VmState.SUSPENDED:
        lcm, mode = Lcm.PROLOG_MIGRATE_SUSPEND, "suspended"
    else:
        raise refuse(vm, "migrate")
    record_action(vm, "migrate", uid, gid)
    h = last_history(vm)
    if h is not None and h["retime"] == 0 and h["rstime"]:
        h["retime"] = now()
    close_history(vm)
    del_capacity(src, vm)
    new_history(vm, dst, ds_id, tm_mad)
    set_state(vm, VmState.ACTIVE, lcm)
    vm["resched"] = 0
    add_capacity(dst, vm)
    return Op("migrate", dst["id"], {"mode": mode, "from": src["id"]})


# ----------------------------------------------------------------------------- vm.action

def _running_or_unknown(vm: Doc) -> bool:
    return is_(vm, VmState.ACTIVE, Lcm.RUNNING, Lcm.UNKNOWN)


def action(vm: Doc, name: str, uid: int, gid: int) -> list[Op]:
    """Apply ``one.vm.action`` ``name`` (already known to be a valid action string)."""
    hid = vm["history"][-1]["hid"] if vm["history"] else -1
    hard = name.endswith("-hard")
    base = name.removesuffix("-hard")
    st, lcm = vm["state"], vm["lcm_state"]

    if base == "terminate":
        if st == VmState.DONE:
            return []
        if _running_or_unknown(vm) or (hard and is_(vm, VmState.ACTIVE, Lcm.SHUTDOWN)):
            record_action(vm, name, uid, gid)
            set_state(vm, VmState.ACTIVE, Lcm.SHUTDOWN)
            return [Op("shutdown", hid, {"hard": hard, "then": "done"})]
        if st in (VmState.POWEROFF, VmState.SUSPENDED):
            record_action(vm, name, uid, gid)
            set_state(vm, VmState.ACTIVE, Lcm.EPILOG)
            return [Op("epilog", hid, {"then": "done", "cancel": True})]
        if st in (VmState.INIT, VmState.PENDING, VmState.HOLD, VmState.CLONING,
                  VmState.CLONING_FAILURE, VmState.STOPPED, VmState.UNDEPLOYED):
            record_action(vm, name, uid, gid)
            finish(vm)
            return [Op("epilog", hid, {"then": "none"})] if st in (
                VmState.STOPPED, VmState.UNDEPLOYED) and hid >= 0 else []
        if st == VmState.ACTIVE and lcm in FAILURE_STATES:
            record_action(vm, name, uid, gid)
            set_state(vm, VmState.ACTIVE, Lcm.EPILOG)
            return [Op("epilog", hid, {"then": "done", "cancel": True})]
        raise refuse(vm, name)

    if base in ("undeploy", "poweroff"):
        target = Lcm.SHUTDOWN_UNDEPLOY if base == "undeploy" else Lcm.SHUTDOWN_POWEROFF
        if (_running_or_unknown(vm) or (hard and is_(vm, VmState.ACTIVE, target))
                or (base == "undeploy" and st == VmState.POWEROFF)):
            record_action(vm, name, uid, gid)
            was_off = st == VmState.POWEROFF
            set_state(vm, VmState.ACTIVE, target)
            if was_off:  # nothing runs: straight to moving the disks back
                set_state(vm, VmState.ACTIVE, Lcm.EPILOG_UNDEPLOY)
                return [Op("epilog", hid, {"then": "undeployed", "keep": True})]
            return [Op("shutdown", hid, {"hard": hard, "then": base})]
        raise refuse(vm, name)

    if base == "reboot":
        if is_(vm, VmState.ACTIVE, Lcm.RUNNING):
            record_action(vm, name, uid, gid)
            vm["resched"] = 0
            return [Op("reset" if hard else "reboot", hid)]
        raise refuse(vm, name)

    if name == "hold":
        if st != VmState.PENDING:
            raise refuse(vm, name)
        set_state(vm, VmState.HOLD)
        return []
    if name == "release":
        if st != VmState.HOLD:
            raise refuse(vm, name)
        set_state(vm, VmState.PENDING)
        return []
    if name == "stop":
        if is_(vm, VmState.ACTIVE, Lcm.RUNNING) or st == VmState.SUSPENDED:
            record_action(vm, name, uid, gid)
            set_state(vm, VmState.ACTIVE, Lcm.SAVE_STOP)
            return [Op("shutdown", hid, {"hard": False, "then": "stop"})]
        raise refuse(vm, name)
    if name == "suspend":
        if is_(vm, VmState.ACTIVE, Lcm.RUNNING):
            record_action(vm, name, uid, gid)
            set_state(vm, VmState.ACTIVE, Lcm.SAVE_SUSPEND)
            return [Op("suspend", hid)]
        raise refuse(vm, name)
    if name == "resume":
        return _resume(vm, uid, gid, hid)
    if name in ("resched", "unresched"):
        if _running_or_unknown(vm) or st == VmState.POWEROFF:
            vm["resched"] = 1 if name == "resched" else 0
            return []
        raise refuse(vm, name)
    raise refuse(vm, name)


def _resume(vm: Doc, uid: int, gid: int, hid: int) -> list[Op]:
    st = vm["state"]
    if st in (VmState.STOPPED, VmState.UNDEPLOYED):
        # Back to PENDING, with no history action (as DispatchManager::resume); the scheduler
        # (or one.vm.deploy) picks a host, deploy() then knows from resume_from which prolog
        # to run.
        vm["resume_from"] = st
        set_state(vm, VmState.PENDING)
        return []
    if st == VmState.SUSPENDED:
        reopen_on_same_host(vm)
        set_state(vm, VmState.ACTIVE, Lcm.BOOT_SUSPENDED)
        return [Op("resume", hid)]
    if st == VmState.POWEROFF:
        reopen_on_same_host(vm)
        set_state(vm, VmState.ACTIVE, Lcm.BOOT_POWEROFF)
        return [Op("boot", hid)]
    if is_(vm, VmState.ACTIVE, Lcm.UNKNOWN):
        reopen_on_same_host(vm)
        set_state(vm, VmState.ACTIVE, Lcm.BOOT_UNKNOWN)
        return [Op("boot", hid)]
    raise refuse(vm, "resume")


VALID_ACTIONS = frozenset({
    "terminate", "terminate-hard", "undeploy", "undeploy-hard", "poweroff", "poweroff-hard",
    "reboot", "reboot-hard", "hold", "release", "stop", "suspend", "resume", "resched",
    "unresched",
})  # the right each one needs: oneserver.api.authz.VM_ACTIONS


# ----------------------------------------------------------------------------- outcomes

L, S = Lcm, VmState
# Where a transient state ends when its driver work succeeds: (state, lcm, releases capacity).
SETTLED_OK: dict[int, tuple[VmState, Lcm, bool]] = {}
for _l in (L.PROLOG, L.PROLOG_FAILURE, L.BOOT, L.BOOT_FAILURE, L.PROLOG_RESUME,
           L.PROLOG_RESUME_FAILURE, L.BOOT_STOPPED, L.BOOT_STOPPED_FAILURE, L.PROLOG_UNDEPLOY,
           L.PROLOG_UNDEPLOY_FAILURE, L.BOOT_UNDEPLOY, L.BOOT_UNDEPLOY_FAILURE, L.BOOT_POWEROFF,
           L.BOOT_SUSPENDED, L.BOOT_UNKNOWN, L.SAVE_MIGRATE, L.PROLOG_MIGRATE,
           L.PROLOG_MIGRATE_FAILURE, L.BOOT_MIGRATE, L.BOOT_MIGRATE_FAILURE, L.HOTPLUG_RESIZE,
           L.HOTPLUG_NIC, L.PROLOG_MIGRATE_UNKNOWN, L.PROLOG_MIGRATE_UNKNOWN_FAILURE, L.MIGRATE):
    SETTLED_OK[_l] = (S.ACTIVE, L.RUNNING, False)
for _l in (L.SHUTDOWN, L.EPILOG, L.EPILOG_FAILURE, L.CLEANUP_DELETE):
    SETTLED_OK[_l] = (S.DONE, L.LCM_INIT, True)
SETTLED_OK[L.SHUTDOWN_POWEROFF] = (S.POWEROFF, L.LCM_INIT, False)
for _l in (L.SHUTDOWN_UNDEPLOY, L.EPILOG_UNDEPLOY, L.EPILOG_UNDEPLOY_FAILURE):
    SETTLED_OK[_l] = (S.UNDEPLOYED, L.LCM_INIT, True)
for _l in (L.SAVE_STOP, L.EPILOG_STOP, L.EPILOG_STOP_FAILURE):
    SETTLED_OK[_l] = (S.STOPPED, L.LCM_INIT, True)
SETTLED_OK[L.SAVE_SUSPEND] = (S.SUSPENDED, L.LCM_INIT, False)
for _l in (L.PROLOG_MIGRATE_POWEROFF, L.PROLOG_MIGRATE_POWEROFF_FAILURE):
    SETTLED_OK[_l] = (S.POWEROFF, L.LCM_INIT, False)
for _l in (L.PROLOG_MIGRATE_SUSPEND, L.PROLOG_MIGRATE_SUSPEND_FAILURE):
    SETTLED_OK[_l] = (S.SUSPENDED, L.LCM_INIT, False)

# Where a transient state goes when its driver work fails.
FAILED: dict[int, tuple[VmState, Lcm]] = {
    L.PROLOG: (S.ACTIVE, L.PROLOG_FAILURE), L.BOOT: (S.ACTIVE, L.BOOT_FAILURE),
    L.PROLOG_RESUME: (S.ACTIVE, L.PROLOG_RESUME_FAILURE),
    L.BOOT_STOPPED: (S.ACTIVE, L.BOOT_STOPPED_FAILURE),
    L.PROLOG_UNDEPLOY: (S.ACTIVE, L.PROLOG_UNDEPLOY_FAILURE),
    L.BOOT_UNDEPLOY: (S.ACTIVE, L.BOOT_UNDEPLOY_FAILURE),
    L.PROLOG_MIGRATE: (S.ACTIVE, L.PROLOG_MIGRATE_FAILURE),
    L.BOOT_MIGRATE: (S.ACTIVE, L.BOOT_MIGRATE_FAILURE),
    L.PROLOG_MIGRATE_POWEROFF: (S.ACTIVE, L.PROLOG_MIGRATE_POWEROFF_FAILURE),
    L.PROLOG_MIGRATE_SUSPEND: (S.ACTIVE, L.PROLOG_MIGRATE_SUSPEND_FAILURE),
    L.EPILOG: (S.ACTIVE, L.EPILOG_FAILURE), L.EPILOG_STOP: (S.ACTIVE, L.EPILOG_STOP_FAILURE),
    L.EPILOG_UNDEPLOY: (S.ACTIVE, L.EPILOG_UNDEPLOY_FAILURE),
    L.SHUTDOWN: (S.ACTIVE, L.RUNNING), L.SHUTDOWN_POWEROFF: (S.ACTIVE, L.RUNNING),
    L.SHUTDOWN_UNDEPLOY: (S.ACTIVE, L.RUNNING), L.SAVE_STOP: (S.ACTIVE, L.RUNNING),
    L.SAVE_SUSPEND: (S.ACTIVE, L.RUNNING), L.SAVE_MIGRATE: (S.ACTIVE, L.RUNNING),
    L.HOTPLUG_RESIZE: (S.ACTIVE, L.RUNNING), L.HOTPLUG_NIC: (S.ACTIVE, L.RUNNING),
    L.BOOT_POWEROFF: (S.POWEROFF, L.LCM_INIT),
    L.BOOT_SUSPENDED: (S.SUSPENDED, L.LCM_INIT), L.BOOT_UNKNOWN: (S.ACTIVE, L.UNKNOWN),
    L.MIGRATE: (S.ACTIVE, L.RUNNING),
}
RETRY = {v[1]: k for k, v in FAILED.items() if v[1] in FAILURE_STATES}

# A transient state whose driver work succeeded and that is not the operation's last step:
# the state of the next step (the others settle, SETTLED_OK).
ADVANCE: dict[int, Lcm] = {
    L.PROLOG: L.BOOT, L.PROLOG_RESUME: L.BOOT_STOPPED, L.PROLOG_UNDEPLOY: L.BOOT_UNDEPLOY,
    L.PROLOG_MIGRATE: L.BOOT_MIGRATE, L.SAVE_MIGRATE: L.PROLOG_MIGRATE,
    L.SHUTDOWN: L.EPILOG, L.SHUTDOWN_UNDEPLOY: L.EPILOG_UNDEPLOY, L.SAVE_STOP: L.EPILOG_STOP,
}
EPILOG_STATES = frozenset({L.EPILOG, L.EPILOG_STOP, L.EPILOG_UNDEPLOY})


def settle(vm: Doc, host: Doc | None) -> None:
    """The driver work of the VM's transient state succeeded: move to where it ends."""
    state, lcm, release = SETTLED_OK[vm["lcm_state"]]
    h = last_history(vm)
    t = now()
    if h is not None:
        if vm["lcm_state"] in (L.PROLOG, L.PROLOG_RESUME, L.PROLOG_UNDEPLOY, L.PROLOG_MIGRATE):
            h["petime"] = h["petime"] or t
        if lcm == L.RUNNING and not h["rstime"]:
            h["petime"] = h["petime"] or t
            h["rstime"] = t
        if state != S.ACTIVE and h["rstime"] and not h["retime"]:
            h["retime"] = t
    if state == S.DONE:
        finish(vm)
    else:
        set_state(vm, state, lcm)
    if state in (S.STOPPED, S.UNDEPLOYED):
        if h is not None:
            h["estime"] = h["estime"] or t
            h["eetime"] = t
        close_history(vm)
    if lcm == L.RUNNING:
        clear_error(vm)
    if release and host is not None:
        del_capacity(host, vm)


def advance(vm: Doc, host: Doc | None) -> None:
    """The driver work of the VM's transient state succeeded: on to the operation's next step
    (PROLOG → BOOT, SHUTDOWN → EPILOG…), or settle when it was the last."""
    nxt = ADVANCE.get(vm["lcm_state"])
    if nxt is None:
        settle(vm, host)
        return
    h = last_history(vm)
    if h is not None and nxt in EPILOG_STATES:
        h["retime"] = h["retime"] or now()
        h["estime"] = now()
    if h is not None and nxt in (L.BOOT, L.BOOT_STOPPED, L.BOOT_UNDEPLOY, L.BOOT_MIGRATE):
        h["petime"] = now()
    set_state(vm, S.ACTIVE, nxt)


def fail(vm: Doc, message: str) -> None:
    """The driver work of the VM's transient state failed."""
    state, lcm = FAILED[vm["lcm_state"]]
    set_state(vm, state, lcm)
    set_error(vm, message)


def requeue(vm: Doc, host: Doc | None, message: str, backoff: float) -> list[Op]:
    """A deploy the scheduler chose failed: back to PENDING, avoiding that host for
    ``backoff`` seconds, so one bad host or VM never holds up the others. Returns the cleanup
    of what the failed attempt left on the host."""
    close_history(vm)
    vm["deploy_id"] = ""
    set_state(vm, VmState.PENDING)
    set_error(vm, message)
    if host is None:
        return []
    del_capacity(host, vm)
    vm.setdefault("sched_backoff", {})[str(host["id"])] = time.time() + backoff
    return [Op("cleanup", host["id"])]


def recover(vm: Doc, host: Doc | None, op: int, uid: int, gid: int) -> list[Op]:
    """``one.vm.recover``: 0 failure, 1 success, 2 retry, 3 delete, 4 delete-recreate,
    5 delete-db."""
    hid = host["id"] if host is not None else -1
    st, lcm = vm["state"], vm["lcm_state"]
    if op in (3, 4, 5):
        if st == S.DONE:
            raise refuse(vm, "recover")
        record_action(vm, "delete" if op != 4 else "delete-recreate", uid, gid)
        had_host = host is not None and vm["id"] in host["vms"]
        if host is not None:
            del_capacity(host, vm)
        ops = [Op("cleanup", hid)] if had_host and op != 5 else []
        if op == 4:
            close_history(vm)
            set_state(vm, S.PENDING)
            vm["deploy_id"] = ""
        else:
            finish(vm)
        return ops
    if st != S.ACTIVE:
        raise refuse(vm, "recover")
    if op in (0, 1) and lcm in (L.RUNNING, L.UNKNOWN):
        # LifeCycleManager::recover: nothing to do for RUNNING; UNKNOWN is taken as RUNNING.
        if lcm == L.UNKNOWN:
            set_state(vm, S.ACTIVE, L.RUNNING)
        return []
    if op == 0 and lcm in FAILURE_STATES:
        return []  # "recover failure from failure state": oned leaves the VM where it is
    if op == 1:
        if lcm not in SETTLED_OK:
            raise refuse(vm, "recover")
        settle(vm, host)
        return []
    if op == 0:
        if lcm not in FAILED:
            raise refuse(vm, "recover")
        fail(vm, "Recovered as failed by the user")
        return []
    if op == 2:
        if lcm not in RETRY:
            raise refuse(vm, "recover")
        set_state(vm, S.ACTIVE, RETRY[lcm])
        return [retry_op(vm, hid)]
    raise refuse(vm, "recover")


def retry_op(vm: Doc, hid: int) -> Op:
    lcm = vm["lcm_state"]
    if lcm in (L.PROLOG, L.BOOT, L.PROLOG_RESUME, L.BOOT_STOPPED, L.PROLOG_UNDEPLOY,
               L.BOOT_UNDEPLOY):
        return Op("deploy", hid, {"mode": "retry"})
    if lcm in (L.PROLOG_MIGRATE, L.BOOT_MIGRATE, L.PROLOG_MIGRATE_POWEROFF,
               L.PROLOG_MIGRATE_SUSPEND):
        return Op("migrate", hid, {"mode": "retry"})
    if lcm == L.EPILOG_STOP:
        return Op("epilog", hid, {"then": "stop", "keep": True})
    if lcm == L.EPILOG_UNDEPLOY:
        return Op("epilog", hid, {"then": "undeployed", "keep": True})
    return Op("epilog", hid, {"then": "done", "cancel": True})
