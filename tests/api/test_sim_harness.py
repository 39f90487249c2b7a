"""The sim hosts end to end, through the same harness as the 100x200 experiment: a private
server with sim driver blocks, 20 sim hosts registered through XML-RPC, 10 VMs allocated one
after another, each watched until RUNNING. Timings must respect the model (never faster than
its floor) and the core must add little to it; with zero transfer and boot time, every VM runs
within 2 s of the last allocate; a host the model takes down turns ERROR."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
sys.path.insert(0, str(TOOLS))

import experiment_100x200 as exp  # noqa: E402
import harness  # noqa: E402
import sim_hosts  # noqa: E402

SPEED = 50.0


def _run(setup: exp.Setup) -> exp.Run:
    return exp.run_setup(setup, SPEED, hosts=20, vms=10, timeout_sim=1200,
                         progress=exp.Progress(quiet=True))


def test_vms_run_on_sim_hosts_no_faster_than_the_model() -> None:
    run = _run(dataclasses.replace(exp.SETUPS["c"], key="ci"))
    assert run.done and len(run.vms) == 10
    assert {v.host for v in run.vms} <= set(range(20))
    # 10 VMs of 400 MB + ~20 s boots: the model's floor is tens of sim seconds; the run can't
    # beat it and, through the whole core, stays within a generous factor of it.
    assert run.floor_sim > 20
    assert run.makespan_sim >= 0.95 * run.floor_sim, (run.makespan_sim, run.floor_sim)
    assert run.makespan_sim <= 2.0 * run.floor_sim + 30, (run.makespan_sim, run.floor_sim)
    for v in run.vms:
        assert v.running_wall > v.alloc_wall


def test_zero_time_vms_run_within_two_seconds_of_the_last_allocate() -> None:
    run = _run(dataclasses.replace(exp.SETUPS["z"], key="ci-zero"))
    after = max(v.running_wall for v in run.vms) - run.last_alloc_wall
    assert after <= exp.ZERO_LIMIT_WALL, after


def test_a_host_taken_down_by_the_model_turns_error() -> None:
    etc = sim_hosts.write_etc(Path(tempfile.mkdtemp(prefix="ci_sim_etc_")),
                              {"SIM_SPEED": f"{SPEED:g}"})
    server = harness.start_server(2, etc=etc, extra=["--monitor-interval", "0.2"],
                                  prefix="ci_sim_", wait_workers=False)
    try:
        ok = sim_hosts.add(server.call, 1, prefix="up", template='SIM_CPU="4"')
        down = sim_hosts.add(server.call, 1, prefix="down",
                             template='SIM_DOWN_AT="0"\nSIM_DOWN_FOR="1e9"')
        # Generous bounds: on 2 busy cores a monitoring round can lag (the test still ends as
        # soon as the states are there).
        sim_hosts.wait_monitored(server.call, ok, timeout=60)
        deadline = time.monotonic() + 60
        while sim_hosts.host_states(server.call)[down[0]][1] != sim_hosts.HOST_ERROR:
            if time.monotonic() > deadline:
                pytest.fail("the down host never turned ERROR")
            time.sleep(0.1)
        info = server.call("one.host.info", ok[0])
        assert "<TOTAL_CPU>400</TOTAL_CPU>" in info
        assert "is down" in server.call("one.host.info", down[0])
        assert sim_hosts.remove(server.call, "down") == 1
    finally:
        harness.stop_server(server)
        shutil.rmtree(etc, ignore_errors=True)
