"""The classic OpenNebula experiment "100 VMs on 200 hosts", on simulated hosts.

    python tools/experiment_100x200.py [--speed 10] [--setups a,b,c,z] [--out docs/experiment]

200 sim hosts with local disks (drivers/sim, docs/sim.md), packing policy, then 100
``one.vm.allocate`` calls in a row from one XML-RPC client, as the original's 100 ``onevm
create``; each VM's time to RUNNING is watched from a second client polling
``one.vmpool.info``. Every setup gets its own server (tools/harness.py) with its own ``--etc``
(sim driver blocks with ``-t`` and ``-o`` options, tools/sim_hosts.py ``write_etc``) and
scheduler flags:

  a  the original first run: SCHED_INTERVAL=60, MAX_DISPATCH=30, MAX_HOST=1, one pass per
     interval (mm_sched), no image cache, oned's default 15 driver/transfer threads
  b  the original tuned run: SCHED_INTERVAL=180, MAX_DISPATCH=200, MAX_HOST=1, image cache,
     100 transfer threads
  c  oneserver's defaults (sched.conf: SCHED_INTERVAL=15 as upper bound, wake on events,
     MAX_DISPATCH=30, MAX_HOST=1; the shipped sim driver blocks) with the image cache on
  z  a check, not a setup of the original: oneserver's defaults with zero transfer and boot
     time; all 100 must be RUNNING within 2 s (wall) of the last allocate

Simulated time runs ``--speed`` times faster than the wall; SCHED_INTERVAL and the host
monitoring interval (MONITORING_INTERVAL_HOST=60) are divided by the speed as well, so the
schedule is the original's in simulated time. Writes ``results.csv``, ``100x200.png`` and
``summary.md`` (makespan of each setup beside the floor the model allows) under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import harness  # noqa: E402
import sim_hosts  # noqa: E402

from drivers.sim.model import DEFAULT, Deploy, boot_seconds, makespan_floor  # noqa: E402

IMAGE = "ubuntu-12.04-lxc-rootfs.tar.gz"
VM_TEMPLATE = ('NAME="exp-{i}"\nCPU=1\nMEMORY=1024\n'
               'DISK=[ SOURCE="{image}", TYPE="FILE", SIZE={mb:g} ]\n')
MONITORING_INTERVAL = 60.0  # sim seconds, oned.conf's MONITORING_INTERVAL_HOST
PACKING = 0
RUNNING = 3
ZERO_LIMIT_WALL = 2.0


@dataclass
class Setup:
    key: str
    title: str
    sched_interval: float  # sim seconds
    max_dispatch: int
    max_host: int
    wake: bool
    cache: bool
    vm_threads: int
    tm_threads: int
    policy: int = PACKING
    image_mb: float = DEFAULT.image_mb
    boot_s: float = DEFAULT.boot_s
    # Images streamed over the uplink at once: oned's transfer threads all shared the link
    # (0); oneserver's default streams a few at a time so hosts start booting early.
    fetches: int = DEFAULT.fetches

    def options(self, speed: float) -> dict[str, str]:
        return {"SIM_SPEED": f"{speed:g}", "SIM_CACHE": "YES" if self.cache else "NO",
                "SIM_IMAGE_MB": f"{self.image_mb:g}", "SIM_BOOT_S": f"{self.boot_s:g}",
                "SIM_FETCHES": str(self.fetches)}


SETUPS = {
    "a": Setup("a", "original first run (60 s, 30/pass, no cache, 15 threads)", 60, 30, 1,
               wake=False, cache=False, vm_threads=15, tm_threads=15, fetches=0),
    "b": Setup("b", "original tuned run (180 s, 200/pass, cache, 100 threads)", 180, 200, 1,
               wake=False, cache=True, vm_threads=100, tm_threads=100, fetches=0),
    # etc/oned.conf's sim blocks: VM_MAD -t 100 (a sim deploy sleeps through the boot),
    # TM_MAD -t 100 (bounded per host by the TM).
    "c": Setup("c", "oneserver defaults (wake on events, cache on)", 15, 30, 1,
               wake=True, cache=True, vm_threads=100, tm_threads=100),
    "z": Setup("z", "check: oneserver defaults, zero transfer and boot", 15, 30, 1,
               wake=True, cache=True, vm_threads=100, tm_threads=100, image_mb=0, boot_s=0),
}


@dataclass
class VMResult:
    index: int
    vm_id: int
    alloc_wall: float  # since the first allocate started
    running_wall: float = float("nan")
    host: int = -1


@dataclass
class Run:
    setup: Setup
    speed: float
    vms: list[VMResult] = field(default_factory=list)
    last_alloc_wall: float = 0.0
    floor_sim: float = 0.0
    hosts_used: int = 0

    @property
    def done(self) -> bool:
        return all(v.running_wall == v.running_wall for v in self.vms)

    @property
    def makespan_wall(self) -> float:
        """From the first VM's creation to the last RUNNING."""
        return max(v.running_wall for v in self.vms) - self.vms[0].alloc_wall

    @property
    def makespan_sim(self) -> float:
        return self.makespan_wall * self.speed


