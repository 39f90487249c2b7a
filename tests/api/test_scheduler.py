"""The scheduler job end to end, through pyone on a private server with dummy hosts: VMs reach
RUNNING without any one.vm.deploy, an unplaceable VM says why per filter, and a failed deploy
sends the VM elsewhere instead of blocking it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def sched_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("sched"), "sqlite")
    yield srv
    stop_server(srv)


def _monitored(one, *hids: int) -> None:
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(one.host.info(h).STATE == 2 for h in hids):
            return
        time.sleep(0.05)
    raise AssertionError("hosts not MONITORED")


def _user_template(one, vid: int) -> dict:
    return dict(one.vm.info(vid).USER_TEMPLATE or {})


def test_pending_vms_run_without_deploy_calls(sched_server: Server) -> None:
    one = sched_server.pyone()
    hosts = [one.host.allocate(f"s-run-{i}", "dummy", "dummy", -1) for i in range(3)]
    _monitored(one, *hosts)
    vms = [one.vm.allocate(f'NAME="run-{i}"\nCPU=0.1\nMEMORY=32\n') for i in range(6)]
    for vid in vms:
        sched_server.wait_vm(vid, 3, 3)
    placed = [one.vm.info(v).HISTORY_RECORDS.HISTORY[-1].HID for v in vms]
    # Striping (the default policy) spreads them: two per host.
    assert sorted(placed.count(h) for h in hosts) == [2, 2, 2]


def test_requirements_choose_the_host(sched_server: Server) -> None:
    one = sched_server.pyone()
    hid = one.host.allocate("s-req-target", "dummy", "dummy", -1)
    _monitored(one, hid)
    vid = one.vm.allocate('NAME="req"\nCPU=0.1\nMEMORY=32\n'
                          'SCHED_REQUIREMENTS="NAME = \\"s-req-*\\""\n')
    sched_server.wait_vm(vid, 3, 3)
    assert one.vm.info(vid).HISTORY_RECORDS.HISTORY[-1].HID == hid


def test_unplaceable_vm_says_why_per_filter(sched_server: Server) -> None:
    one = sched_server.pyone()
    vid = one.vm.allocate('NAME="huge"\nCPU=0.1\nMEMORY=999999999\n')
    deadline = time.time() + 10
    message = ""
    while time.time() < deadline and not message:
        message = _user_template(one, vid).get("SCHED_MESSAGE", "")
        time.sleep(0.05)
    assert "Cannot dispatch VM" in message
    assert "not enough memory" in message and "0 left" in message, message
    assert one.vm.info(vid).STATE == 1  # still PENDING


def test_failed_deploy_moves_the_vm_to_another_host(sched_server: Server) -> None:
    one = sched_server.pyone()
    bad = one.host.allocate("s-bad", "dummy", "dummy", -1)
    one.host.update(bad, 'DUMMY_FAIL="deploy"\nROLE="failtest"', 1)
    good = one.host.allocate("s-good", "dummy", "dummy", -1)
    one.host.update(good, 'ROLE="failtest"', 1)
    _monitored(one, bad, good)
    vid = one.vm.allocate('NAME="retry"\nCPU=0.1\nMEMORY=32\n'
                          'SCHED_REQUIREMENTS="ROLE = failtest"\nSCHED_RANK="- ID"\n')
    sched_server.wait_vm(vid, 3, 3)
    vm = one.vm.info(vid)
    assert vm.HISTORY_RECORDS.HISTORY[-1].HID == good
    seqs = [h.HID for h in vm.HISTORY_RECORDS.HISTORY]
    assert seqs[0] == bad, "the first attempt went to the lowest-ranked-ID host"
    # The ERROR of the failed attempt was cleared by the successful deploy, as oned does.
    assert "ERROR" not in _user_template(one, vid)
    # The failed host's capacity was released.
    assert one.host.info(bad).HOST_SHARE.RUNNING_VMS == 0


def test_resched_moves_the_vm_by_cold_migration(sched_server: Server) -> None:
    one = sched_server.pyone()
    a = one.host.allocate("s-mig-a", "dummy", "dummy", -1)
    one.host.update(a, 'ROLE="migtest"', 1)
    vid = one.vm.allocate('NAME="mig"\nCPU=0.1\nMEMORY=32\nSCHED_REQUIREMENTS="ROLE = migtest"\n')
    _monitored(one, a)
    sched_server.wait_vm(vid, 3, 3)
    assert one.vm.info(vid).HISTORY_RECORDS.HISTORY[-1].HID == a
    b = one.host.allocate("s-mig-b", "dummy", "dummy", -1)
    one.host.update(b, 'ROLE="migtest"', 1)
    _monitored(one, b)
    one.vm.action("resched", vid)
    deadline = time.time() + 15
    while time.time() < deadline and one.vm.info(vid).HISTORY_RECORDS.HISTORY[-1].HID != b:
        time.sleep(0.05)
    sched_server.wait_vm(vid, 3, 3)
    vm = one.vm.info(vid)
    assert [h.HID for h in vm.HISTORY_RECORDS.HISTORY] == [a, b]
    assert vm.HISTORY_RECORDS.HISTORY[0].ACTION == 1  # closed by a migration
    assert vm.RESCHED == 0
    assert one.host.info(a).HOST_SHARE.RUNNING_VMS == 0


def test_owner_needs_manage_on_the_host(sched_server: Server) -> None:
    """As mm_sched: a user's VM goes only where the owner may MANAGE the host. Group users
    may, by the default VDC's rule; a user of a new group with no rules may not."""
    one = sched_server.pyone()
    hid = one.host.allocate("s-acl", "dummy", "dummy", -1)
    one.host.update(hid, 'ROLE="acltest"', 1)
    _monitored(one, hid)
    template = 'NAME="{}"\nCPU=0.1\nMEMORY=32\nSCHED_REQUIREMENTS="ROLE = acltest"\n'
    one.user.allocate("acl-in-users", "pw", "", [1])
    in_users = sched_server.pyone("acl-in-users:pw").vm.allocate(template.format("u1"))
    sched_server.wait_vm(in_users, 3, 3)
    gid = one.group.allocate("acl-nohosts")
    one.vdc.delgroup(0, gid)  # out of the default VDC, which every new group joins
    one.acl.addrule(f"{0x200000000 | gid:x}", f"{0x400000000 | 0x1000000000:x}", "8")
    one.user.allocate("acl-outsider", "pw", "", [gid])
    outsider = sched_server.pyone("acl-outsider:pw").vm.allocate(template.format("u2"))
    deadline = time.time() + 10
    message = ""
    while time.time() < deadline and "owner may not use it" not in message:
        message = _user_template(one, outsider).get("SCHED_MESSAGE", "")
        time.sleep(0.05)
    # Every host of the shared server is out of the owner's reach, this one included.
    assert "excluded (deploy back-off, current host, or the owner may not use it)" in message
    assert message.endswith("0 left"), message
    assert one.vm.info(outsider).STATE == 1
