"""The live state of the simulated hosts inside the core process: one clock, one shared
uplink, each host's image cache and transfer slots, and which VMs run where. The IM, VMM and TM
drivers of this package are separate instances; they meet here (``world()``), so a transfer
the TM does slows the others down and a VM the VMM started is what the IM reports."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.sim.model import DEFAULT, SimConfig, fair_rates

# A flow is finished once less than this many MB are left: float rounding of rate x time.
_EPSILON_MB = 1e-6


class SimClock:
    """Sim seconds since the clock started, running ``speed`` times faster than the wall."""

    def __init__(self, speed: float, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if speed <= 0:
            raise ValueError("SIM_SPEED must be positive")
        self.speed = speed
        self._now, self._sleep = now, sleep
        self._epoch = now()

    def now(self) -> float:
        return (self._now() - self._epoch) * self.speed

    def wall(self, sim_seconds: float) -> float:
        """Wall seconds that ``sim_seconds`` of simulated time take."""
        return max(0.0, sim_seconds) / self.speed

    def sleep(self, sim_seconds: float) -> None:
        if sim_seconds > 0:
            self._sleep(self.wall(sim_seconds))


@dataclass(eq=False)
class _LiveFlow:
    left: float
    cap: float
    rate: float = 0.0


class SharedLink:
    """The frontend uplink: concurrent transfers share it max-min fairly, each also limited by
    the disk it writes to. ``transfer`` blocks for as long as the modelled transfer takes; every
    arrival or departure re-shares the link and wakes the others to re-plan."""

    def __init__(self, capacity_mb_s: float, clock: SimClock) -> None:
        self.capacity = capacity_mb_s
        self.clock = clock
        self._flows: list[_LiveFlow] = []
        self._cond = threading.Condition()
        self._t = clock.now()
        self.peak = 0  # most flows at once, for reports

    @property
    def active(self) -> int:
        with self._cond:
            return len(self._flows)

    def _advance(self) -> None:
        t = self.clock.now()
        dt = t - self._t
        for f in self._flows:
            f.left -= f.rate * dt
        self._t = t

    def _reshare(self) -> None:
        for f, r in zip(self._flows, fair_rates(self.capacity, [f.cap for f in self._flows]),
                        strict=True):
            f.rate = r
        self.peak = max(self.peak, len(self._flows))
        self._cond.notify_all()

    def transfer(self, mb: float, cap_mb_s: float) -> float:
        """Move ``mb`` to a receiver taking at most ``cap_mb_s``; returns the sim seconds."""
        if mb <= 0:
            return 0.0
        with self._cond:
            start = self.clock.now()
            self._advance()
            flow = _LiveFlow(left=mb, cap=cap_mb_s)
            self._flows.append(flow)
            self._reshare()
            try:
                while flow.left > _EPSILON_MB:
                    eta = flow.left / flow.rate if flow.rate > 0 else math.inf
                    self._cond.wait(timeout=None if eta == math.inf else self.clock.wall(eta))
                    self._advance()
            finally:
                self._flows.remove(flow)
                self._reshare()
            return self.clock.now() - start


@dataclass
class SimHost:
    """What one host holds: cached images, running VMs (id -> (cpu, memory MB)), slots."""

    slots: threading.BoundedSemaphore
    cached: set[str] = field(default_factory=set)
    fetching: dict[str, threading.Event] = field(default_factory=dict)
    running: dict[int, tuple[float, int]] = field(default_factory=dict)


@dataclass
class Stats:
    fetches: int = 0
    cache_hits: int = 0
    fetched_mb: float = 0.0
    deploys: int = 0
    failed_deploys: int = 0


class World:
    """All sim hosts of this process. Thread-safe: driver calls run on pool threads."""

    def __init__(self, cfg: SimConfig, clock: SimClock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SimClock(cfg.speed)
        self.link = SharedLink(cfg.uplink_mb_s, self.clock)
        self.fetch_slots = threading.BoundedSemaphore(cfg.fetches) if cfg.fetches > 0 else None
        self.stats = Stats()
        self._hosts: dict[int, SimHost] = {}
        self._attempts: dict[int, int] = {}
        self._lock = threading.Lock()

    def host(self, host_id: int, cfg: SimConfig) -> SimHost:
        with self._lock:
            h = self._hosts.get(host_id)
            if h is None:
                h = self._hosts[host_id] = SimHost(
                    threading.BoundedSemaphore(max(1, cfg.host_transfers)))
                if cfg.cached and cfg.cached != "*":
                    h.cached.update(k.strip() for k in cfg.cached.split(",") if k.strip())
            return h

    # -------------------------------------------------------------- disks (TM)

    def put_image(self, host_id: int, cfg: SimConfig, key: str, mb: float) -> bool:
        """Place one image on the host: a local copy if cached there, else a fetch over the
        shared uplink (then cached, if the cache is on). Returns True on a cache hit. Two
        deploys missing the same image on one host fetch it once: the second waits, then hits."""
        h = self.host(host_id, cfg)
        while True:
            with self._lock:
                if cfg.cache and (key in h.cached or cfg.cached == "*"):
                    wait, hit = None, True
                elif cfg.cache and key in h.fetching:
                    wait, hit = h.fetching[key], False
                else:
                    wait, hit = None, False
                    if cfg.cache:
                        h.fetching[key] = threading.Event()
            if wait is None:
                break
            wait.wait()
        if hit:
            with h.slots:
                self.clock.sleep(cfg.local_copy_s(mb))
            with self._lock:
                self.stats.cache_hits += 1
            return True
        ok = False
        try:
            with h.slots:
                if self.fetch_slots is None:
                    self.link.transfer(mb, cfg.disk_mb_s)
                else:
                    with self.fetch_slots:
                        self.link.transfer(mb, cfg.disk_mb_s)
            ok = True
        finally:
            with self._lock:
                self.stats.fetches += 1
                self.stats.fetched_mb += mb
                if cfg.cache:
                    if ok:
                        h.cached.add(key)
                    h.fetching.pop(key).set()
        return False

    # -------------------------------------------------------------- VMs (VMM, IM)

    def next_attempt(self, vm_id: int) -> int:
        with self._lock:
            n = self._attempts.get(vm_id, 0)
            self._attempts[vm_id] = n + 1
            return n

    def start(self, host_id: int, cfg: SimConfig, vm_id: int, cpu: float, memory_mb: int
              ) -> None:
        h = self.host(host_id, cfg)
        with self._lock:
            h.running[vm_id] = (cpu, memory_mb)
            self.stats.deploys += 1

    def stop(self, host_id: int, cfg: SimConfig, vm_id: int) -> bool:
        h = self.host(host_id, cfg)
        with self._lock:
            return h.running.pop(vm_id, None) is not None

    def runs(self, host_id: int, cfg: SimConfig, vm_id: int) -> bool:
        h = self.host(host_id, cfg)
        with self._lock:
            return vm_id in h.running

    def running(self, host_id: int, cfg: SimConfig) -> dict[int, tuple[float, int]]:
        h = self.host(host_id, cfg)
        with self._lock:
            return dict(h.running)


_world: World | None = None
_world_lock = threading.Lock()


def current(options: Mapping[str, Any] | None = None) -> World:
    """This process's world, created by the first sim driver with its options (so its
    ``SIM_SPEED`` and uplink are the ones in force)."""
    global _world
    with _world_lock:
        if _world is None:
            _world = World(DEFAULT.with_overrides(options))
        return _world


def reset(new: World | None = None) -> None:
    """Forget the world (tests)."""
    global _world
    with _world_lock:
        _world = new
