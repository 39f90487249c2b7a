"""VM and host life cycles over HTTP with pyone 7.3.80, as OpenNebula 7.4 behaves on the dummy
drivers (reference §3; history records compared with the real replies of oned 7.4.0).

The server is shared by the whole session, so every test makes its own hosts and VMs. Hosts a
test deploys to by hand are DISABLED first: the scheduler only uses MONITORED hosts, so no other
test's VM lands there and HOST_SHARE counts exactly this test's VMs. VMs carry a
SCHED_REQUIREMENTS that only their (disabled) host matches, so a VM that goes back to PENDING
waits for a manual deploy instead of running somewhere else."""

from __future__ import annotations

import re
import time
import uuid

import pyone
import pytest

POWEROFF_MSG = ('[one.vm.action] Error performing action "{action}": This action is not '
                "available for state {state}")


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(check, timeout: float = 20.0):  # noqa: ANN001, ANN201 - any predicate
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"condition not met in {timeout}s: {check}")
        time.sleep(0.05)


def manual_host(one, fail: bool = False) -> int:  # noqa: ANN001
    """A dummy host that is monitored (capacity known) but DISABLED, for manual deploys."""
    hid = one.host.allocate(uniq("lc-host"), "dummy", "dummy", -1)
    one.host.status(hid, 1)
    if fail:
        one.host.update(hid, 'DUMMY_FAIL="deploy"', 1)
    wait_for(lambda: one.host.info(hid).HOST_SHARE.TOTAL_CPU == 800)
    return hid


def new_vm(one, hid: int, cpu: str = "0.5", mem: int = 64) -> int:  # noqa: ANN001
    """A VM on hold that only host ``hid`` would ever match."""
    return one.vm.allocate(
        f'NAME="{uniq("lc-vm")}"\nCPU={cpu}\nMEMORY={mem}\nSCHED_REQUIREMENTS="ID = {hid}"\n',
        True)


def running_vm(server, one, hid: int, cpu: str = "0.5", mem: int = 64) -> int:  # noqa: ANN001
    vid = new_vm(one, hid, cpu, mem)
    one.vm.deploy(vid, hid, False, -1, "")
    server.wait_vm(vid, 3, 3)
    return vid


def share(one, hid: int) -> tuple[int, int, int, list[int]]:  # noqa: ANN001
    h = one.host.info(hid)
    s = h.HOST_SHARE
    return s.CPU_USAGE, s.MEM_USAGE, s.RUNNING_VMS, sorted(h.VMS.ID)


def history(one, vid: int) -> list:  # noqa: ANN001
    return one.vm.info(vid).HISTORY_RECORDS.HISTORY


def raw_fail(server, method: str, *params: object) -> tuple[str, int]:  # noqa: ANN001
    reply = server.call(method, *params)
    assert reply[0] is False, reply
    return reply[1], reply[2]


def body_without_sched_message(server, vid: int) -> str:  # noqa: ANN001
    """The VM document minus what the scheduler writes on its own time."""
    return re.sub(r"<SCHED_MESSAGE>.*?</SCHED_MESSAGE>", "", server.call("one.vm.info", vid)[1])


# ----------------------------------------------------------------------------- hosts

def test_host_states_init_monitored_disabled_offline(server, one) -> None:
    hid = one.host.allocate(uniq("st-host"), "dummy", "dummy", -1)
    h = one.host.info(hid)
    assert h.STATE in (0, 2)  # INIT until the first probe, which may already have run
    assert h.IM_MAD == "dummy" and h.VM_MAD == "dummy" and h.CLUSTER_ID == 0
    wait_for(lambda: one.host.info(hid).STATE == 2)
    h = one.host.info(hid)
    # oned's HostPool::update sets PREV_STATE to the state it writes (host_info_monitored.xml)
    assert h.PREV_STATE == 2
    assert (h.HOST_SHARE.TOTAL_CPU, h.HOST_SHARE.MAX_CPU) == (800, 800)
    assert (h.HOST_SHARE.TOTAL_MEM, h.HOST_SHARE.MAX_MEM) == (16777216, 16777216)
    assert h.TEMPLATE["HYPERVISOR"] == "dummy"

    assert one.host.status(hid, 1) == hid
    h = one.host.info(hid)
    assert (h.STATE, h.PREV_STATE) == (4, 4)  # host_info_disabled.xml
    assert one.host.status(hid, 2) == hid
    assert one.host.info(hid).STATE == 8
    one.host.status(hid, 0)
    assert one.host.info(hid).STATE in (0, 2)
    wait_for(lambda: one.host.info(hid).STATE == 2)

    msg, code = raw_fail(server, "one.host.status", hid, 7)
    assert code == 0x1000 and msg.startswith("[one.host.status]")
    assert one.host.info(hid).STATE == 2
    assert one.host.delete(hid) == hid  # leave no MONITORED host for others' VMs


