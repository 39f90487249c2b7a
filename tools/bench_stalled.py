"""Latency of normal calls while other clients stall: N connections that never finish their
headers (``POST /RPC2 HTTP/1.1\\r\\nHost: x\\r\\n`` and nothing more) or their body (a
Content-Length of 1,000 and 40 bytes sent), kept open for the whole run.

Usage: python tools/bench_stalled.py [--workers 4] [--stalled 0,50] [--kinds headers,body]
                                     [--duration 12] [--timeout 10]

Starts its own server (``oneserver serve``, SQLite, a temporary directory) and, for each N and
kind, opens the N stalled connections, opens a new one whenever the server drops one (so that N
stay stalled throughout), and makes ``one.vm.info`` calls one after another, each on a fresh TCP
connection as pyone makes them, for ``--duration`` seconds (longer than the server's deadlines,
so that stalled sockets are dropped and replaced during the run). A call that gets no reply
within ``--timeout`` seconds counts as failed (its latency is the timeout). Printed per row:
calls, failures, latency p50/p95/max, and how the server treated the stalled sockets (how many
it dropped, and after how long on average).
"""

from __future__ import annotations

import argparse
import http.client
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Server, start_server, stop_server  # noqa: E402

FIRST_BYTES = {
    "headers": b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n",
    "body": (b"POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
             b"Content-Length: 1000\r\n\r\n<?xml version='1.0'?><methodCall>"),
}
OK = b"<boolean>1</boolean>"


class Stallers:
    """N connections that stop mid-request, replaced as the server drops them."""

    def __init__(self, port: int, count: int, first: bytes) -> None:
        self.port, self.count, self.first = port, count, first
        self.sel = selectors.DefaultSelector()
        self.opened: dict[socket.socket, float] = {}
        self.lifetimes: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.sendall(self.first)
        sock.setblocking(False)
        self.opened[sock] = time.monotonic()
        self.sel.register(sock, selectors.EVENT_READ)

    def start(self) -> None:
        for _ in range(self.count):
            self._open()
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for key, _ in self.sel.select(0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if sock.recv(65536):
                        continue  # an error page before the close: the close follows
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self.lifetimes.append(time.monotonic() - self.opened.pop(sock))
                self.sel.unregister(sock)
                sock.close()
                if not self.stop.is_set():
                    self._open()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.opened:
            sock.close()
        self.sel.close()


@dataclass
class Row:
    stalled: int
    kind: str
    calls: int
    timeouts: int
    p50_ms: float
    p95_ms: float
    max_ms: float
    dropped: int
    mean_drop_s: float


def one_call(port: int, body: bytes, timeout: float) -> tuple[float, bool]:
    t0 = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml"})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        ok = resp.status == 200 and OK in data[:200]
    except (TimeoutError, OSError, http.client.HTTPException):
        ok = False
    return time.perf_counter() - t0, ok


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def measure(server: Server, body: bytes, stalled: int, kind: str, duration: float,
            timeout: float) -> Row:
    stallers = Stallers(server.port, stalled, FIRST_BYTES[kind])
    stallers.start()
    time.sleep(0.5)  # let the server accept them before the first call
    lat: list[float] = []
    failed = 0
    end = time.monotonic() + duration
    try:
        while time.monotonic() < end:
            elapsed, ok = one_call(server.port, body, timeout)
            lat.append(elapsed)
            failed += not ok
    finally:
        stallers.close()
    drops = stallers.lifetimes
    row = Row(stalled, kind, len(lat), failed, percentile(lat, 0.5) * 1000,
              percentile(lat, 0.95) * 1000, max(lat) * 1000, len(drops),
              sum(drops) / len(drops) if drops else float("nan"))
    print(f"  {stalled:3d} stalled ({kind if stalled else '-':7}): {row.calls:5d} calls, "
          f"{row.timeouts} failed, "
          f"p50 {row.p50_ms:7.2f} ms, p95 {row.p95_ms:8.2f} ms, max {row.max_ms:9.2f} ms; "
          f"server dropped {row.dropped} stalled sockets after {row.mean_drop_s:.1f} s",
          flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--stalled", default="0,50", help="stalled connections, comma-separated")
    parser.add_argument("--kinds", default="headers,body",
                        help="where the stalled requests stop: headers, body")
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per row")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds a call may wait for its reply")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if any(k not in FIRST_BYTES for k in kinds):
        parser.error(f"--kinds: choose among {', '.join(FIRST_BYTES)}")
    counts = [int(x) for x in args.stalled.split(",") if x.strip()]

    server = start_server(args.workers, prefix="bench_stalled_")
    rows: list[Row] = []
    try:
        vm = server.call("one.vm.allocate", "NAME=stall\nCPU=0.1\nMEMORY=64", True)
        body = server.body("one.vm.info", vm)
        print(f"oneserver: {args.workers} workers; one.vm.info, one call at a time, "
              f"{args.duration:g} s per row", flush=True)
        for stalled in counts:
            for kind in kinds if stalled else kinds[:1]:
                rows.append(measure(server, body, stalled, kind, args.duration, args.timeout))
    finally:
        stop_server(server)
    print()
    print("| stalled connections | stop in | calls | failed | p50 ms | p95 ms | max ms "
          "| dropped by the server (mean after) |")
    print("|---:|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        kind = r.kind if r.stalled else "-"
        dropped = f"{r.dropped} ({r.mean_drop_s:.1f} s)" if r.dropped else "0"
        print(f"| {r.stalled} | {kind} | {r.calls} | {r.timeouts} | {r.p50_ms:.2f} "
              f"| {r.p95_ms:.2f} | {r.max_ms:.2f} | {dropped} |")
    return 1 if any(r.timeouts for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
