"""The sim host model: transfer arithmetic (alone, sharing the uplink, disk-capped), the host
image cache, failure injection and the clock, both as pure arithmetic and through the live
drivers at a fast clock."""

from __future__ import annotations

import threading
import time

import pytest

import drivers.sim.world as world_mod
from drivers.sim import SimIM, SimTM, SimVMM
from drivers.sim.model import (
    DEFAULT,
    Deploy,
    Flow,
    SimConfig,
    boot_seconds,
    deploy_fails,
    disk_images,
    fair_rates,
    fluid_finish_times,
    makespan_floor,
)
from drivers.sim.world import SharedLink, SimClock, World
from oneserver.driver_contract import DriverError, HostRef, HostUnreachable, VMSpec

# ------------------------------------------------------------------------------ values


def test_defaults_are_a_typical_server_and_link() -> None:
    assert DEFAULT.uplink_mb_s == pytest.approx(117.5)  # 1 Gbit/s at 94 % payload
    assert DEFAULT.fetch_alone_s(400) == pytest.approx(400 / 117.5)
    assert DEFAULT.local_copy_s(400) == pytest.approx(400 / 150)
    assert (DEFAULT.cpu_cores, DEFAULT.memory_mb) == (16, 65536)


def test_overrides_apply_in_order_and_convert() -> None:
    cfg = DEFAULT.with_overrides({"SIM_CPU": "8", "SIM_CACHE": "NO"},
                                 {"SIM_CPU": "32", "OTHER": "x", "SIM_BOOT_S": "5.5"})
    assert (cfg.cpu_cores, cfg.cache, cfg.boot_s) == (32, False, 5.5)
    with pytest.raises(ValueError):
        DEFAULT.with_overrides({"SIM_BOOT_DIST": "bimodal"})


def test_image_size_from_disk_size_or_sim_image_mb() -> None:
    assert disk_images({"DISK": {"SOURCE": "a.tgz", "SIZE": "250"}}, DEFAULT) == [("a.tgz", 250)]
    two = disk_images({"DISK": [{"IMAGE": "x"}, {"IMAGE": "y", "SIZE": "10"}]}, DEFAULT)
    assert two == [("x", 400), ("y", 10)]
    assert disk_images({}, DEFAULT.with_overrides({"SIM_IMAGE_MB": "0"})) == [("rootfs-0MB", 0)]


# ------------------------------------------------------------------------------ uplink


def test_fair_rates_share_equally_and_respect_caps() -> None:
    assert fair_rates(120, [150, 150, 150]) == [40, 40, 40]
    assert fair_rates(120, [10, 150, 150]) == [10, 55, 55]
    assert fair_rates(117.5, [150]) == [117.5]
    assert fair_rates(1000, [150, 150]) == [150, 150]  # disk-bound, link not full


def test_concurrent_transfers_share_the_uplink() -> None:
    # Two 400 MB flows at once on 100 MB/s: each gets 50, both end at 8 s.
    assert fluid_finish_times(100, [Flow(0, 400, 150), Flow(0, 400, 150)]) == [8, 8]
    # A second flow arriving at 2 s: the first had 200 MB left, both at 50 -> 6 s; then
    # the second has 200 MB left alone at 100 -> 8 s.
    assert fluid_finish_times(100, [Flow(0, 400, 150), Flow(2, 400, 150)]) == [6, 8]
    # 100 images of 400 MB on 1 Gbit/s take as long as 40 GB over it.
    ends = fluid_finish_times(DEFAULT.uplink_mb_s, [Flow(0, 400, 150)] * 100)
    assert max(ends) == pytest.approx(40000 / 117.5)


def test_live_link_matches_the_arithmetic() -> None:
    clock = SimClock(20.0)
    link = SharedLink(100.0, clock)
    took: list[float] = []
    start = threading.Barrier(2)

    def go() -> None:
        start.wait()
        took.append(link.transfer(100, 150))  # alone 1 s; two at once 2 s each

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(1.8 < s < 2.4 for s in took), took
    assert link.peak == 2 and link.active == 0


