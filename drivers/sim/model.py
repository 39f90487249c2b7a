"""Every number of the simulated host, and the pure arithmetic built on them.

A sim host is a model, not a machine: the drivers in this package sleep for as long as the
modelled action would take (scaled by the clock speed) and keep the host's state in memory. This
module holds the model's values with the reasons for their defaults, how they are read from
options and templates, and the side-effect-free arithmetic (fair sharing of the uplink, boot
time sampling, failure draws, the makespan floor) so that tests and the experiment compute
exactly what the drivers do. ``docs/sim.md`` explains the same in prose.

Where values come from, later layers winning: the defaults below, then the oned.conf driver
block's ``-o KEY=VALUE`` options, then the host's template (``onehost update``), and, for the
per-VM values (image size, boot time), the VM template.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

# ---------------------------------------------------------------------------------------------
# the values


@dataclass(frozen=True)
class SimConfig:
    """The model of one simulated host, its frontend link and the VMs it runs.

    Each field documents its default; the template/option key is in ``KEYS``."""

    # Simulated seconds per wall second. 60 runs a 60-minute scenario in a minute. The drivers
    # sleep sim_seconds / speed. A property of the whole core process (one clock), read from the
    # options of whichever sim driver starts first; give every sim block the same value.
    speed: float = 60.0

    # Size of a VM's root filesystem when the VM template gives no ``DISK=[SIZE=…]``: the
    # China Mobile OneLXC images were ~400 MB rootfs tarballs (a minimal distribution userland).
    image_mb: float = 400.0

    # The frontend's uplink, shared by every transfer from the image datastore to the hosts:
    # one 1 Gbit/s NIC, as the original frontend had.
    uplink_mbit: float = 1000.0
    # Payload share of the wire rate: Ethernet+IP+TCP framing leaves ~94 % (1448 of 1538 bytes
    # per full frame); scp/ssh adds little on top. So 1 Gbit/s moves ~117.5 MB/s of image.
    net_efficiency: float = 0.94

    # Sequential write speed of a host's local disk: a 7,200 rpm SATA disk or a RAID-1 pair of
    # them, the usual local storage of a 2012 rack server, writes ~150 MB/s. A transfer to a
    # host never goes faster than its disk can write.
    disk_mb_s: float = 150.0

    # Transfers (network fetches or cache copies) one host takes at once; more queue on the host.
    # Two keeps a single spindle streaming without thrashing its head between many writers.
    host_transfers: int = 2
    # Images the frontend streams at once over its uplink (0: no limit, every fetch shares it).
    # A few at a time finish one after another, so early hosts boot while later ones still
    # fetch; sharing the link among all makes every fetch end together, and every boot wait.
    fetches: int = 4

    # Host-side image cache: the first deploy of an image on a host fetches it over the uplink
    # and keeps it; later deploys of the same image there copy it locally (``cp`` of the cached
    # file on the same disk: disk-speed bound, no network).
    cache: bool = True
    # Images every host has cached before the run: "" none, "*" all, else comma-separated keys
    # (a disk's SOURCE, or ``IMAGE``/``IMAGE_ID``).
    cached: str = ""

    # Boot: from ``virsh create`` of an LXC domain to the container's init having started its
    # services. A container skips firmware and kernel, so ~20 s is mostly the distribution's
    # init scripts. The spread models that some boots are slower (cold page cache, fsck of a
    # loop device): a log-normal with sigma 0.25 has ~90 % of boots within 13-30 s.
    boot_s: float = 20.0
    boot_dist: str = "lognormal"  # fixed | uniform | normal | lognormal
    boot_spread: float = 0.25  # lognormal sigma; normal: sd/mean; uniform: half-width/mean
    seed: int = 1

    # A graceful stop: the container's init runs its stop scripts.
    shutdown_s: float = 5.0

    # Capacity of a host whose template says nothing: a typical two-socket 2012-era rack server
    # with 16 cores and 64 GiB, with a 1 TB local disk for the VM directories.
    cpu_cores: int = 16
    memory_mb: int = 64 * 1024
    disk_mb: int = 1024 * 1024

    # Failure injection. A deploy fails with this probability (a seeded draw per VM and attempt,
    # so a run is reproducible); the VM's image stays cached, nothing of the domain remains.
    deploy_fail_rate: float = 0.0
    # The host is unreachable from sim time ``down_at`` (seconds of the core's sim clock) for
    # ``down_for`` seconds: monitoring raises HostUnreachable, actions on it fail, its VMs keep
    # running (a network partition, not a power cut) and are reported again when it is back.
    down_at: float = -1.0
    down_for: float = 0.0

    @property
    def uplink_mb_s(self) -> float:
        """Payload MB/s of the frontend uplink."""
        return self.uplink_mbit / 8 * self.net_efficiency

    @property
    def fetch_mb_s(self) -> float:
        """Fastest one transfer can go: the uplink alone, capped by the host's disk."""
        return min(self.uplink_mb_s, self.disk_mb_s)

    def fetch_alone_s(self, mb: float) -> float:
        """Sim seconds to fetch ``mb`` with nothing else on the uplink."""
        return mb / self.fetch_mb_s if mb > 0 else 0.0

    def local_copy_s(self, mb: float) -> float:
        """Sim seconds of a cache hit: a copy on the host's own disk, write-bound."""
        return mb / self.disk_mb_s if mb > 0 else 0.0

    def is_down(self, sim_now: float) -> bool:
        return 0 <= self.down_at <= sim_now < self.down_at + self.down_for

    def with_overrides(self, *layers: Mapping[str, Any] | None) -> SimConfig:
        """This config with ``SIM_*`` keys of each layer applied in order (later wins)."""
        changes: dict[str, Any] = {}
        for layer in layers:
            if not layer:
                continue
            for key, name in KEYS.items():
                raw = layer.get(key)
                if raw is None or isinstance(raw, (list, dict)) or str(raw).strip() == "":
                    continue
                changes[name] = _convert(name, str(raw).strip())
        return replace(self, **changes) if changes else self