# ---------------------------------------------------------------------------------------------
# one setup


def _vm_states(body: str) -> dict[int, tuple[int, int]]:
    """id -> (LCM_STATE, last HID) from a vmpool.info body."""
    out = {}
    for chunk in body.split("<VM>")[1:]:
        vid = int(chunk[4:chunk.index("</ID>")])
        lcm = int(re.search(r"<LCM_STATE>(\d+)</LCM_STATE>", chunk).group(1))  # type: ignore
        hids = re.findall(r"<HID>(\d+)</HID>", chunk)
        out[vid] = (lcm, int(hids[-1]) if hids else -1)
    return out


class Watcher(threading.Thread):
    """The second client: polls the pool and notes when each VM is first seen RUNNING."""

    def __init__(self, server: harness.Server, run: Run, t0: float, period: float) -> None:
        super().__init__(daemon=True)
        self.server, self.run_, self.t0, self.period = server, run, t0, period
        self.stop = threading.Event()
        self.by_id: dict[int, VMResult] = {}
        self.running = 0
        self.lock = threading.Lock()

    def track(self, vm: VMResult) -> None:
        with self.lock:
            self.by_id[vm.vm_id] = vm

    def run(self) -> None:
        call = sim_hosts.rpc(self.server.url, self.server.session)
        while not self.stop.is_set():
            body = call("one.vmpool.info", -2, -1, -1, -1)
            now = time.monotonic() - self.t0
            with self.lock:
                for vid, (lcm, hid) in _vm_states(body).items():
                    vm = self.by_id.get(vid)
                    if vm is not None and lcm == RUNNING and vm.running_wall != vm.running_wall:
                        vm.running_wall, vm.host = now, hid
                self.running = sum(1 for v in self.by_id.values()
                                   if v.running_wall == v.running_wall)
            self.stop.wait(self.period)


