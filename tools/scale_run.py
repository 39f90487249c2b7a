"""Scale run: 1,000 sim hosts, 10,000 VMs all RUNNING, the API answering throughout.

    python tools/scale_run.py [--hosts 1000] [--vms 10000] [--clients 2] [--timeout 900]

Starts a private server (tools/harness.py, SQLite) whose sim drivers have zero transfer and boot
time on a fast clock, registers the hosts and waits until they are MONITORED, then the storm:
``--clients`` processes allocate the VMs as fast as the server takes them, while a separate
client process calls ``one.vm.info`` of one VM in a loop (a fresh connection per call, as pyone)
until every VM is RUNNING. Prints how long allocation and placement took, and the ``one.vm.info``
latency p50/p95/max during the storm beside the same measured on the idle server before it.
The RUNNING count is read from the server's SQLite file (read-only) so that watching does not
load the API; the end state is confirmed through the API. Bounded by ``--timeout`` wall seconds;
always stops the server and removes its data.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import sim_hosts  # noqa: E402
from bench_api import HEADERS, percentile, run_clients, split  # noqa: E402

VM_TEMPLATE = 'NAME="scale-{i}"\nCPU=0.1\nMEMORY=64\nDISK=[ SOURCE="rootfs.tgz", SIZE=0 ]\n'


def _info_loop(port: int, body: bytes, stop: Any, out: Any) -> None:
    """The separate client: one.vm.info until told to stop; sends its latencies."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    lat = []
    while not stop.is_set():
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/RPC2", body, HEADERS)
        conn.getresponse().read()
        conn.close()
        lat.append(time.perf_counter() - t0)
        time.sleep(0.005)
    out.put(lat)


def _stats(lat: list[float]) -> str:
    lat = sorted(lat)
    return (f"{len(lat)} calls, p50 {percentile(lat, 0.5) * 1000:.1f} ms, "
            f"p95 {percentile(lat, 0.95) * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms")


def running(db_path: Path) -> int:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT count(*) FROM vm WHERE state = 3 AND lcm_state = 3"
                            ).fetchone()[0]
    finally:
        conn.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--vms", type=int, default=10000)
    p.add_argument("--clients", type=int, default=2, help="allocating client processes")
    p.add_argument("--workers", type=int, default=2, help="gunicorn API workers")
    p.add_argument("--timeout", type=float, default=900, help="wall seconds for the storm")
    args = p.parse_args()

    etc = sim_hosts.write_etc(Path(tempfile.mkdtemp(prefix="scale_etc_")),
                              {"SIM_SPEED": "1000", "SIM_IMAGE_MB": "0", "SIM_BOOT_S": "0"},
                              vm_threads=30, tm_threads=30)
    # One pass may place a VM on every host (MAX_HOST=1) and take 1,000 at once, so that the
    # passes, not their count, bound placement.
    flags = ["--max-dispatch", str(args.hosts), "--max-vm", "0"]
    started = time.monotonic()
    server = harness.start_server(args.workers, etc=etc, extra=flags, prefix="scale_run_")
    db_path = Path(server.db_url.removeprefix("sqlite:///"))
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    prober = None
    ok = False
    try:
        t0 = time.monotonic()
        host_bodies = [server.body("one.host.allocate", f"sim-{i}", "sim", "sim", -1)
                       for i in range(args.hosts)]
        _, _, _, errors, first = run_clients(server.port, split(host_bodies, args.clients))
        if errors:
            raise RuntimeError(f"host.allocate failed: {first[:300]!r}")
        ids = list(sim_hosts.host_states(server.call))
        sim_hosts.wait_monitored(server.call, ids, timeout=300)
        print(f"{args.hosts} sim hosts MONITORED in {time.monotonic() - t0:.1f} s", flush=True)

        probe_vm = server.call("one.vm.allocate", VM_TEMPLATE.format(i="probe"), False)
        probe = server.body("one.vm.info", probe_vm)
        prober = ctx.Process(target=_info_loop, args=(server.port, probe, stop, out))
        prober.start()
        time.sleep(3)  # idle baseline
        stop.set()
        idle = out.get(timeout=30)
        prober.join(10)
        print(f"one.vm.info, idle server: {_stats(idle)}", flush=True)

        stop.clear()
        prober = ctx.Process(target=_info_loop, args=(server.port, probe, stop, out))
        prober.start()
        bodies = [server.body("one.vm.allocate", VM_TEMPLATE.format(i=i), False)
                  for i in range(args.vms - 1)]
        t0 = time.monotonic()
        _, alloc_wall, _, errors, first = run_clients(server.port, split(bodies, args.clients))
        if errors:
            raise RuntimeError(f"{errors} allocations failed: {first[:300]!r}")
        print(f"{args.vms} VMs allocated in {alloc_wall:.1f} s "
              f"({(args.vms - 1) / alloc_wall:.0f}/s from {args.clients} clients)", flush=True)
        deadline = t0 + args.timeout
        n = last = 0
        while time.monotonic() < deadline:
            n = running(db_path)
            if n >= args.vms:
                break
            if time.monotonic() - last > 5:
                last = time.monotonic()
                print(f"  {n} RUNNING at {last - t0:.0f} s", flush=True)
            time.sleep(0.2)
        all_running = time.monotonic() - t0
        stop.set()
        storm = out.get(timeout=60)
        prober.join(10)
        body = server.call("one.vmpool.info", -2, -1, -1, 3)
        via_api = body.count("<LCM_STATE>3</LCM_STATE>")
        print(f"all {n}/{args.vms} RUNNING {all_running:.1f} s after the first allocate "
              f"(one.vmpool.info confirms {via_api} RUNNING)", flush=True)
        print(f"one.vm.info during the storm: {_stats(storm)}", flush=True)
        print(f"total {time.monotonic() - started:.0f} s wall", flush=True)
        ok = n >= args.vms and via_api >= args.vms
        return 0 if ok else 1
    finally:
        stop.set()
        if prober is not None and prober.is_alive():
            prober.terminate()
            prober.join(5)
        harness.stop_server(server, show_log=not ok)
        shutil.rmtree(etc, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
