"""A host whose driver can't be loaded (the ``lxc`` plug-in without libvirt-python, as after
``pip install -e .`` without the ``lxc`` extra) turns ERROR with the reason and what to install
in its ERROR attribute, as oned writes a failing probe; the core logs it once, not once per
monitoring interval."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from conftest import Server, start_server, stop_server, wait_for

HIDDEN = "No module named 'libvirt'"


@pytest.fixture(scope="module")
def no_libvirt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose processes can't import libvirt: a module of that name first on the path
    raises what Python raises for a module that is not installed."""
    tmp = tmp_path_factory.mktemp("no-libvirt")
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "libvirt.py").write_text(f'raise ModuleNotFoundError("{HIDDEN}", name="libvirt")\n')
    srv = start_server(tmp, "sqlite", ["--monitor-interval", "0.2"],
                       env={"PYTHONPATH": str(shim)})
    yield srv
    stop_server(srv)


def error_of(one, hid: int) -> str:  # noqa: ANN001 - pyone has no stubs
    return dict(one.host.info(hid).TEMPLATE).get("ERROR", "")


def test_lxc_host_without_libvirt_says_what_to_install(no_libvirt: Server) -> None:
    one = no_libvirt.pyone()
    hid = one.host.allocate("lxc-without-libvirt", "lxc", "lxc", -1)
    wait_for("the host to turn ERROR", lambda: one.host.info(hid).STATE == 3)
    first = error_of(one, hid)
    # oned's shape: "<date> : Error monitoring Host NAME (ID): <message>".
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} : Error monitoring Host "
                        rf"lxc-without-libvirt \({hid}\): .+", first), first
    assert HIDDEN in first
    assert re.search(r"install it with: \S+ -m pip install (-e )?'\S+\[lxc\]'", first), first

    # A VM waits, with the scheduler's reason, instead of failing.
    vid = one.vm.allocate('NAME="waits"\nCPU=0.1\nMEMORY=32')
    wait_for("the scheduler's message", lambda: "No hosts enabled to run VMs"
             in dict(one.vm.info(vid).USER_TEMPLATE).get("SCHED_MESSAGE", ""))
    assert one.vm.info(vid).STATE == 1  # PENDING

    # Sampled again (the message's time moves on), still logged once.
    wait_for("another sample", lambda: error_of(one, hid) != first)
    log = (no_libvirt.data_dir.parent / "server.log").read_text()
    assert log.count(HIDDEN) == 1, log
    assert "Traceback" not in log, log


def test_other_drivers_work_beside_it(no_libvirt: Server) -> None:
    one = no_libvirt.pyone()
    hid = one.host.allocate("dummy-beside", "dummy", "dummy", -1)
    wait_for("the dummy host to be MONITORED", lambda: one.host.info(hid).STATE == 2)
    assert "ERROR" not in dict(one.host.info(hid).TEMPLATE)