def run_setup(setup: Setup, speed: float, hosts: int, vms: int, timeout_sim: float,
              progress: Progress) -> Run:
    tmp = Path(tempfile.mkdtemp(prefix=f"exp_{setup.key}_etc_"))
    etc = sim_hosts.write_etc(tmp, setup.options(speed), setup.vm_threads, setup.tm_threads)
    flags = ["--sched-interval", f"{setup.sched_interval / speed:g}",
             "--max-dispatch", str(setup.max_dispatch), "--max-host", str(setup.max_host),
             "--policy", str(setup.policy),
             "--monitor-interval", f"{MONITORING_INTERVAL / speed:g}",
             *([] if setup.wake else ["--no-wake"])]
    server = harness.start_server(2, etc=etc, extra=flags, prefix=f"exp_{setup.key}_",
                                  wait_workers=False)
    run = Run(setup, speed)
    task = progress.add(setup.key, f"({setup.key}) {setup.title}", vms)
    try:
        call = server.call
        progress.note(task, f"registering {hosts} sim hosts")
        ids = sim_hosts.add(call, hosts)
        sim_hosts.wait_monitored(call, ids, timeout=120)
        # Creation starts now; the watcher polls every sim second (at most 20 times a second).
        t0 = time.monotonic()
        watcher = Watcher(server, run, t0, period=max(0.01, min(0.05, 1.0 / speed)))
        watcher.start()
        for i in range(vms):
            vid = call("one.vm.allocate",
                       VM_TEMPLATE.format(i=i, image=IMAGE, mb=setup.image_mb), False)
            vm = VMResult(i, vid, time.monotonic() - t0)
            run.vms.append(vm)
            watcher.track(vm)
            progress.update(task, watcher.running, (time.monotonic() - t0) * speed)
        run.last_alloc_wall = time.monotonic() - t0
        deadline = t0 + timeout_sim / speed
        while watcher.running < vms and time.monotonic() < deadline:
            progress.update(task, watcher.running, (time.monotonic() - t0) * speed)
            time.sleep(0.1)
        watcher.stop.set()
        watcher.join(5)
        progress.update(task, watcher.running, (time.monotonic() - t0) * speed)
        if not run.done:
            raise RuntimeError(f"setup {setup.key}: {watcher.running}/{vms} RUNNING after "
                               f"{timeout_sim:g} sim s\n{harness.log_tail(server)}")
    finally:
        harness.stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
    cfg = DEFAULT.with_overrides(setup.options(speed))
    run.hosts_used = len({v.host for v in run.vms})
    run.floor_sim = makespan_floor(cfg, [
        Deploy(v.vm_id, v.alloc_wall * speed, v.host, setup.image_mb, boot_seconds(cfg, v.vm_id))
        for v in run.vms])
    return run


# ---------------------------------------------------------------------------------------------
# progress


