"""``oneserver``: serve the XML-RPC API with its core, or run a core alone."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from typing import Any

from gunicorn.app.base import BaseApplication

from oneserver import bootstrap, db, settings


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], data_dir: str, db_url: str,
                 etc_dir: str | None) -> None:
        self.options = options
        self.data_dir, self.db_url, self.etc_dir = data_dir, db_url, etc_dir
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        data_dir, db_url, etc_dir = self.data_dir, self.db_url, self.etc_dir

        def post_fork(server: Any, worker: Any) -> None:
            from oneserver import wsgi
            wsgi.setup(data_dir, db_url, etc_dir)

        self.cfg.set("post_fork", post_fork)

    def load(self) -> Any:
        from oneserver.wsgi import application
        return application


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
    core = subprocess.Popen(
        [sys.executable, "-m", "oneserver", "core", "--data", conf.data_dir, "--db",
         conf.db_url, *(["--etc", args.etc] if args.etc else []), *_sched_flags(args)])
    print(f"oneserver {conf.db_url.split('://')[0]} database, data in {conf.data_dir}; "
          f"XML-RPC at http://{args.host}:{args.port}/RPC2", flush=True)
    try:
        _Gunicorn({
            "bind": f"{args.host}:{args.port}", "workers": args.workers,
            "worker_class": "sync", "timeout": 60, "graceful_timeout": 10,
            "accesslog": None, "loglevel": "warning", "preload_app": False,
        }, conf.data_dir, conf.db_url, args.etc).run()
    finally:
        core.terminate()
        try:
            core.wait(15)
        except subprocess.TimeoutExpired:
            core.kill()
    return 0


def run_core(args: argparse.Namespace) -> int:
    from oneserver.core import process
    conf = settings.configure(args.data, args.db)
    process.main(conf.data_dir, conf.db_url, _sched_conf(args, conf), args.monitor_interval)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ONESERVER_LOG", "WARNING"),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # A wake-up that finds a pass already running is expected and coalesced, not a problem.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="oneserver")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve XML-RPC (API workers) and run the core")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=2633)
    s.add_argument("--workers", type=int, default=4)
    for p in (s, sub.add_parser("core", help="run only the core (lease-elected)")):
        p.add_argument("--data", default=os.environ.get("ONESERVER_DATA", "data"),
                       help="data directory (SQLite database, one_auth, sockets)")
        p.add_argument("--db", default=os.environ.get("ONESERVER_DB"),
                       help="database URL, e.g. postgresql://user:pw@127.0.0.1/oneserver")
        p.add_argument("--etc", default=os.environ.get("ONESERVER_ETC"),
                       help="directory with oned.conf, sched.conf and vmm_exec/ "
                            "(default: the project's etc/)")
        _sched_args(p)
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else run_core(args)
