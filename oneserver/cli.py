"""``oneserver``: serve the XML-RPC API with its core, or run a core alone."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from oneserver import bootstrap, db, settings, supervisor
from oneserver.api.system import VERSION as API_VERSION
from oneserver.pidfile import Busy, PidFile
from oneserver.supervisor import Child, supervise

ENVIRONMENT = """environment:
  ONE_AUTH        a file with oneadmin's "oneadmin:PASSWORD" line, read on the first start
                  (without it a new password is written to DATA/one_auth)
  ONESERVER_DATA  the default of --data
  ONESERVER_DB    the default of --db
  ONESERVER_ETC   the default of --etc
  ONESERVER_LOG   log level: DEBUG, INFO, WARNING (default) or ERROR
"""


def _version() -> str:
    try:
        mine = version("oneserver")
    except PackageNotFoundError:  # run from a checkout that was never installed
        mine = "(not installed)"
    return f"oneserver {mine} (OpenNebula {API_VERSION} XML-RPC API)"


def _sched_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scheduler (each flag overrides a key of sched.conf)")
    g.add_argument("--sched-interval", type=float, metavar="SECONDS",
                   help="seconds between two passes (SCHED_INTERVAL)")
    g.add_argument("--max-dispatch", type=int, metavar="N",
                   help="VMs dispatched per pass (MAX_DISPATCH)")
    g.add_argument("--max-host", type=int, metavar="N",
                   help="VMs dispatched to one host per pass (MAX_HOST)")
    g.add_argument("--max-vm", type=int, metavar="N",
                   help="pending VMs considered per pass, 0: all (MAX_VM)")
    g.add_argument("--policy", type=int, choices=range(5),
                   help="0 packing, 1 striping, 2 load-aware, 3 custom RANK, 4 fixed "
                        "(DEFAULT_SCHED's POLICY)")
    g.add_argument("--no-wake", action="store_true",
                   help="one pass per interval only, as mm_sched (WAKE_ON_EVENTS = NO)")
    p.add_argument("--monitor-interval", type=float, metavar="SECONDS",
                   help="seconds between two samples of a host (default: oned.conf's "
                        "MONITORING_INTERVAL_HOST)")


def _configuration(conf: settings.Settings, etc: str | None) -> str:
    """The start-up line that says where the configuration came from."""
    if conf.files:
        return "configuration: " + ", ".join(conf.files)
    return f"configuration: no files in {etc or settings.ETC}, built-in defaults"


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


def serve(args: argparse.Namespace, claim: PidFile) -> int:
    conf = settings.configure(args.data, args.db, args.etc)
    db.open_database(conf.db_url)
    line = bootstrap.bootstrap(bootstrap.endpoint(args.host, args.port))
    if line:
        print(line, flush=True)
    db.database.close()
    print(_configuration(conf, args.etc), flush=True)
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
    return supervise(children, claim)


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
    parser = argparse.ArgumentParser(
        prog="oneserver", description="An OpenNebula 7.4-compatible cloud manager.",
        epilog=ENVIRONMENT, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary, epilog=ENVIRONMENT,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    s = command("serve", "serve XML-RPC at /RPC2 (API workers) and run the core")
    a = command("api", "serve XML-RPC only (no core)")
    for p in (s, a):
        p.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s)")
        p.add_argument("--port", type=int, default=2633,
                       help="XML-RPC port (default: %(default)s, as oned)")
        p.add_argument("--workers", type=int, default=4, metavar="N",
                       help="API worker processes (default: %(default)s)")
    c = command("core", "run only the core (one active per database, by lease)")
    for p in (s, a, c):
        p.add_argument("--data", default=os.environ.get("ONESERVER_DATA", "./data"),
                       metavar="DIR",
                       help="data directory: SQLite database, one_auth, datastores "
                            "(default: %(default)s)")
        p.add_argument("--db", default=os.environ.get("ONESERVER_DB"), metavar="URL",
                       help="database URL, e.g. postgresql://user:pw@127.0.0.1/oneserver "
                            "(default: sqlite:///DIR/one.db)")
        p.add_argument("--etc", default=os.environ.get("ONESERVER_ETC"), metavar="DIR",
                       help="directory with oned.conf, sched.conf and vmm_exec/ "
                            f"(default: {settings.ETC})")
        _sched_args(p)
    args = parser.parse_args(argv)
    if args.etc and not os.path.isdir(args.etc):
        {"serve": s, "api": a, "core": c}[args.command].error(
            f"--etc {args.etc}: no such directory")
    conf = settings.configure(args.data, args.db, args.etc)
    claim = None
    if args.command == "serve":  # one serve per data directory, before anything touches it
        os.makedirs(conf.data_dir, exist_ok=True)
        claim = PidFile(conf.data_dir)
        try:
            ended = claim.claim()
        except Busy as exc:
            parser.exit(1, f"oneserver: {exc}\n")
        if ended:
            print(f"ended {len(ended)} process(es) left running by a killed serve: "
                  + " ".join(map(str, ended)), flush=True)
    try:  # the schema is created or migrated here, before any API worker or core opens it
        db.prepare_schema(conf.db_url)
    except db.SchemaError as exc:
        if claim is not None:
            claim.release()
        parser.exit(1, f"oneserver: {exc}\n")
    if claim is not None:
        return serve(args, claim)
    return {"api": run_api, "core": run_core}[args.command](args)