def test_scheduler_places_pending_vm_on_monitored_host(server, one) -> None:
    hid = one.host.allocate(uniq("sched-host"), "dummy", "dummy", -1)
    vid = one.vm.allocate(f'NAME="{uniq("sched")}"\nCPU=1\nMEMORY=128\n'
                          f'SCHED_REQUIREMENTS="ID = {hid}"\n')
    server.wait_vm(vid, 3, 3)
    vm = one.vm.info(vid)
    assert (vm.PREV_STATE, vm.PREV_LCM_STATE) == (3, 3)  # s2_vm_info_running.xml
    assert vm.DEPLOY_ID
    assert "SCHED_MESSAGE" not in vm.USER_TEMPLATE
    [h] = vm.HISTORY_RECORDS.HISTORY
    assert (h.SEQ, h.HID, h.ETIME, h.ACTION, h.UID, h.GID) == (0, hid, 0, 0, -1, -1)
    assert h.PSTIME and h.PETIME and h.RSTIME and h.RETIME == 0 and h.ESTIME == 0
    assert one.host.info(hid).STATE == 2
    assert share(one, hid) == (100, 131072, 1, [vid])  # s2_host_info_with_vm.xml

    one.vm.action("terminate", vid)
    server.wait_vm(vid, 6, 0)
    assert share(one, hid) == (0, 0, 0, [])  # s2_host_info_after.xml
    assert one.host.delete(hid) == hid


# ----------------------------------------------------------------------------- deploy

def test_hold_release_and_manual_deploy(server, one) -> None:
    hid = manual_host(one)
    vid = new_vm(one, hid)
    vm = one.vm.info(vid)
    assert (vm.STATE, vm.LCM_STATE, vm.PREV_STATE) == (2, 0, 2)  # vm_info_hold.xml
    assert vm.HISTORY_RECORDS.HISTORY == [] and vm.DEPLOY_ID == ""

    msg, code = raw_fail(server, "one.vm.action", "hold", vid)
    assert (msg, code) == (POWEROFF_MSG.format(action="hold", state="HOLD"), 0x800)
    assert one.vm.action("release", vid) == vid
    assert one.vm.info(vid).STATE == 1
    assert one.vm.action("hold", vid) == vid
    assert one.vm.info(vid).STATE == 2
    one.vm.action("release", vid)
    time.sleep(0.3)  # the scheduler must leave it alone: its only host is disabled
    assert one.vm.info(vid).STATE == 1

    assert one.vm.deploy(vid, hid, False, -1, "") == vid
    server.wait_vm(vid, 3, 3)
    vm = one.vm.info(vid)
    [h] = vm.HISTORY_RECORDS.HISTORY
    assert (h.SEQ, h.HID, h.HOSTNAME, h.DS_ID, h.ETIME) == (0, hid, one.host.info(hid).NAME,
                                                            0, 0)
    assert (h.ACTION, h.UID, h.GID, h.REQUEST_ID) == (0, -1, -1, "-1")
    assert 0 < h.STIME == h.PSTIME <= h.PETIME <= h.RSTIME and h.RETIME == 0
    assert vm.TEMPLATE["TM_MAD_SYSTEM"]
    assert share(one, hid) == (50, 65536, 1, [vid])

    msg, code = raw_fail(server, "one.vm.deploy", vid, hid, False, -1, "")
    assert code == 0x800 and "not available for state RUNNING" in msg


