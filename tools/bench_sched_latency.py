"""How long a new VM waits for the scheduler: N VMs arriving at once on M dummy hosts, time from
the ``one.vm.allocate`` call to the start of its deploy operation (read from the operation
rows), and to RUNNING. With waking on events (the default) the interval is only an upper
bound; ``--no-wake`` shows mm_sched's behaviour (one pass per interval) for comparison.

    python tools/bench_sched_latency.py [--vms 100] [--hosts 200] [--no-wake]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import time
import xmlrpc.client
from concurrent.futures import ThreadPoolExecutor

from harness import start_server, stop_server


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vms", type=int, default=100)
    ap.add_argument("--hosts", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20, help="threads sending the allocates")
    ap.add_argument("--no-wake", action="store_true", help="mm_sched behaviour (interval only)")
    ap.add_argument("--sched-interval", type=float, default=15)
    args = ap.parse_args()

    extra = ["--sched-interval", str(args.sched_interval), "--max-dispatch", "1000",
             "--max-host", "1"] + (["--no-wake"] if args.no_wake else [])
    server = start_server(4, extra=extra, prefix="bench_sched_")
    try:
        proxy = xmlrpc.client.ServerProxy(server.url)
        for i in range(args.hosts):
            server.call("one.host.allocate", f"lat-{i}", "dummy", "dummy", -1)
        deadline = time.time() + 120
        while time.time() < deadline:
            pool = server.call("one.hostpool.info")
            if pool.count("<STATE>2</STATE>") >= args.hosts:
                break
            time.sleep(0.2)
        print(f"{args.hosts} dummy hosts MONITORED; sending {args.vms} allocates from "
              f"{args.clients} threads ({'no wake' if args.no_wake else 'wake on events'})")

        def allocate(i: int) -> tuple[int, float]:
            sent = time.time()
            ok, vid, *_ = xmlrpc.client.ServerProxy(server.url).one.vm.allocate(
                server.session, f'NAME="lat-{i}"\nCPU=0.1\nMEMORY=64\n')
            assert ok, vid
            return vid, sent

        start = time.time()
        with ThreadPoolExecutor(args.clients) as pool_ex:
            sent = dict(pool_ex.map(allocate, range(args.vms)))
        last_allocate = time.time()
        running: dict[int, float] = {}
        deadline = time.time() + 600
        while len(running) < args.vms and time.time() < deadline:
            now = time.time()
            for vid in sent:
                if vid not in running:
                    ok, body, *_ = proxy.one.vm.info(server.session, vid)
                    if "<STATE>3</STATE><LCM_STATE>3</LCM_STATE>" in body:
                        running[vid] = now
            time.sleep(0.02)
        db = sqlite3.connect(server.db_url.removeprefix("sqlite:///"))
        started = dict(db.execute("SELECT vm_id, MIN(started) FROM operation "
                                  "WHERE action = 'deploy' GROUP BY vm_id"))
        to_deploy = [started[v] - t for v, t in sent.items() if v in started]
        to_running = [running[v] - t for v, t in sent.items() if v in running]
        print(f"allocate → deploy operation started: p50 {statistics.median(to_deploy):.3f} s, "
              f"p95 {percentile(to_deploy, 0.95):.3f} s, max {max(to_deploy):.3f} s "
              f"({len(to_deploy)} VMs)")
        print(f"allocate → RUNNING (polled):         p50 {statistics.median(to_running):.3f} s, "
              f"p95 {percentile(to_running, 0.95):.3f} s, max {max(to_running):.3f} s")
        print(f"all {len(running)} RUNNING {max(running.values()) - last_allocate:.2f} s after "
              f"the last allocate returned; allocates took {last_allocate - start:.2f} s")
    finally:
        stop_server(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
