"""Benchmark the XML-RPC API of a real ``oneserver serve`` against oned 7.4.0's numbers.

Usage: python tools/bench_api.py [--workers 4] [--calls 2000] [--quick] [--db URL]
                                 [--json FILE]

Starts its own server (gunicorn API workers + core) on a free 127.0.0.1 port with its data in
a temporary directory, SQLite by default; ``--db postgresql://user:pw@127.0.0.1/db`` creates a
fresh database on that PostgreSQL server instead and drops it at the end. It then measures,
with 1 and with 4 client processes:

* ``one.vm.allocate`` of held VMs (``NAME=..  CPU=0.1  MEMORY=64``, hold=True),
* ``one.vm.info`` of one VM,
* ``one.vmpool.info(-2, -1, -1, -1)`` with 1,000 VMs in the pool,
* ``one.hostpool.info()`` with 1,000 dummy hosts (the core monitors them as they come).

Each client is a loop of calls, each over a fresh TCP connection as pyone makes them, with the
request body built beforehand (``http.client``, no XML-RPC marshalling in the loop). Reported:
calls/s over the whole run, latency p50/p95, and server CPU per call, the user+system CPU time
of the gunicorn master, its workers and the core process (from /proc, see procstat.py) used
during the run divided by the number of calls. The server's idle CPU rate (the core's 1 s
rounds, monitoring) is measured just before each run and shown beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, Server, free_port, log_tail, start_server, stop_server  # noqa: E402,F401
from procstat import read_stat, self_cpu, tree_stats  # noqa: E402

HEADERS = {"Content-Type": "text/xml", "User-Agent": "bench_api"}
OK = b"<boolean>1</boolean>"
VM_TEMPLATE = "NAME={name}\nCPU=0.1\nMEMORY=64"

# Real oned 7.4.0 on this kind of machine (sequential client).
BAR: dict[str, dict[str, float]] = {
    "one.vm.allocate": {"calls_s": 289},
    "one.vm.info": {"cpu_ms": 0.53, "calls_s": 1300},
    "one.vmpool.info": {"cpu_ms": 2.7},
}
ORDER = ["one.vm.allocate", "one.vm.info", "one.vmpool.info", "one.hostpool.info"]


# ---------------------------------------------------------------------------------------------
# the server


# ---------------------------------------------------------------------------------------------
# the clients


def _client(port: int, bodies: list[bytes], barrier: Any, results: Any, idx: int) -> None:
    # Die quietly on Ctrl-C or terminate(); the parent cleans up.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    lat: list[float] = []
    errors, first_error = 0, b""
    barrier.wait()
    cpu0 = self_cpu()
    start = time.monotonic()
    for body in bodies:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        conn.request("POST", "/RPC2", body, HEADERS)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        lat.append(time.perf_counter() - t0)
        if resp.status != 200 or OK not in data[:200]:
            errors += 1
            first_error = first_error or data[:600]
    end = time.monotonic()
    results.put((idx, lat, self_cpu() - cpu0, start, end, errors, first_error))


def run_clients(port: int, per_client: list[list[bytes]]) -> tuple[
        list[float], float, float, int, bytes]:
    """Run one client process per body list; returns latencies (s), wall time (s), client
    CPU (s), errors and the first failure seen."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(len(per_client))
    results = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(port, bodies, barrier, results, i), daemon=True)
             for i, bodies in enumerate(per_client)]
    try:
        for p in procs:
            p.start()
        got = []
        while len(got) < len(procs):
            try:
                got.append(results.get(timeout=1.0))
            except Exception:  # noqa: BLE001 - queue.Empty: see whether a client died
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"client exited with {dead[0].exitcode}") from None
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
    lat = [x for g in got for x in g[1]]
    wall = max(g[4] for g in got) - min(g[3] for g in got)
    errors = sum(g[5] for g in got)
    first_error = next((g[6] for g in got if g[6]), b"")
    return lat, wall, sum(g[2] for g in got), errors, first_error