def test_wrong_state_and_unknown_action_change_nothing(server, one) -> None:
    hid = manual_host(one)
    vid = one.vm.allocate(f'NAME="{uniq("ws")}"\nCPU=0.1\nMEMORY=32\n'
                          f'SCHED_REQUIREMENTS="ID = {hid}"\n')  # stays PENDING
    before = body_without_sched_message(server, vid)
    for action in ("poweroff", "poweroff-hard", "suspend", "stop", "reboot", "undeploy",
                   "resume", "release", "resched"):
        msg, code = raw_fail(server, "one.vm.action", action, vid)
        assert (msg, code) == (POWEROFF_MSG.format(action=action, state="PENDING"), 0x800)
    msg, code = raw_fail(server, "one.vm.action", "nosuchaction", vid)
    assert (msg, code) == ('[one.vm.action] Action "nosuchaction" is not supported', 0x800)
    with pytest.raises(pyone.OneActionException):
        one.vm.action("poweroff", vid)
    assert body_without_sched_message(server, vid) == before

    one.vm.deploy(vid, hid)
    server.wait_vm(vid, 3, 3)
    for action in ("hold", "release", "resume"):
        msg, code = raw_fail(server, "one.vm.action", action, vid)
        assert (msg, code) == (POWEROFF_MSG.format(action=action, state="RUNNING"), 0x800)
    msg, code = raw_fail(server, "one.vm.action", "terminate", 999999)
    assert (msg, code) == ("[one.vm.action] Error getting virtual machine [999999].", 0x400)


# ----------------------------------------------------------------------------- actions

def test_poweroff_resume_keeps_capacity_and_writes_history(server, one) -> None:
    hid = manual_host(one)
    vid = running_vm(server, one, hid, cpu="1", mem=128)
    assert share(one, hid) == (100, 131072, 1, [vid])

    one.vm.action("poweroff", vid)
    server.wait_vm(vid, 8, 0)
    vm = one.vm.info(vid)
    assert (vm.PREV_STATE, vm.PREV_LCM_STATE) == (8, 0)  # vm_info_after_poweroff.xml
    [h] = vm.HISTORY_RECORDS.HISTORY
    assert (h.ETIME, h.ESTIME, h.EETIME, h.ACTION, h.UID, h.GID) == (0, 0, 0, 19, 0, 0)
    assert h.RETIME >= h.RSTIME > 0
    assert share(one, hid) == (100, 131072, 1, [vid])  # poweroff keeps the host's capacity

    one.vm.action("resume", vid)
    server.wait_vm(vid, 3, 3)
    old, new = history(one, vid)  # vm_info_0_resumed.xml
    assert old.ETIME >= old.STIME and old.ETIME > 0 and old.ACTION == 19
    assert (new.SEQ, new.HID, new.ETIME, new.PSTIME, new.PETIME) == (1, hid, 0, 0, 0)
    assert (new.RETIME, new.ESTIME, new.EETIME, new.ACTION, new.UID, new.GID) == (
        0, 0, 0, 0, -1, -1)
    assert new.RSTIME == new.STIME >= old.ETIME
    assert share(one, hid) == (100, 131072, 1, [vid])

    one.vm.action("poweroff-hard", vid)
    server.wait_vm(vid, 8, 0)
    assert history(one, vid)[-1].ACTION == 20
    msg, code = raw_fail(server, "one.vm.action", "poweroff", vid)
    assert (msg, code) == (POWEROFF_MSG.format(action="poweroff", state="POWEROFF"), 0x800)
    one.vm.action("resume", vid)
    server.wait_vm(vid, 3, 3)
    assert [h.SEQ for h in history(one, vid)] == [0, 1, 2]


def test_reboot_and_resched_keep_running(server, one) -> None:
    hid = manual_host(one)
    vid = running_vm(server, one, hid)
    one.vm.action("resched", vid)
    assert one.vm.info(vid).RESCHED == 1
    one.vm.action("unresched", vid)
    assert one.vm.info(vid).RESCHED == 0
    one.vm.action("resched", vid)
    one.vm.action("reboot", vid)
    vm = one.vm.info(vid)
    assert (vm.STATE, vm.LCM_STATE, vm.RESCHED) == (3, 3, 0)  # reboot clears RESCHED
    assert history(one, vid)[-1].ACTION == 15
    one.vm.action("reboot-hard", vid)
    server.wait_vm(vid, 3, 3)
    [h] = history(one, vid)
    assert (h.ACTION, h.ETIME, h.RETIME) == (16, 0, 0)


