"""``oneserver``: serve the XML-RPC API with its core, or run a core alone."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from oneserver import bootstrap, db, settings, supervisor
from oneserver.supervisor import Child, supervise


def _sched_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scheduler (override etc/sched.conf)")
    g.add_argument("--sched-interval", type=float)
    g.add_argument("--max-dispatch", type=int)
    g.add_argument("--max-host", type=int)
    g.add_argument("--max-vm", type=int)
    g.add_argument("--policy", type=int, choices=range(5))
    g.add_argument("--no-wake", action="store_true",
                   help="one pass per interval only, as mm_sched")
    p.add_argument("--monitor-interval", type=float,
                   help="seconds between two samples of a host (default: oned.conf's "
                        "MONITORING_INTERVAL_HOST)")


def _sched_flags(args: argparse.Namespace) -> list[str]:
    flags = []
    for name in ("sched_interval", "max_dispatch", "max_host", "max_vm", "policy"):
        value = getattr(args, name)
        if value is not None:
            flags += [f"--{name.replace('_', '-')}", str(value)]
    if args.no_wake:
        flags.append("--no-wake")
    if args.monitor_interval is not None:
        flags += ["--monitor-interval", str(args.monitor_interval)]
    return flags


def _sched_conf(args: argparse.Namespace, conf: settings.Settings) -> Any:
    from oneserver.core.scheduling import SchedConf
    sc = SchedConf.from_template(conf.sched_conf)
    for name, attr in (("sched_interval", "interval"), ("max_dispatch", "max_dispatch"),
                       ("max_host", "max_host"), ("max_vm", "max_vm"), ("policy", "policy")):
        value = getattr(args, name)
        if value is not None:
            setattr(sc, attr, value)
    if args.no_wake:
        sc.wake_on_events = False
    return sc


def serve(args: argparse.Namespace) -> int:
    conf = settings.configure(args.data, args.db, args.etc)
    os.makedirs(conf.data_dir, exist_ok=True)
    db.open_database(conf.db_url)
    line = bootstrap.bootstrap()
    if line:
        print(line, flush=True)
    db.database.close()
    common = ["--data", conf.data_dir, "--db", conf.db_url,
              *(["--etc", args.etc] if args.etc else [])]
    me = [sys.executable, "-m", "oneserver"]
    children = [
        Child("API", [*me, "api", "--host", args.host, "--port", str(args.port),
                      "--workers", str(args.workers), *common], restart=False),
        Child("core", [*me, "core", *common, *_sched_flags(args)], restart=True),
    ]
    print(f"oneserver {conf.db_url.split('://')[0]} database, data in {conf.data_dir}; "
          f"XML-RPC at http://{args.host}:{args.port}/RPC2", flush=True)
    return supervise(children)


def run_api(args: argparse.Namespace) -> int:
    conf = settings.configure(args.data, args.db, args.etc)
    supervisor.run_api(args.host, args.port, args.workers, conf.data_dir, conf.db_url, args.etc)
    return 0


def run_core(args: argparse.Namespace) -> int:
    from oneserver.core import process
    conf = settings.configure(args.data, args.db, args.etc)
    process.main(conf.data_dir, conf.db_url, _sched_conf(args, conf), args.monitor_interval,
                 args.etc)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ONESERVER_LOG", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A wake-up that finds a pass already running is expected and coalesced, not a problem.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="oneserver")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve XML-RPC (API workers) and run the core")
    a = sub.add_parser("api", help="serve XML-RPC only (no core)")
    for p in (s, a):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=2633)
        p.add_argument("--workers", type=int, default=4)
    for p in (s, a, sub.add_parser("core", help="run only the core (lease-elected)")):
        p.add_argument("--data", default=os.environ.get("ONESERVER_DATA", "data"),
                       help="data directory (SQLite database, one_auth, sockets)")
        p.add_argument("--db", default=os.environ.get("ONESERVER_DB"),
                       help="database URL, e.g. postgresql://user:pw@127.0.0.1/oneserver")
        p.add_argument("--etc", default=os.environ.get("ONESERVER_ETC"),
                       help="directory with oned.conf, sched.conf and vmm_exec/ "
                            "(default: the project's etc/)")
        _sched_args(p)
    args = parser.parse_args(argv)
    return {"serve": serve, "api": run_api, "core": run_core}[args.command](args)