class Progress:
    """rich progress bars when rich is installed, plain lines otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        try:
            if quiet:
                raise ImportError
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
            from rich.progress import Progress as RichProgress
            self.rich: RichProgress | None = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("RUNNING  sim {task.fields[sim]:>7.0f} s"),
                TextColumn("{task.fields[note]}"))
        except ImportError:
            self.rich = None
        self._last: dict[int, float] = {}

    def __enter__(self) -> Progress:
        if self.rich:
            self.rich.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.rich:
            self.rich.__exit__(None, None, None)

    def add(self, key: str, title: str, total: int) -> int:
        if self.rich:
            return self.rich.add_task(title, total=total, sim=0.0, note="")
        if not self.quiet:
            print(title, flush=True)
        return len(self._last)

    def note(self, task: int, text: str) -> None:
        if self.rich:
            self.rich.update(task, note=text)
        elif not self.quiet:
            print(f"  {text}", flush=True)

    def update(self, task: int, done: int, sim: float) -> None:
        if self.rich:
            self.rich.update(task, completed=done, sim=sim, note="")
        elif not self.quiet and time.monotonic() - self._last.get(task, 0) > 2:
            self._last[task] = time.monotonic()
            print(f"  {done} RUNNING at sim {sim:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------
# outputs


def write_csv(path: Path, runs: list[Run]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setup", "vm_index", "vm_id", "host", "created_sim_s", "running_sim_s",
                    "seconds_to_running_sim", "created_wall_s", "running_wall_s",
                    "seconds_to_running_wall"])
        for run in runs:
            s = run.speed
            for v in run.vms:
                w.writerow([run.setup.key, v.index, v.vm_id, v.host, f"{v.alloc_wall * s:.2f}",
                            f"{v.running_wall * s:.2f}",
                            f"{(v.running_wall - v.alloc_wall) * s:.2f}",
                            f"{v.alloc_wall:.4f}", f"{v.running_wall:.4f}",
                            f"{v.running_wall - v.alloc_wall:.4f}"])


def plot(path: Path, runs: list[Run]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    markers = {"a": "s", "b": "o", "c": "^", "z": "x"}
    for run in runs:
        if run.setup.key == "z":
            continue
        xs = [v.index + 1 for v in run.vms]
        ys = [(v.running_wall - v.alloc_wall) * run.speed for v in run.vms]
        ax.plot(xs, ys, marker=markers.get(run.setup.key, "."), markersize=3.5, linewidth=0.8,
                label=f"({run.setup.key}) {run.setup.title}: last at {run.makespan_sim:.0f} s")
    ax.set_xlabel("VM number (order of onevm create)")
    ax.set_ylabel("seconds to RUNNING (simulated)")
    speed = runs[0].speed if runs else 0
    ax.set_title(f"100 VMs on 200 hosts, packing policy (sim hosts, clock {speed:g}x)")
    ax.set_xlim(0, max((len(r.vms) for r in runs), default=100) + 1)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary(runs: list[Run]) -> str:
    lines = ["| setup | makespan sim (s) | makespan wall (s) | floor sim (s) | makespan / floor "
             "| first RUNNING sim (s) | hosts used | last allocate sim (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        first = min(v.running_wall - r.vms[0].alloc_wall for v in r.vms) * r.speed
        ratio = r.makespan_sim / r.floor_sim if r.floor_sim > 0 else float("nan")
        lines.append(
            f"| ({r.setup.key}) {r.setup.title} | {r.makespan_sim:.0f} | {r.makespan_wall:.2f} "
            f"| {r.floor_sim:.0f} | {ratio:.2f} | {first:.0f} | {r.hosts_used} "
            f"| {r.last_alloc_wall * r.speed:.0f} |")
    for r in runs:
        if r.setup.key == "z":
            after = max(v.running_wall for v in r.vms) - r.last_alloc_wall
            verdict = "met" if after <= ZERO_LIMIT_WALL else "MISSED"
            lines.append(f"\nZero transfer and boot time: all {len(r.vms)} RUNNING "
                         f"{after:.2f} s (wall) after the last allocate returned "
                         f"(limit {ZERO_LIMIT_WALL:g} s: {verdict}).")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--speed", type=float, default=10.0,
                   help="sim seconds per wall second (see docs/sim.md on choosing it)")
    p.add_argument("--setups", default="a,b,c,z")
    p.add_argument("--hosts", type=int, default=200)
    p.add_argument("--vms", type=int, default=100)
    p.add_argument("--timeout", type=float, default=3 * 3600, help="sim seconds per setup")
    p.add_argument("--out", default=str(harness.ROOT / "docs" / "experiment"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    started = time.monotonic()
    with Progress() as progress:
        for key in args.setups.split(","):
            runs.append(run_setup(SETUPS[key.strip()], args.speed, args.hosts, args.vms,
                                  args.timeout, progress))
    write_csv(out / "results.csv", runs)
    plot(out / "100x200.png", runs)
    text = summary(runs)
    total = time.monotonic() - started
    header = (f"# 100 VMs on 200 hosts: summary\n\n{args.hosts} sim hosts, {args.vms} VMs "
              f"(CPU=1, MEMORY=1024, one {DEFAULT.image_mb:g} MB rootfs), packing policy, "
              f"clock {args.speed:g}x (sim s = wall s x {args.speed:g}); whole run "
              f"{total:.0f} s wall. Makespan: first VM created -> last VM RUNNING. Floor: the "
              f"same VMs on the same hosts with perfect overlap (drivers/sim/model.py "
              f"makespan_floor).\n\n")
    (out / "summary.md").write_text(header + text)
    print(header + text)
    print(f"wrote {out / 'results.csv'}, {out / '100x200.png'}, {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