def test_terminate_releases_capacity_and_closes_history(server, one) -> None:
    hid = manual_host(one)
    soft = running_vm(server, one, hid)
    hard = running_vm(server, one, hid)
    assert share(one, hid) == (100, 131072, 2, sorted([soft, hard]))

    one.vm.action("terminate", soft)
    server.wait_vm(soft, 6, 0)
    vm = one.vm.info(soft)
    assert (vm.PREV_STATE, vm.PREV_LCM_STATE, vm.RESCHED) == (6, 0, 0)  # s2_vm_info_done
    assert vm.ETIME >= vm.STIME
    [h] = vm.HISTORY_RECORDS.HISTORY
    assert (h.ACTION, h.UID, h.GID) == (27, 0, 0)
    assert 0 < h.RSTIME <= h.RETIME <= h.ESTIME <= h.EETIME <= h.ETIME
    assert share(one, hid) == (50, 65536, 1, [hard])

    one.vm.action("terminate-hard", hard)
    server.wait_vm(hard, 6, 0)
    assert history(one, hard)[-1].ACTION == 28
    assert share(one, hid) == (0, 0, 0, [])

    # DONE VMs stay readable, only listed with the -2 state filter; terminate is a no-op.
    assert one.vm.action("terminate", soft) == soft
    ids = [v.ID for v in one.vmpool.info(-2, soft, soft, -2).VM]
    assert ids == [soft]
    assert one.vmpool.info(-2, soft, soft, -1).VM == []
    assert one.host.delete(hid) == hid


def test_terminate_from_pending_hold_and_poweroff(server, one) -> None:
    hid = manual_host(one)
    held = new_vm(one, hid)
    one.vm.action("terminate", held)
    vm = one.vm.info(held)
    assert (vm.STATE, vm.LCM_STATE, vm.HISTORY_RECORDS.HISTORY) == (6, 0, [])
    off = running_vm(server, one, hid)
    one.vm.action("poweroff", off)
    server.wait_vm(off, 8, 0)
    one.vm.action("terminate", off)
    server.wait_vm(off, 6, 0)
    assert history(one, off)[-1].ACTION == 27
    assert share(one, hid) == (0, 0, 0, [])


def test_undeploy_then_resume_and_deploy_again(server, one) -> None:
    hid = manual_host(one)
    vid = running_vm(server, one, hid)
    one.vm.action("undeploy", vid)
    server.wait_vm(vid, 9, 0)
    [h] = history(one, vid)
    assert (h.ACTION, h.UID) == (5, 0)
    assert 0 < h.RETIME <= h.ESTIME <= h.EETIME and h.ETIME > 0
    assert share(one, hid) == (0, 0, 0, [])  # undeployed: the host is free

    one.vm.action("resume", vid)
    vm = one.vm.info(vid)
    assert (vm.STATE, vm.LCM_STATE) == (1, 0)
    # DispatchManager::resume from UNDEPLOYED writes no history action
    assert vm.HISTORY_RECORDS.HISTORY[-1].ACTION == 5
    one.vm.deploy(vid, hid)
    server.wait_vm(vid, 3, 3)
    old, new = history(one, vid)
    assert (new.SEQ, new.ACTION, new.ETIME) == (1, 0, 0) and new.PSTIME and new.RSTIME
    assert share(one, hid) == (50, 65536, 1, [vid])

    one.vm.action("poweroff", vid)
    server.wait_vm(vid, 8, 0)
    one.vm.action("undeploy-hard", vid)  # from POWEROFF: only the disks move back
    server.wait_vm(vid, 9, 0)
    assert history(one, vid)[-1].ACTION == 6
    assert share(one, hid) == (0, 0, 0, [])
    msg, code = raw_fail(server, "one.vm.action", "undeploy", vid)
    assert (msg, code) == (POWEROFF_MSG.format(action="undeploy", state="UNDEPLOYED"), 0x800)


def test_stop_resume_and_suspend_resume(server, one) -> None:
    hid = manual_host(one)
    vid = running_vm(server, one, hid)
    one.vm.action("stop", vid)
    server.wait_vm(vid, 4, 0)
    [h] = history(one, vid)
    assert h.ACTION == 9 and h.ETIME > 0 and h.EETIME > 0
    assert share(one, hid) == (0, 0, 0, [])
    one.vm.action("resume", vid)
    assert one.vm.info(vid).STATE == 1
    assert history(one, vid)[-1].ACTION == 9
    one.vm.deploy(vid, hid)
    server.wait_vm(vid, 3, 3)
    assert [h.SEQ for h in history(one, vid)] == [0, 1]

    one.vm.action("suspend", vid)
    server.wait_vm(vid, 5, 0)
    assert history(one, vid)[-1].ACTION == 10
    assert share(one, hid) == (50, 65536, 1, [vid])  # suspended: files and capacity stay
    msg, code = raw_fail(server, "one.vm.action", "suspend", vid)
    assert (msg, code) == (POWEROFF_MSG.format(action="suspend", state="SUSPENDED"), 0x800)
    one.vm.action("resume", vid)
    server.wait_vm(vid, 3, 3)
    recs = history(one, vid)
    assert [h.SEQ for h in recs] == [0, 1, 2]
    assert recs[1].ETIME > 0 and recs[2].ETIME == 0 and recs[2].HID == hid

    one.vm.action("suspend", vid)
    server.wait_vm(vid, 5, 0)
    one.vm.action("stop", vid)  # stop is also valid from SUSPENDED
    server.wait_vm(vid, 4, 0)
    assert share(one, hid) == (0, 0, 0, [])


