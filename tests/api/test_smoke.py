"""The shortest path through the product: a dummy host, a VM placed by the scheduler."""

from __future__ import annotations


def test_allocate_to_running_on_dummy_host(server, one) -> None:
    hid = one.host.allocate("smoke-h", "dummy", "dummy", -1)
    # The server is shared: pin the VM to this test's host.
    vid = one.vm.allocate(f'NAME="smoke"\nCPU=0.1\nMEMORY=64\nSCHED_REQUIREMENTS="ID = {hid}"\n')
    server.wait_vm(vid, 3, 3)
    vm = one.vm.info(vid)
    assert vm.HISTORY_RECORDS.HISTORY[0].HID == hid
    one.vm.action("terminate-hard", vid)
    server.wait_vm(vid, 6, 0)