def split(bodies: list[bytes], clients: int) -> list[list[bytes]]:
    return [bodies[i::clients] for i in range(clients)]


# ---------------------------------------------------------------------------------------------
# measurements


@dataclass
class Result:
    method: str
    label: str
    clients: int
    calls: int
    wall_s: float
    calls_per_s: float
    p50_ms: float
    p95_ms: float
    server_cpu_ms_per_call: float
    cpu_by_role_ms_per_call: dict[str, float]
    idle_server_cpu_ms_per_s: float
    client_cpu_ms_per_call: float
    errors: int
    bar: dict[str, float] = field(default_factory=dict)


def idle_rate(server: Server, seconds: float) -> float:
    """Server CPU ms per second of wall time with no client."""
    c0, t0 = server.cpu(), time.monotonic()
    time.sleep(seconds)
    return (server.cpu() - c0) * 1000 / (time.monotonic() - t0)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def measure(server: Server, method: str, label: str, bodies: list[bytes], clients: int,
            idle_s: float) -> Result:
    idle = idle_rate(server, idle_s)
    roles0 = server.roles()
    cpu0 = server.cpu()
    lat, wall, client_cpu, errors, first_error = run_clients(server.port, split(bodies, clients))
    cpu = server.cpu() - cpu0
    roles1 = server.roles()
    if errors:
        print(f"  {errors} failed calls of {method}; first: {first_error[:400]!r}",
              file=sys.stderr)
    n = len(lat)
    lat.sort()
    result = Result(
        method=method, label=label, clients=clients, calls=n, wall_s=round(wall, 3),
        calls_per_s=n / wall if wall else float("nan"),
        p50_ms=percentile(lat, 0.50) * 1000, p95_ms=percentile(lat, 0.95) * 1000,
        server_cpu_ms_per_call=cpu * 1000 / n,
        cpu_by_role_ms_per_call={k: (roles1[k] - roles0[k]) * 1000 / n for k in roles0},
        idle_server_cpu_ms_per_s=idle, client_cpu_ms_per_call=client_cpu * 1000 / n,
        errors=errors, bar=BAR.get(method, {}))
    print(f"  {label:<34} {clients} client(s): {n} calls in {wall:6.1f} s, "
          f"{result.calls_per_s:7.1f}/s, p50 {result.p50_ms:6.2f} ms, "
          f"server CPU {result.server_cpu_ms_per_call:6.2f} ms/call", flush=True)
    return result


def allocate_bodies(server: Server, prefix: str, n: int) -> list[bytes]:
    return [server.body("one.vm.allocate", VM_TEMPLATE.format(name=f"{prefix}-{i}"), True)
            for i in range(n)]


def setup_calls(server: Server, bodies: list[bytes], what: str, clients: int) -> None:
    t0 = time.monotonic()
    _, _, _, errors, first_error = run_clients(server.port, split(bodies, clients))
    if errors:
        raise RuntimeError(f"setup of {what}: {errors} failed; first: {first_error[:400]!r}")
    print(f"  created {len(bodies)} {what} in {time.monotonic() - t0:.1f} s", flush=True)


def wait_monitored(server: Server, hosts: int, timeout: float) -> None:
    """Until every host is MONITORED (state 2) and the core has gone quiet again."""
    t0 = time.monotonic()
    monitored = 0
    while time.monotonic() - t0 < timeout:
        body = server.call("one.hostpool.info")
        monitored = body.count("<STATE>2</STATE>")
        if monitored >= hosts:
            break
        time.sleep(0.5)
    print(f"  {monitored}/{hosts} hosts MONITORED after {time.monotonic() - t0:.1f} s",
          flush=True)
    # Let the monitoring writes drain (the core's rate falls back to its idle rounds).
    for _ in range(20):
        if idle_rate(server, 1.0) < 100:
            break