# Template/option key -> field. ``onehost update`` attributes and ``-o`` options use these.
KEYS: dict[str, str] = {
    "SIM_SPEED": "speed", "SIM_IMAGE_MB": "image_mb", "SIM_UPLINK_MBIT": "uplink_mbit",
    "SIM_NET_EFFICIENCY": "net_efficiency", "SIM_DISK_MBS": "disk_mb_s",
    "SIM_HOST_TRANSFERS": "host_transfers", "SIM_FETCHES": "fetches", "SIM_CACHE": "cache",
    "SIM_CACHED": "cached",
    "SIM_BOOT_S": "boot_s", "SIM_BOOT_DIST": "boot_dist", "SIM_BOOT_SPREAD": "boot_spread",
    "SIM_SEED": "seed", "SIM_SHUTDOWN_S": "shutdown_s", "SIM_CPU": "cpu_cores",
    "SIM_MEMORY_MB": "memory_mb", "SIM_DISK_MB": "disk_mb",
    "SIM_DEPLOY_FAIL_RATE": "deploy_fail_rate", "SIM_DOWN_AT": "down_at",
    "SIM_DOWN_FOR": "down_for",
}
_TYPES = {f.name: f.type for f in fields(SimConfig)}
BOOT_DISTS = ("fixed", "uniform", "normal", "lognormal")


def _convert(name: str, raw: str) -> Any:
    kind = _TYPES[name]
    if kind == "bool":
        return raw.upper() in ("YES", "TRUE", "1", "ON")
    if kind == "int":
        return int(float(raw))
    if kind == "float":
        return float(raw)
    if name == "boot_dist" and raw.lower() not in BOOT_DISTS:
        raise ValueError(f"SIM_BOOT_DIST must be one of {', '.join(BOOT_DISTS)}, not {raw!r}")
    return raw.lower() if name == "boot_dist" else raw


DEFAULT = SimConfig()


# ---------------------------------------------------------------------------------------------
# per-VM values


def disk_images(template: Mapping[str, Any], cfg: SimConfig) -> list[tuple[str, float]]:
    """(cache key, MB) of each disk a deploy must put on the host. A VM without DISK still
    gets a root filesystem of ``SIM_IMAGE_MB`` (an LXC container always has one)."""
    raw = template.get("DISK") or []
    disks = [raw] if isinstance(raw, Mapping) else list(raw)
    vm_mb = cfg.with_overrides(template).image_mb
    out = []
    for d in disks:
        key = str(d.get("SOURCE") or d.get("IMAGE") or d.get("IMAGE_ID") or d.get("PATH") or "")
        try:
            mb = float(d.get("SIZE") or vm_mb)
        except ValueError:
            mb = vm_mb
        out.append((key or f"rootfs-{mb:g}MB", mb))
    return out or [(f"rootfs-{vm_mb:g}MB", vm_mb)]


def _rng(cfg: SimConfig, *parts: object) -> random.Random:
    # Seeded per VM (and attempt), not per call order, so a VM gets the same draw in every
    # setup and the experiment can recompute it.
    return random.Random(":".join(str(p) for p in (cfg.seed, *parts)))


def boot_seconds(cfg: SimConfig, vm_id: int) -> float:
    """Sim seconds VM ``vm_id`` takes to boot, drawn from the configured distribution (the
    distribution's mean is ``boot_s``)."""
    mean, spread = cfg.boot_s, max(0.0, cfg.boot_spread)
    if mean <= 0:
        return 0.0
    r = _rng(cfg, "boot", vm_id)
    if cfg.boot_dist == "fixed" or spread == 0:
        return mean
    if cfg.boot_dist == "uniform":
        return r.uniform(mean * (1 - min(spread, 1)), mean * (1 + min(spread, 1)))
    if cfg.boot_dist == "normal":
        return max(0.0, r.gauss(mean, mean * spread))
    # lognormal with the given mean: mu = ln(mean) - sigma^2 / 2
    return r.lognormvariate(math.log(mean) - spread * spread / 2, spread)


