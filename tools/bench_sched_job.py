"""One pass of the scheduler job as the core runs it: read 10,000 pending VMs and 1,000 hosts
from the database, place them, dispatch, and record SCHED_MESSAGEs. (``bench_sched_pass.py``
times the placement alone.)

    python tools/bench_sched_job.py [--vms 10000] [--hosts 1000] [--max-dispatch 30] [--db URL]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time

from oneserver import bootstrap, db, settings, store
from oneserver.api import Context, load_all
from oneserver.api.host import new_host
from oneserver.api.vm import build
from oneserver.core.scheduling import SchedConf, Scheduler
from oneserver.model.acl import Caller
from oneserver.model.vmstate import HostState
from oneserver.template import Template


def populate(n_hosts: int, n_vms: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    ctx = Context("bench", Caller(0, 0, "oneadmin", "oneadmin", frozenset({0})))
    cluster = store.load("cluster", 0)
    with db.write_transaction():
        for i in range(n_hosts):
            doc = new_host(store.next_id("host"), f"h{i}", "dummy", "dummy", cluster)
            doc["state"] = doc["prev_state"] = int(HostState.MONITORED)
            doc["share"].update(total_cpu=1600, max_cpu=1600, total_mem=64 << 20,
                                max_mem=64 << 20)
            tmpl = Template.from_json(doc["template"])
            tmpl.set("HYPERVISOR", "dummy")
            tmpl.set("RACK", f"r{i % 10}")
            doc["template"] = tmpl.to_json()
            store.insert("host", doc)
        reqs = ["", 'RACK = "r1"', "FREE_CPU > 400", 'HYPERVISOR = "dummy" & RACK != "r2"']
        for _ in range(n_vms):
            t = Template([("CPU", str(rng.choice([0.5, 1, 2]))),
                          ("MEMORY", str(rng.choice([512, 1024, 2048]))),
                          ("SCHED_REQUIREMENTS", rng.choice(reqs))])
            oid = store.next_id("vm")
            store.insert("vm", build(ctx, oid, t, hold=False))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--max-dispatch", type=int, default=30)
    ap.add_argument("--db", help="PostgreSQL URL (default: SQLite in a temp dir)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench_sched_job_")
    conf = settings.configure(tmp, args.db)
    db.prepare_schema(conf.db_url)
    db.open_database(conf.db_url)
    load_all()
    bootstrap.bootstrap()
    t0 = time.perf_counter()
    populate(args.hosts, args.vms)
    print(f"{args.vms} pending VMs and {args.hosts} hosts written in "
          f"{time.perf_counter() - t0:.1f} s ({conf.db_url.split(':')[0]})")
    sched = Scheduler(SchedConf(max_vm=0, max_dispatch=args.max_dispatch, max_host=1))
    for label in ("first pass", "second pass"):
        t0 = time.perf_counter()
        placed = sched.run_pass()
        print(f"{label}: {time.perf_counter() - t0:.3f} s, {placed} dispatched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