def run_all(server: Server, calls: int, pool: int, clients_list: list[int],
            idle_s: float) -> list[Result]:
    results: list[Result] = []
    setup_clients = min(4, max(clients_list))  # sequential setup when only 1 client is asked
    print(f"setup: {pool} held VMs", flush=True)
    vm_id = server.call("one.vm.allocate", VM_TEMPLATE.format(name="bench-info"), True)
    setup_calls(server, allocate_bodies(server, "bench-pool", pool - 1), "held VMs", setup_clients)

    info = server.body("one.vm.info", vm_id)
    pool_info = server.body("one.vmpool.info", -2, -1, -1, -1)
    for clients in clients_list:
        results.append(measure(server, "one.vm.info", "one.vm.info", [info] * calls, clients,
                               idle_s))
    for clients in clients_list:
        results.append(measure(server, "one.vmpool.info", f"one.vmpool.info ({pool} VMs)",
                               [pool_info] * calls, clients, idle_s))
    for clients in clients_list:
        bodies = allocate_bodies(server, f"bench-alloc{clients}", calls)
        results.append(measure(server, "one.vm.allocate", "one.vm.allocate (held)", bodies,
                               clients, idle_s))

    print(f"setup: {pool} dummy hosts", flush=True)
    host_bodies = [server.body("one.host.allocate", f"bench-host-{i}", "dummy", "dummy", -1)
                   for i in range(pool)]
    setup_calls(server, host_bodies, "hosts", setup_clients)
    wait_monitored(server, pool, timeout=300)
    hostpool = server.body("one.hostpool.info")
    for clients in clients_list:
        results.append(measure(server, "one.hostpool.info", f"one.hostpool.info ({pool} hosts)",
                               [hostpool] * calls, clients, idle_s))
    results.sort(key=lambda r: (ORDER.index(r.method), r.clients))
    return results


# ---------------------------------------------------------------------------------------------
# output


