"""Time one scheduling pass over a synthetic cloud (10,000 pending VMs x 1,000 hosts).

Usage: python tools/bench_sched_pass.py [--vms N] [--hosts N] [--seed N]

Hosts and VMs are drawn from a seeded RNG so runs are comparable; the VMs use a handful of
distinct requirement strings, the way real templates do.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oneserver.scheduler.placement import (  # noqa: E402
    HostCandidate,
    PassLimits,
    PendingVM,
    Policy,
    schedule,
)

REQUIREMENTS = [
    "",
    'HYPERVISOR = "lxc"',
    'HYPERVISOR = "kvm" & FREE_CPU > 400',
    "CLUSTER_ID = 1 | CLUSTER_ID = 2",
    '!(HOSTNAME = "node-1*") & FREE_CPU > 100',
]


def make_hosts(rng: random.Random, n: int) -> list[HostCandidate]:
    hosts = []
    for i in range(n):
        max_cpu = rng.choice([800, 1600, 3200, 6400])
        max_mem = rng.choice([16, 32, 64, 128]) * 1024 * 1024
        cpu_usage = rng.randrange(0, max_cpu, 50)
        mem_usage = rng.randrange(0, max_mem, 1024 * 1024)
        cluster = rng.randrange(0, 4)
        attrs = {
            "HYPERVISOR": [rng.choice(["kvm", "lxc"])],
            "HOSTNAME": [f"node-{i}"],
            "CLUSTER_ID": [str(cluster)],
            "FREE_CPU": [str(max_cpu - cpu_usage)],
            "PRIORITY": [str(rng.randrange(10))],
        }
        hosts.append(
            HostCandidate(
                id=i,
                name=f"node-{i}",
                cluster_id=cluster,
                max_cpu=max_cpu,
                cpu_usage=cpu_usage,
                max_mem=max_mem,
                mem_usage=mem_usage,
                running_vms=rng.randrange(0, 20),
                attrs=attrs,
            )
        )
    return hosts


def make_vms(rng: random.Random, n: int) -> list[PendingVM]:
    return [
        PendingVM(
            id=i,
            cpu=rng.choice([0.5, 1.0, 2.0, 4.0]),
            memory_mb=rng.choice([512, 1024, 2048, 8192]),
            requirements=rng.choice(REQUIREMENTS),
            priority=rng.choice([0, 0, 0, 10]),
            cluster_ids=rng.choice([None, None, {0, 1}]),
        )
        for i in range(n)
    ]


CONFIGS = [
    ("striping, default limits (max_dispatch 30)", Policy(1), PassLimits()),
    ("striping, max_vm all, max_dispatch 10000", Policy(1), PassLimits(0, 10000, 1)),
    ("packing, max_dispatch 10000, max_host 50", Policy(0), PassLimits(0, 10000, 50)),
    ("striping, max_dispatch 10000, max_host 50", Policy(1), PassLimits(0, 10000, 50)),
    ("load-aware, max_dispatch 10000, max_host 10", Policy(2), PassLimits(0, 10000, 10)),
    (
        "custom rank, max_dispatch 10000, max_host 50",
        Policy(3, "- (RUNNING_VMS * 50 + FREE_CPU)"),
        PassLimits(0, 10000, 50),
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    hosts = make_hosts(rng, args.hosts)
    vms = make_vms(rng, args.vms)
    print(f"{args.vms} pending VMs, {args.hosts} hosts")
    for name, policy, limits in CONFIGS:
        start = time.perf_counter()
        result = schedule(vms, hosts, policy, limits)
        ms = (time.perf_counter() - start) * 1000
        print(
            f"{ms:8.1f} ms  {len(result.placements):5d} placed  "
            f"{len(result.messages):5d} messages  {name}"
        )


if __name__ == "__main__":
    main()