def test_cold_migrate_running_and_poweroff(server, one) -> None:
    src, dst = manual_host(one), manual_host(one)
    vid = running_vm(server, one, src)
    msg, code = raw_fail(server, "one.vm.migrate", vid, src, False, False, -1, 0)
    assert code == 0x800

    assert one.vm.migrate(vid, dst, False, False, -1, 0) == vid
    server.wait_vm(vid, 3, 3)
    old, new = history(one, vid)
    assert (old.HID, old.ACTION, new.HID, new.SEQ, new.ETIME) == (src, 1, dst, 1, 0)
    assert old.ETIME > 0 and new.PSTIME and new.RSTIME
    assert share(one, src) == (0, 0, 0, [])
    assert share(one, dst) == (50, 65536, 1, [vid])

    one.vm.action("poweroff", vid)
    server.wait_vm(vid, 8, 0)
    one.vm.migrate(vid, src, False, False, -1, 0)
    server.wait_vm(vid, 8, 0)  # a powered-off VM moves and stays off
    assert history(one, vid)[-1].HID == src
    assert share(one, src) == (50, 65536, 1, [vid])
    assert share(one, dst) == (0, 0, 0, [])

    held = new_vm(one, src)
    msg, code = raw_fail(server, "one.vm.migrate", held, dst, False, False, -1, 0)
    assert code == 0x800 and "HOLD" in msg


def test_resize_running_and_poweroff(server, one) -> None:
    hid = manual_host(one)
    vid = running_vm(server, one, hid, cpu="1", mem=128)
    assert one.vm.resize(vid, "CPU=2\nMEMORY=256\nVCPU=2", False) == vid
    server.wait_vm(vid, 3, 3)
    t = one.vm.info(vid).TEMPLATE
    assert (t["CPU"], t["MEMORY"], t["VCPU"]) == ("2", "256", "2")
    assert share(one, hid) == (200, 262144, 1, [vid])

    one.vm.action("poweroff", vid)
    server.wait_vm(vid, 8, 0)
    one.vm.resize(vid, {"CPU": "0.5", "MEMORY": "64"}, False)
    assert share(one, hid) == (50, 65536, 1, [vid])
    msg, code = raw_fail(server, "one.vm.resize", vid, "MEMORY=-4", False)
    assert code != 0
    assert one.vm.info(vid).TEMPLATE["MEMORY"] == "64"

    held = new_vm(one, hid)
    one.vm.resize(held, "CPU=3\nMEMORY=1024", False)  # not placed: no capacity moves
    assert one.vm.info(held).TEMPLATE["MEMORY"] == "1024"
    assert share(one, hid) == (50, 65536, 1, [vid])


# ----------------------------------------------------------------------------- recover

def failed_vm(server, one) -> tuple[int, int]:  # noqa: ANN001
    """A VM whose deploy failed: ACTIVE/BOOT_FAILURE on a host with DUMMY_FAIL=deploy."""
    hid = manual_host(one, fail=True)
    vid = new_vm(one, hid)
    one.vm.deploy(vid, hid)
    server.wait_vm(vid, 3, 36)
    return vid, hid


def test_failed_deploy_ends_in_boot_failure_with_error(server, one) -> None:
    vid, hid = failed_vm(server, one)
    vm = one.vm.info(vid)
    assert "ERROR" in vm.USER_TEMPLATE and "deploy" in vm.USER_TEMPLATE["ERROR"]
    assert [v.USER_TEMPLATE.get("ERROR") for v in one.vmpool.info(-2, vid, vid, -1).VM]
    assert share(one, hid) == (50, 65536, 1, [vid])  # still allocated to the host
    msg, code = raw_fail(server, "one.vm.action", "poweroff", vid)
    assert (msg, code) == (POWEROFF_MSG.format(action="poweroff", state="BOOT_FAILURE"),
                           0x800)


