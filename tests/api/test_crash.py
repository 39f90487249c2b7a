"""No work is lost when a process dies: a core killed in the middle of deploys is restarted by
``serve`` and finishes them (no VM stuck in a transient state, no operation run twice to a
different end), and an API worker killed mid-call is replaced by gunicorn."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("crash"), "sqlite")
    yield srv
    stop_server(srv)


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            continue
    return out


def role(pid: int, name: str) -> int:
    for child in children(pid):
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:  # exited meanwhile
            continue
        if name.encode() in argv[:4]:
            return child
    raise AssertionError(f"no {name} process under {pid}")


def test_core_killed_mid_deploy_finishes_the_work(crash_server: Server) -> None:
    one = crash_server.pyone()
    hid = one.host.allocate("crash-h", "dummy", "dummy", -1)
    one.host.update(hid, 'DUMMY_DELAY="2"', 1)
    vms = [one.vm.allocate(f'NAME="c{i}"\nCPU=0.1\nMEMORY=32\nSCHED_REQUIREMENTS="ID = {hid}"')
           for i in range(3)]
    deadline = time.time() + 15
    while time.time() < deadline and one.vm.info(vms[0]).LCM_STATE != 2:
        time.sleep(0.05)
    assert one.vm.info(vms[0]).LCM_STATE == 2, "first VM should be booting"
    core = role(crash_server.proc.pid, "core")
    os.kill(core, signal.SIGKILL)
    for vid in vms:
        crash_server.wait_vm(vid, 3, 3, timeout=30)
    assert role(crash_server.proc.pid, "core") != core, "a new core runs"
    host = one.host.info(hid)
    assert host.HOST_SHARE.RUNNING_VMS == 3
    for vid in vms:  # each VM got one deploy, on one history record
        assert len(one.vm.info(vid).HISTORY_RECORDS.HISTORY) == 1


def test_api_worker_killed_is_replaced(crash_server: Server) -> None:
    one = crash_server.pyone()
    api = role(crash_server.proc.pid, "api")
    worker = children(api)[0]
    os.kill(worker, signal.SIGKILL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if one.system.version() == "7.4.0" and worker not in children(api):
                break
        except Exception:  # noqa: BLE001 - a connection reset while the worker is replaced
            pass
        time.sleep(0.1)
    assert one.system.version() == "7.4.0"
    assert worker not in children(api)
