"""Benchmark large merge updates and what they do to the other writers.

Usage: python tools/bench_large_update.py [--sizes 10k,50k,250k,1m,2m] [--merges 3]
                                          [--shape short|typical] [--workers 2] [--db URL]

Starts its own ``oneserver serve`` (tools/harness.py; SQLite in a temporary directory, or a
fresh database on the PostgreSQL server of ``--db``). For each size it puts a template of about
that many characters into a held VM's USER_TEMPLATE with ``one.vm.update`` in merge mode: once
(every attribute new), then ``--merges`` times again (every attribute replaced, the case that
used to be quadratic). Meanwhile a writer process updates another VM in a loop, one small merge
update per call, as an administrator's script would. Printed per size: the seconds of the
first merge and the median of the others, and the writer's calls during the merges (p50, p95,
max latency, failures).

Shapes: ``short`` is many tiny attributes (``A000001=1``, the worst case per character);
``typical`` is attributes like ``ATTR_0000001 = "value 1 with some padding text"``.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing as mp
import statistics
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Server, log_tail, start_server, stop_server  # noqa: E402

HEADERS = {"Content-Type": "text/xml", "User-Agent": "bench_large_update"}


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1000, "m": 1000 * 1000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def template(size: int, shape: str) -> str:
    lines, total, n = [], 0, 0
    while total < size:
        line = (f"A{n:06d}=1\n" if shape == "short"
                else f'ATTR_{n:07d} = "value {n} with some padding text"\n')
        lines.append(line)
        total += len(line)
        n += 1
    return "".join(lines)


def post(port: int, body: bytes, timeout: float = 600) -> tuple[bool, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/RPC2", body, HEADERS)
        data = conn.getresponse().read()
    finally:
        conn.close()
    return b"<boolean>1</boolean>" in data[:300], data


def _writer(port: int, session: str, vm: int, running: Any, results: Any) -> None:
    """Small writes in a loop; each result is (start time, latency, ok, first bytes)."""
    i = 0
    while running.is_set():
        body = xmlrpc.client.dumps((session, vm, f'SEQ="{i}"', 1), "one.vm.update").encode()
        t0 = time.perf_counter()
        ok, data = post(port, body, timeout=120)
        results.put((time.monotonic(), time.perf_counter() - t0, ok, b"" if ok else data[:300]))
        i += 1


def held_vm(server: Server, name: str) -> int:
    return server.call("one.vm.allocate", f'NAME="{name}"\nCPU=0.1\nMEMORY=64', True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(server: Server, size: int, shape: str, merges: int) -> dict[str, Any]:
    vm = held_vm(server, f"large-{size}")
    body = xmlrpc.client.dumps((server.session, vm, template(size, shape), 1),
                               "one.vm.update").encode()
    ctx = mp.get_context("fork")
    running, results = ctx.Event(), ctx.Queue()
    running.set()
    other = held_vm(server, f"writer-{size}")
    writer = ctx.Process(target=_writer, args=(server.port, server.session, other, running,
                                               results), daemon=True)
    writer.start()
    time.sleep(0.5)  # the writer is up to speed before the first merge
    times, failures = [], []
    start = time.monotonic()
    for _ in range(1 + merges):
        t0 = time.perf_counter()
        ok, data = post(server.port, body)
        times.append(time.perf_counter() - t0)
        if not ok:
            failures.append(data[:300])
    end = time.monotonic()
    running.clear()
    writer.join(150)
    calls = []
    while not results.empty():
        calls.append(results.get())
    during = [c for c in calls if start <= c[0] - c[1] <= end]
    lat = [c[1] for c in during]
    return {
        "size": size, "first_s": times[0], "merge_s": statistics.median(times[1:] or times),
        "failures": failures, "writer_calls": len(during),
        "writer_failed": [c[3] for c in during if not c[2]],
        "p50_ms": pct(lat, 0.5) * 1000, "p95_ms": pct(lat, 0.95) * 1000,
        "max_ms": max(lat, default=float("nan")) * 1000,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,50k,250k,1m,2m")
    ap.add_argument("--merges", type=int, default=3, help="merges timed after the first")
    ap.add_argument("--shape", choices=("short", "typical"), default="typical")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    server = start_server(args.workers, args.db, prefix="bench_large_update_")
    print(f"{server.db_url.split(':')[0]}, {args.workers} workers, {args.shape} attributes, "
          f"{args.merges} merges timed after the first\n")
    print(f"{'size':>9} {'first s':>8} {'merge s':>8} | {'writer calls':>12} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'max ms':>8} {'failed':>6}")
    failed = False
    try:
        for size in (parse_size(s) for s in args.sizes.split(",")):
            r = measure(server, size, args.shape, args.merges)
            print(f"{r['size']:>9} {r['first_s']:>8.3f} {r['merge_s']:>8.3f} | "
                  f"{r['writer_calls']:>12} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
                  f"{r['max_ms']:>8.1f} {len(r['writer_failed']):>6}", flush=True)
            for what in (*r["failures"], *r["writer_failed"][:1]):
                failed = True
                print(f"    failed: {what!r}")
    except BaseException:
        stop_server(server, show_log=True)
        raise
    if failed:
        print(log_tail(server), file=sys.stderr)
    stop_server(server)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