def machine_info() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    return {
        "cpu_model": model, "cpus": os.cpu_count(), "cpus_usable": usable,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(), "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def bar_text(r: Result) -> str:
    parts = []
    if "cpu_ms" in r.bar:
        ratio = r.server_cpu_ms_per_call / r.bar["cpu_ms"]
        parts.append(f"{r.bar['cpu_ms']:g} ms CPU (x{ratio:.1f})")
    if "calls_s" in r.bar and r.clients == 1:
        ratio = r.calls_per_s / r.bar["calls_s"]
        parts.append(f"{r.bar['calls_s']:,.0f}/s (x{ratio:.2f})")
    elif "calls_s" in r.bar:
        parts.append(f"{r.bar['calls_s']:,.0f}/s seq")
    return ", ".join(parts) or "-"


COLUMNS = [
    ("call", "left"), ("clients", "right"), ("calls", "right"), ("calls/s", "right"),
    ("p50 ms", "right"), ("p95 ms", "right"), ("server CPU ms/call", "right"),
    ("of which core", "right"), ("idle ms/s", "right"), ("client CPU ms/call", "right"),
    ("oned 7.4.0 (ours / oned)", "left"),
]


def rows(results: list[Result]) -> list[list[str]]:
    return [[
        r.label, str(r.clients), f"{r.calls}{' !' + str(r.errors) if r.errors else ''}",
        f"{r.calls_per_s:,.0f}", f"{r.p50_ms:.2f}", f"{r.p95_ms:.2f}",
        f"{r.server_cpu_ms_per_call:.2f}", f"{r.cpu_by_role_ms_per_call['core']:.2f}",
        f"{r.idle_server_cpu_ms_per_s:.0f}", f"{r.client_cpu_ms_per_call:.2f}", bar_text(r),
    ] for r in results]


def print_table(title: str, results: list[Result]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        table_rows = [[c for c, _ in COLUMNS], *rows(results)]
        widths = [max(len(row[i]) for row in table_rows) for i in range(len(COLUMNS))]
        print(title)
        for row in table_rows:
            print("  ".join(cell.ljust(w) if just == "left" else cell.rjust(w)
                            for cell, w, (_, just) in zip(row, widths, COLUMNS, strict=True)))
        return
    table = Table(title=title, title_justify="left")
    for name, just in COLUMNS:
        table.add_column(name, justify=just)  # type: ignore[arg-type]
    for row in rows(results):
        table.add_row(*row)
    Console(width=200).print(table)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4, help="gunicorn API workers")
    parser.add_argument("--calls", type=int, help="calls per measurement (default 2000; "
                        "300 with --quick)")
    parser.add_argument("--pool", type=int, help="VMs and hosts in the pools (default 1000; "
                        "100 with --quick)")
    parser.add_argument("--clients", default="1,4", help="client processes, comma-separated")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few calls, "
                        "100 VMs/hosts")
    parser.add_argument("--idle", type=float, help="seconds of idle CPU sampling before each "
                        "measurement (default 2; 0.5 with --quick)")
    parser.add_argument("--db", help="PostgreSQL URL of a database the benchmark may create "
                        "a fresh database beside (default: SQLite in the temp dir)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = parser.parse_args()
    calls = args.calls or (300 if args.quick else 2000)
    pool = args.pool or (100 if args.quick else 1000)
    idle_s = args.idle if args.idle is not None else (0.5 if args.quick else 2.0)
    clients_list = [int(x) for x in args.clients.split(",") if x.strip()]
    if args.db and not args.db.startswith(("postgresql://", "postgres://")):
        parser.error("--db takes a postgresql:// URL")

    machine = machine_info()
    backend = "postgresql" if args.db else "sqlite"
    print(f"machine: {machine['cpu_model']}, {machine['cpus']} CPUs "
          f"({machine['cpus_usable']} usable), {machine['memory_gib']} GiB; "
          f"{machine['implementation']} {machine['python']}; {machine['platform']}")
    print(f"oneserver: {backend}, {args.workers} workers; {calls} calls per measurement, "
          f"{pool} VMs/hosts in the pools, clients {clients_list}", flush=True)

    # SIGTERM stops us the way Ctrl-C does: through the finally below.
    signal.signal(signal.SIGTERM, _interrupt)
    server = None
    started = time.monotonic()
    failed = True
    try:
        server = start_server(args.workers, args.db)
        pids = {"master": server.proc.pid}
        print(f"server: pid {server.proc.pid}, http://127.0.0.1:{server.port}/RPC2, "
              f"{len(tree_stats(server.proc.pid))} processes", flush=True)
        results = run_all(server, calls, pool, clients_list, idle_s)
        failed = any(r.errors for r in results)
    except KeyboardInterrupt:
        failed = False
        print("interrupted; stopping the server", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            master = read_stat(server.proc.pid)
            stop_server(server, show_log=failed)
            if master is None:
                print("note: the server had exited", file=sys.stderr)

    title = (f"oneserver XML-RPC ({backend}, {args.workers} workers) on "
             f"{machine['cpu_model']}, {machine['cpus_usable']} CPUs, Python {machine['python']}")
    print()
    print_table(title, results)
    print("server CPU = user+system time of gunicorn master + workers + core during the run "
          "/ calls; idle = server CPU ms per wall-second just before the run (core rounds, "
          "monitoring); each call on a fresh TCP connection.")
    if args.db:
        print("PostgreSQL's own server processes are not counted in server CPU.")
    print(f"oned 7.4.0 bar (same machine kind): one.vm.info 0.53 ms server CPU/call "
          f"(~1,300 sequential calls/s); one.vmpool.info (1,000 VMs) 2.7 ms; "
          f"one.vm.allocate 289/s.  Total run {time.monotonic() - started:.0f} s.")
    if args.json:
        out = {
            "machine": machine, "backend": backend, "workers": args.workers, "calls": calls,
            "pool": pool, "clients": clients_list, "server_pids": pids,
            "command": " ".join([sys.executable, *sys.argv]),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "oned_7_4_0_bar": BAR,
            "results": [asdict(r) for r in results],
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