def test_recover_retry_then_success_after_fix(server, one) -> None:
    vid, hid = failed_vm(server, one)
    assert one.vm.recover(vid, 2) == vid  # retry: fails again on the same host
    server.wait_vm(vid, 3, 36)
    one.host.update(hid, 'DUMMY_FAIL=""', 1)
    one.vm.recover(vid, 2)
    server.wait_vm(vid, 3, 3)
    vm = one.vm.info(vid)
    assert len(vm.HISTORY_RECORDS.HISTORY) == 1 and vm.DEPLOY_ID


def test_recover_success_and_failure(server, one) -> None:
    vid, hid = failed_vm(server, one)
    # recover --failure from a failure state leaves it there (LCM deploy_failure)
    assert one.vm.recover(vid, 0) == vid
    assert (one.vm.info(vid).STATE, one.vm.info(vid).LCM_STATE) == (3, 36)
    assert one.vm.recover(vid, 1) == vid  # --success: the boot is taken as done
    server.wait_vm(vid, 3, 3)
    assert share(one, hid) == (50, 65536, 1, [vid])
    msg, code = raw_fail(server, "one.vm.recover", vid, 9)
    assert code in (0x800, 0x1000)

    held = new_vm(one, hid)
    msg, code = raw_fail(server, "one.vm.recover", held, 1)
    assert code == 0x800 and one.vm.info(held).STATE == 2


def test_recover_delete(server, one) -> None:
    vid, hid = failed_vm(server, one)
    one.vm.recover(vid, 3)
    server.wait_vm(vid, 6, 0)
    [h] = history(one, vid)
    assert (h.ACTION, h.UID) == (13, 0) and h.ETIME > 0
    assert one.vm.info(vid).ETIME > 0
    assert share(one, hid) == (0, 0, 0, [])
    msg, code = raw_fail(server, "one.vm.recover", vid, 3)
    assert code == 0x800


def test_recover_delete_recreate(server, one) -> None:
    vid, hid = failed_vm(server, one)
    one.vm.recover(vid, 4)
    server.wait_vm(vid, 1, 0)
    vm = one.vm.info(vid)
    assert vm.HISTORY_RECORDS.HISTORY[-1].ACTION == 14
    assert vm.HISTORY_RECORDS.HISTORY[-1].ETIME > 0
    assert share(one, hid) == (0, 0, 0, [])
    good = manual_host(one)
    one.vm.deploy(vid, good)
    server.wait_vm(vid, 3, 3)
    recs = history(one, vid)
    assert [(h.SEQ, h.HID) for h in recs] == [(0, hid), (1, good)]


# ----------------------------------------------------------------------------- host rules

def test_host_with_vms_cannot_be_deleted(server, one) -> None:
    hid = manual_host(one)
    vid = running_vm(server, one, hid)
    msg, code = raw_fail(server, "one.host.delete", hid)
    assert code == 0x800 and msg.startswith("[one.host.delete]")
    assert one.host.info(hid).VMS.ID == [vid]
    one.vm.action("terminate-hard", vid)
    server.wait_vm(vid, 6, 0)
    one.host.delete(hid)
    with pytest.raises(pyone.OneNoExistsException):
        one.host.info(hid)


def test_unknown_driver_fails_the_deploy_instead_of_hanging(server, one) -> None:
    """A host may name a driver that is not installed (oned accepts any name): the host turns
    ERROR when monitored, and a VM deployed there by hand ends in PROLOG_FAILURE with the
    reason, instead of staying in PROLOG for ever."""
    hid = one.host.allocate(uniq("no-such-driver"), "kvm", "kvm", -1)
    wait_for(lambda: one.host.info(hid).STATE == 3)  # ERROR
    vid = new_vm(one, hid)
    one.vm.deploy(vid, hid, False, -1, "")
    server.wait_vm(vid, 3, 39)
    assert "no vmm driver named 'kvm'" in dict(one.vm.info(vid).USER_TEMPLATE)["ERROR"]
    one.vm.recover(vid, 3)
    server.wait_vm(vid, 6)
    one.host.delete(hid)