def deploy_fails(cfg: SimConfig, vm_id: int, attempt: int) -> bool:
    """Whether attempt number ``attempt`` (0, 1, …) to deploy ``vm_id`` fails."""
    if cfg.deploy_fail_rate <= 0:
        return False
    return _rng(cfg, "fail", vm_id, attempt).random() < cfg.deploy_fail_rate


# ---------------------------------------------------------------------------------------------
# the shared uplink


def fair_rates(capacity: float, caps: Sequence[float]) -> list[float]:
    """Max-min fair shares of ``capacity`` among flows each limited to its cap (TCP flows on one
    bottleneck link converge to this): flows capped below the equal share keep their cap and
    the rest split what is left."""
    rates = [0.0] * len(caps)
    left, todo = capacity, sorted(range(len(caps)), key=lambda i: caps[i])
    while todo:
        share = left / len(todo)
        i = todo[0]
        if caps[i] <= share:
            rates[i] = caps[i]
            left -= caps[i]
            todo.pop(0)
            continue
        for j in todo:
            rates[j] = share
        break
    return rates


@dataclass(frozen=True)
class Flow:
    start: float  # sim seconds
    mb: float
    cap: float  # MB/s the receiving end can take


def fluid_finish_times(capacity: float, flows: Sequence[Flow]) -> list[float]:
    """When each flow ends if all share one link fairly (``fair_rates`` re-computed at every
    arrival and departure). The same arithmetic the live link does, as an event simulation."""
    order = sorted(range(len(flows)), key=lambda i: flows[i].start)
    done = [math.inf] * len(flows)
    left = {i: flows[i].mb for i in range(len(flows))}
    active: list[int] = []
    now, k = 0.0, 0
    while k < len(order) or active:
        rates = dict(zip(active, fair_rates(capacity, [flows[i].cap for i in active]),
                         strict=True))
        next_arrival = flows[order[k]].start if k < len(order) else math.inf
        next_end, who = math.inf, -1
        for i in active:
            t = now + left[i] / rates[i] if rates[i] > 0 else math.inf
            if t < next_end:
                next_end, who = t, i
        t = min(next_arrival, next_end)
        for i in active:
            left[i] -= rates[i] * (t - now)
        now = t
        if next_end <= next_arrival:
            active.remove(who)
            done[who] = now
        else:
            i = order[k]
            k += 1
            if flows[i].mb <= 0:
                done[i] = now
            else:
                active.append(i)
    return done


# ---------------------------------------------------------------------------------------------
# the floor


@dataclass(frozen=True)
class Deploy:
    """One VM of a run, as the floor needs it."""

    vm_id: int
    arrival: float  # sim seconds when it was created
    host: int  # where it ran
    mb: float  # image size
    boot: float  # its boot time (``boot_seconds``)


def makespan_floor(cfg: SimConfig, deploys: Iterable[Deploy]) -> float:
    """Sim seconds from the first arrival until the last VM could be RUNNING with perfect
    overlap, for the placement the run chose: no scheduler or executor delay, every transfer
    starting at its VM's arrival, the uplink never idle while bytes wait.

    The larger of two lower bounds:

    * each VM alone: arrival + its fetch (or, on a cache hit, its host's fetch then a local
      copy) + its boot;
    * the uplink: it carries every cache miss's bytes, work-conserving from the arrivals, and
      finishes at L. Some fetch ends last, at L or later, and the VMs that need it (the miss
      itself and, with the cache on, the hits on that host) still copy and boot after it. A
      clairvoyant scheduler fetches last for the group that finishes soonest after it:
      L + min over groups of the group's longest copy + boot.

    With the cache on, the first VM on each host misses and the others hit."""
    ds = sorted(deploys, key=lambda d: (d.arrival, d.vm_id))
    if not ds:
        return 0.0
    t0 = ds[0].arrival
    first_on_host: dict[int, Deploy] = {}
    misses: list[Deploy] = []
    after_fetch: dict[object, float] = {}  # group -> longest copy + boot once its fetch is in
    bound = 0.0
    for d in ds:
        first = first_on_host.get(d.host)
        if cfg.cache and first is not None:
            ready = max(d.arrival, first.arrival + cfg.fetch_alone_s(first.mb))
            end = ready + cfg.local_copy_s(d.mb) + d.boot
            group: object = ("host", d.host)
            tail = cfg.local_copy_s(d.mb) + d.boot
        else:
            first_on_host.setdefault(d.host, d)
            misses.append(d)
            end = d.arrival + cfg.fetch_alone_s(d.mb) + d.boot
            group = ("host", d.host) if cfg.cache else ("vm", d.vm_id)
            tail = d.boot
        after_fetch[group] = max(after_fetch.get(group, 0.0), tail)
        bound = max(bound, end)
    # The uplink: bytes arrive with their VMs and it moves uplink_mb_s while any wait.
    link_done, heap = t0, [(d.arrival, d.mb) for d in misses]
    heapq.heapify(heap)
    while heap:
        arrival, mb = heapq.heappop(heap)
        link_done = max(link_done, arrival) + mb / cfg.uplink_mb_s
    if misses:
        bound = max(bound, link_done + min(after_fetch.values()))
    return bound - t0