# ------------------------------------------------------------------------------ cache


def test_cache_hit_costs_a_local_copy_and_misses_fetch_once() -> None:
    w = World(DEFAULT.with_overrides({"SIM_SPEED": "1000"}))
    cfg = w.cfg
    assert w.put_image(1, cfg, "img", 400) is False  # miss: over the uplink
    t0 = time.monotonic()
    assert w.put_image(1, cfg, "img", 400) is True  # hit: local copy
    assert time.monotonic() - t0 == pytest.approx(400 / 150 / 1000, abs=0.02)
    assert w.put_image(2, cfg, "img", 400) is False  # another host has its own cache
    assert (w.stats.fetches, w.stats.cache_hits, w.stats.fetched_mb) == (2, 1, 800)


def test_concurrent_misses_of_one_image_on_one_host_fetch_it_once() -> None:
    w = World(DEFAULT.with_overrides({"SIM_SPEED": "1000"}))
    hits: list[bool] = []
    threads = [threading.Thread(target=lambda: hits.append(w.put_image(7, w.cfg, "i", 400)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(hits) == [False, True, True, True]
    assert w.stats.fetches == 1


def test_without_cache_every_deploy_fetches_and_warm_cache_never_does() -> None:
    cold = World(DEFAULT.with_overrides({"SIM_SPEED": "1000", "SIM_CACHE": "NO"}))
    assert not cold.put_image(1, cold.cfg, "i", 10) and not cold.put_image(1, cold.cfg, "i", 10)
    warm = World(DEFAULT.with_overrides({"SIM_SPEED": "1000", "SIM_CACHED": "*"}))
    assert warm.put_image(1, warm.cfg, "i", 10)


# ------------------------------------------------------------------------------ boot, failures


def test_boot_times_are_seeded_per_vm_with_the_configured_mean() -> None:
    assert boot_seconds(DEFAULT, 3) == boot_seconds(DEFAULT, 3)
    draws = [boot_seconds(DEFAULT, i) for i in range(4000)]
    assert sum(draws) / len(draws) == pytest.approx(20, rel=0.03)
    assert boot_seconds(DEFAULT.with_overrides({"SIM_BOOT_DIST": "fixed"}), 9) == 20
    uni = DEFAULT.with_overrides({"SIM_BOOT_DIST": "uniform", "SIM_BOOT_SPREAD": "0.5"})
    assert all(10 <= boot_seconds(uni, i) <= 30 for i in range(200))
    assert boot_seconds(DEFAULT.with_overrides({"SIM_SEED": "2"}), 3) != boot_seconds(DEFAULT, 3)


def test_deploy_failure_rate() -> None:
    cfg = DEFAULT.with_overrides({"SIM_DEPLOY_FAIL_RATE": "0.2"})
    fails = sum(deploy_fails(cfg, i, 0) for i in range(5000))
    assert 900 < fails < 1100
    assert not any(deploy_fails(DEFAULT, i, 0) for i in range(100))


def _fast(**opts: str) -> dict[str, str]:
    return {"SIM_SPEED": "10000", "SIM_BOOT_DIST": "fixed", **opts}


def test_drivers_deploy_monitor_and_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    world_mod.reset()
    try:
        opts = _fast(SIM_DEPLOY_FAIL_RATE="1")
        vmm, tm, im = SimVMM(_fast()), SimTM(_fast()), SimIM(_fast())
        host = HostRef(1, "s1", {})
        vm = VMSpec(id=5, name="v", cpu=1, vcpu=1, memory_mb=1024,
                    template={"DISK": {"SOURCE": "r.tgz", "SIZE": "40"}})
        assert tm.prolog(host, vm).endswith("/5")
        assert vmm.deploy(host, vm) == "one-5"
        mon = im.monitor(host)
        assert (mon.total_cpu, mon.total_mem_kb, mon.used_cpu) == (1600, 64 << 20, 100)
        assert [s.vm_id for s in mon.vms or ()] == [5]
        small = HostRef(2, "s2", {"SIM_CPU": "4", "SIM_MEMORY_MB": "8192"})
        assert SimIM(_fast()).monitor(small).total_mem_kb == 8192 * 1024
        with pytest.raises(DriverError):
            SimVMM(opts).deploy(small, vm)
        vmm.cancel(host, vm)
        assert vmm.poll(host, vm).state == "POWEROFF"
    finally:
        world_mod.reset()


def test_host_down_window_makes_it_unreachable() -> None:
    clock_now = [0.0]
    cfg = DEFAULT.with_overrides({"SIM_SPEED": "1"})
    world_mod.reset(World(cfg, SimClock(1.0, now=lambda: clock_now[0])))
    try:
        im = SimIM({})
        host = HostRef(3, "s3", {"SIM_DOWN_AT": "100", "SIM_DOWN_FOR": "50"})
        im.monitor(host)
        clock_now[0] = 120
        with pytest.raises(HostUnreachable):
            im.monitor(host)
        vm = VMSpec(id=1, name="v", cpu=1, vcpu=1, memory_mb=1)
        with pytest.raises(HostUnreachable):
            SimVMM({}).deploy(host, vm)
        # The calls that only need the host up ask the same.
        with pytest.raises(HostUnreachable):
            SimVMM({}).reboot(host, vm)
        with pytest.raises(HostUnreachable):
            SimTM({}).epilog(host, vm)
        clock_now[0] = 151
        assert im.monitor(host).total_cpu == 1600
        SimVMM({}).reboot(host, vm)
        SimTM({}).epilog(host, vm)
    finally:
        world_mod.reset()


# ------------------------------------------------------------------------------ clock, floor


def test_clock_runs_speed_times_faster() -> None:
    slept: list[float] = []
    t = [10.0]
    clock = SimClock(60, now=lambda: t[0], sleep=slept.append)
    t[0] = 11.0
    assert clock.now() == 60
    clock.sleep(120)
    assert slept == [2.0]
    real = SimClock(100)
    t0 = time.monotonic()
    real.sleep(10)  # 10 sim seconds at 100x: 0.1 s of wall
    assert 0.09 < time.monotonic() - t0 < 0.3
    with pytest.raises(ValueError):
        SimClock(0)


def test_floor_is_link_bound_for_many_misses_and_boot_bound_for_few() -> None:
    cfg = SimConfig()
    many = [Deploy(i, 0.0, i, 400, 20) for i in range(100)]
    assert makespan_floor(cfg, many) == pytest.approx(40000 / 117.5 + 20)
    one = [Deploy(0, 5.0, 0, 400, 20)]
    assert makespan_floor(cfg, one) == pytest.approx(400 / 117.5 + 20)
    # Cache on, ten VMs on one host: one fetch, then copies; without cache ten fetches.
    packed = [Deploy(i, 0.0, 0, 400, 20) for i in range(10)]
    assert makespan_floor(cfg, packed) == pytest.approx(400 / 117.5 + 400 / 150 + 20)
    nocache = SimConfig(cache=False)
    assert makespan_floor(nocache, packed) == pytest.approx(4000 / 117.5 + 20)
    assert makespan_floor(cfg, []) == 0
    # The last fetch is followed by the copies and boots of the VMs on its host: two hosts of
    # two VMs, boots 10/30 and 20/20 -> fetch the 20/20 host last.
    two = [Deploy(0, 0, 0, 2000, 10), Deploy(1, 0, 0, 2000, 30),
           Deploy(2, 0, 1, 2000, 20), Deploy(3, 0, 1, 2000, 20)]
    assert makespan_floor(cfg, two) == pytest.approx(4000 / 117.5 + 2000 / 150 + 20)
