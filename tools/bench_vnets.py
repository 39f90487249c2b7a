"""Benchmark virtual networks and leases on a real ``oneserver serve``.

Usage: python tools/bench_vnets.py [--workers 2] [--networks 1000] [--leases 10]
                                   [--calls 1000] [--allocs 500] [--clients 1,2]
                                   [--quick] [--db URL] [--json FILE]

Starts its own server (as tools/bench_api.py does: SQLite in a temporary directory, or a fresh
database on the PostgreSQL server of ``--db``), creates ``--networks`` networks, each with an
IP4 address range of 32 addresses, ``--leases`` of them held (10,000 leases by default), then
measures with each number of client processes:

* ``one.vn.info`` of one network (its leases listed),
* ``one.vnpool.info(-2, -1, -1)`` of all the networks (short bodies, no leases),
* ``one.vm.allocate`` of held VMs without a NIC, and with one NIC (``NIC=[NETWORK_ID=n]``,
  networks taken in turn): the lease, the NIC attributes, the security group rules and the
  default group's list of VMs are written in the allocate's transaction.

Reported as bench_api reports: calls/s, latency p50/p95, server CPU per call (gunicorn master,
workers and core, from /proc) beside the idle rate.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import Result, machine_info, measure, print_table, setup_calls  # noqa: E402
from harness import Server, start_server, stop_server  # noqa: E402

NETWORK = ('NAME="bench-net-{i}"\nVN_MAD="dummy"\nBRIDGE="br-bench"\nGATEWAY="10.0.0.1"\n'
           'DNS="10.0.0.2"\nAR=[TYPE="IP4",IP="{ip}",SIZE="32"]')
VM = 'NAME="bench-vm-{i}"\nCPU=0.1\nMEMORY=64\n'


def network_ip(i: int) -> str:
    """A /27 of 10.0.0.0/8 per network."""
    base = (10 << 24) + (i + 1) * 32
    return ".".join(str((base >> s) & 0xFF) for s in (24, 16, 8, 0))


def setup(server: Server, networks: int, leases: int, clients: int) -> None:
    bodies = [server.body("one.vn.allocate", NETWORK.format(i=i, ip=network_ip(i)), -1)
              for i in range(networks)]
    # One client: network i gets id i (a fresh server), so its addresses are known.
    setup_calls(server, bodies, "networks", 1)
    holds = []
    for i in range(networks):
        base = network_ip(i).rsplit(".", 1)
        for k in range(leases):
            ip = f"{base[0]}.{int(base[1]) + k}"
            holds.append(server.body("one.vn.hold", i, f'LEASES=[IP="{ip}"]'))
    setup_calls(server, holds, "held leases", clients)


def run_all(server: Server, args: argparse.Namespace) -> list[Result]:
    clients_list = [int(c) for c in args.clients.split(",")]
    setup(server, args.networks, args.leases, max(clients_list))
    results = []
    info = server.body("one.vn.info", 0)
    pool = server.body("one.vnpool.info", -2, -1, -1)
    for clients in clients_list:
        results.append(measure(server, "one.vn.info", f"one.vn.info ({args.leases} leases)",
                               [info] * args.calls, clients, args.idle))
    for clients in clients_list:
        results.append(measure(server, "one.vnpool.info",
                               f"one.vnpool.info ({args.networks} networks)",
                               [pool] * max(1, args.calls // 10), clients, args.idle))
    n = 0
    for clients in clients_list:
        plain = [server.body("one.vm.allocate", VM.format(i=n + i), True)
                 for i in range(args.allocs)]
        n += args.allocs
        results.append(measure(server, "one.vm.allocate", "one.vm.allocate (no NIC)", plain,
                               clients, args.idle))
        nics = [server.body("one.vm.allocate", VM.format(i=n + i)
                            + f'NIC=[NETWORK_ID="{(n + i) % args.networks}"]', True)
                for i in range(args.allocs)]
        n += args.allocs
        results.append(measure(server, "one.vm.allocate", "one.vm.allocate (1 NIC)", nics,
                               clients, args.idle))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--networks", type=int, default=1000)
    p.add_argument("--leases", type=int, default=10, help="held leases per network")
    p.add_argument("--calls", type=int, default=1000)
    p.add_argument("--allocs", type=int, default=500)
    p.add_argument("--clients", default="1,2")
    p.add_argument("--idle", type=float, default=1.0, help="seconds of idle rate measured")
    p.add_argument("--quick", action="store_true", help="100 networks, 200 calls")
    p.add_argument("--db", help="postgresql://user:pw@host/db to create a database on")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    if args.quick:
        args.networks, args.calls, args.allocs = 100, 200, 100
    server = start_server(args.workers, args.db, prefix="bench_vnets_")
    try:
        results = run_all(server, args)
    finally:
        stop_server(server)
    print_table(f"oneserver networks ({'PostgreSQL' if args.db else 'SQLite'}, "
                f"{args.workers} API workers)", results)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_info(),
                                               "results": [asdict(r) for r in results]},
                                              indent=1))


if __name__ == "__main__":
    main()
