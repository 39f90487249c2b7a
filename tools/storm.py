#!/usr/bin/env python3
"""Crash storm: client processes allocate ~1,000 VMs and power them off, resume and terminate
them against a private ``oneserver serve`` on a loopback port (dummy or sim hosts), while every
few seconds an API worker, the core, the gunicorn master or the supervisor (``serve``) itself is
SIGKILLed (the four kinds in a random order, each once per round, so that a short storm hits
them all); ``serve`` is started again whenever it is gone. After the storm
and a calm (at most ``--calm`` seconds, over as soon as everything has settled) it prints what
no crash may cause, and how long each kind of kill took to recover from:

* acknowledged VMs lost: an allocate a client got an id for (or found by its key after a lost
  reply) whose VM is missing or is another one;
* VMs duplicated: one allocate that became two VMs (each carries a unique STORM_KEY);
* VMs stuck in a transient state (ACTIVE but not RUNNING/UNKNOWN/a failure), VMs left PENDING
  and operations left unfinished;
* hosts whose HOST_SHARE (CPU_USAGE, MEM_USAGE, RUNNING_VMS) differs from the sum of the VMs
  placed on them;
* recovery: from the kill until the API answers with all its workers and a live core of the
  current ``serve`` holds the lease (p50/max per kind).

A client whose call failed in transit (reset, refused) never knows whether an allocate
committed: it looks its key up before allocating again, as a careful client does, so a
duplicate means the server made two VMs of one call. A ``serve`` that dies leaves whatever of
its children still run after ``ORPHAN_GRACE`` seconds: the tool kills them (counted as
orphans) before starting ``serve`` again, since they would hold the port and the lease.

    python3 tools/storm.py [--seconds 120] [--vms 1000] [--hosts 4] [--clients 4] [--json F]

Results for this machine kind: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import xml.parsers.expat
import xmlrpc.client
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

from oneserver.model.vmstate import FAILURE_STATES, Lcm, VmState  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("worker", "core", "master", "supervisor")
ORPHAN_GRACE = 5.0  # seconds a dead serve's children get to exit on their own
RECOVERY_TIMEOUT = 120.0
CALL_TIMEOUT = 90.0  # longer than gunicorn's worker timeout: a reply that never comes means
# the worker died, never that it may still commit (which would make a lookup miss the VM)
HOLDING = (VmState.ACTIVE, VmState.SUSPENDED, VmState.POWEROFF)
SETTLED_LCM = (Lcm.RUNNING, Lcm.UNKNOWN)
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError,
                    xmlrpc.client.ResponseError, xml.parsers.expat.ExpatError)


# ----------------------------------------------------------------------------- XML-RPC

class _Transport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


def proxy(url: str, timeout: float = CALL_TIMEOUT) -> xmlrpc.client.ServerProxy:
    return xmlrpc.client.ServerProxy(url, transport=_Transport(timeout))


# ----------------------------------------------------------------------------- processes

def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out += [int(p) for p in (task / "children").read_text().split()]
    return out


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session…"""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] not in "ZX"


def role_of(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return argv[3].decode() if len(argv) > 3 and argv[1:3] == [b"-m", b"oneserver"] else ""


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (``serve`` runs in a session of its own)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            if int(st[3]) == sid and st[0] not in "ZX":
                out.append(int(entry))
    return out


@dataclass
class Roles:
    supervisor: int
    master: int
    workers: list[int]
    core: int


class Serve:
    """One ``oneserver serve`` at a time on a fixed port and data directory, started again by
    :meth:`keep` whenever it is gone."""

    def __init__(self, tmp: Path, port: int, db_url: str, workers: int, session: str) -> None:
        self.tmp, self.port, self.db_url, self.workers = tmp, port, db_url, workers
        self.url = f"http://127.0.0.1:{port}/RPC2"
        self.session = session
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        self.starts = 0
        self.orphans: list[dict[str, Any]] = []  # what outlived each dead serve
        self.cause = "start"  # the last kill, for the orphans' record

    def start(self) -> None:
        log = open(self.tmp / "server.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oneserver", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--data", str(self.tmp / "data"), "--db", self.db_url,
             "--workers", str(self.workers)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
            env=dict(os.environ, ONE_AUTH=str(self.tmp / "one_auth")), start_new_session=True)
        log.close()
        self.starts += 1

    def keep(self) -> None:
        """If ``serve`` is gone: kill what it left behind, start it again."""
        with self.lock:
            if self.proc is None or self.proc.poll() is None:
                return
            sid = self.proc.pid
            deadline = time.monotonic() + ORPHAN_GRACE
            while (left := session_members(sid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            if left:
                self.orphans.append({"after": self.cause, "processes": len(left),
                                     "roles": sorted(role_of(p) or "?" for p in left)})
                for pid in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                while session_members(sid):
                    time.sleep(0.02)
            self.start()

    def roles(self) -> Roles | None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return None
        master = core = -1
        for pid in children(proc.pid):
            if not alive(pid):
                continue
            role = role_of(pid)
            if role == "api":
                master = pid
            elif role == "core":
                core = pid
        if master < 0 or core < 0:
            return None
        return Roles(proc.pid, master, [p for p in children(master) if alive(p)], core)

    def stop(self) -> None:
        with self.lock:
            proc = self.proc
            if proc is None:
                return
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
            for pid in session_members(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)


# ----------------------------------------------------------------------------- database

class Database:
    """Read-only looks at the rows the API does not show: the core lease, the operations."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: Any = None

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        if self._conn is None:
            if self.url.startswith("sqlite:///"):
                self._conn = sqlite3.connect(self.url[len("sqlite:///"):], timeout=10)
            else:
                import psycopg2
                self._conn = psycopg2.connect(self.url)
                self._conn.autocommit = True
        try:
            cur = self._conn.cursor()
            cur.execute(sql)
            return list(cur.fetchall())
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def lease_pid(self) -> int | None:
        """The pid of the core that holds an unexpired lease, if any."""
        rows = self._query("SELECT holder, expires FROM lease WHERE name = 'core'")
        if not rows or rows[0][1] < time.time():
            return None
        pid = str(rows[0][0]).rpartition(":")[2]
        return int(pid) if pid.isdigit() else None

    def unfinished(self) -> int:
        return int(self._query(
            "SELECT COUNT(*) FROM operation WHERE status IN ('queued', 'running')")[0][0])

    def failed(self) -> dict[str, int]:
        """Operations that ended failed, by action and reason."""
        return {f"{action}: {result}"[:200]: int(n) for action, result, n in self._query(
            "SELECT action, result, COUNT(*) FROM operation WHERE status = 'failed' "
            "GROUP BY action, result")}

    def vm_states(self) -> list[tuple[int, int]]:
        return [(int(s), int(lc)) for s, lc in self._query("SELECT state, lcm_state FROM vm")]


def unsettled(states: list[tuple[int, int]]) -> tuple[int, int]:
    """(VMs in a transient state, VMs PENDING)."""
    transient = sum(1 for s, lc in states if s == VmState.ACTIVE and lc not in SETTLED_LCM
                    and lc not in FAILURE_STATES)
    return transient, sum(1 for s, _ in states if s == VmState.PENDING)


# ----------------------------------------------------------------------------- clients

@dataclass
class ClientConf:
    index: int
    url: str
    session: str
    quota: int
    seconds: float
    seed: int
    out: str
    cpu: float
    memory: int
    think: float


@dataclass
class ClientStats:
    calls: int = 0
    refused: int = 0  # oned errors (an action the VM's state does not allow…)
    transport_errors: int = 0  # resets, refusals, timeouts: each one retried
    acked: int = 0
    acked_by_lookup: int = 0  # replies lost in transit, VM found by its key
    actions: dict[str, int] = field(default_factory=dict)


class GaveUp(Exception):
    """The server stayed unreachable past the client's last deadline."""


class Client:
    def __init__(self, conf: ClientConf) -> None:
        self.conf = conf
        self.rng = random.Random(conf.seed)
        self.stats = ClientStats()
        self.started = time.monotonic()
        self.give_up = self.started + conf.seconds + RECOVERY_TIMEOUT
        self.live: list[int] = []  # acknowledged and not terminated
        self.off: set[int] = set()  # powered off by this client (resume is what fits next)
        self.mortal: set[int] = set()  # half the VMs get terminated; the others stay
        self.out = open(conf.out, "a")  # noqa: SIM115 - closed in run()

    def call(self, method: str, *params: Any) -> list[Any]:
        """One call, sent again after a transport error (never for allocate: see allocate)."""
        while True:
            try:
                return self.once(method, *params)
            except TRANSPORT_ERRORS:
                self.pause()

    def once(self, method: str, *params: Any) -> list[Any]:
        self.stats.calls += 1
        reply = getattr(proxy(self.conf.url), method)(self.conf.session, *params)
        if not reply[0]:
            self.stats.refused += 1
        return list(reply)

    def pause(self) -> None:
        self.stats.transport_errors += 1
        if time.monotonic() > self.give_up:
            raise GaveUp
        time.sleep(0.1 + self.rng.random() * 0.2)

    def allocate(self, n: int) -> None:
        key = f"c{self.conf.index}-{n}"
        text = (f'NAME="storm-{key}"\nCPU={self.conf.cpu}\nMEMORY={self.conf.memory}\n'
                f'STORM_KEY="{key}"\n')
        while True:
            try:
                ok, value, *_ = self.once("one.vm.allocate", text, False)
            except TRANSPORT_ERRORS:
                self.pause()
                found = self.lookup(key)
                if found is not None:
                    self.ack(found, key, lookup=True)
                    return
                continue
            if ok:
                self.ack(int(value), key, lookup=False)
            return

    def lookup(self, key: str) -> int | None:
        """The VM an allocate that lost its reply made, if it made one."""
        ok, body, *_ = self.call("one.vmpool.info", -2, -1, -1, -2, f"STORM_KEY={key}")
        ids = [int(v.findtext("ID") or -1) for v in ET.fromstring(body).findall("VM")] if ok \
            else []
        return min(ids) if ids else None

    def ack(self, vm_id: int, key: str, lookup: bool) -> None:
        self.stats.acked += 1
        self.stats.acked_by_lookup += lookup
        self.live.append(vm_id)
        if self.rng.random() < 0.5:
            self.mortal.add(vm_id)
        self.out.write(json.dumps({"id": vm_id, "key": key}) + "\n")
        self.out.flush()

    def act(self) -> None:
        """Power a VM off or resume it (whichever its last acknowledged action calls for; a
        VM still busy refuses), or now and then terminate one of the mortal half."""
        vm_id = self.rng.choice(self.live)
        if vm_id in self.mortal and self.rng.random() < 0.1:
            action = "terminate"
        else:
            action = "resume" if vm_id in self.off else "poweroff"
        self.stats.actions[action] = self.stats.actions.get(action, 0) + 1
        ok, *_ = self.call("one.vm.action", action, vm_id)
        if not ok:
            return
        if action == "terminate":
            self.live.remove(vm_id)
        elif action == "poweroff":
            self.off.add(vm_id)
        else:
            self.off.discard(vm_id)

    def run(self) -> None:
        allocated = 0
        end = self.started + self.conf.seconds
        try:
            while (now := time.monotonic()) < end:
                # Allocations spread over the first three quarters of the storm.
                due = self.conf.quota * min(1.0, (now - self.started) / (0.75 * self.conf.seconds))
                if allocated < due or (not self.live and allocated < self.conf.quota):
                    self.allocate(allocated)
                    allocated += 1
                elif self.live:
                    self.act()
                time.sleep(self.conf.think)
        except GaveUp:
            pass
        finally:
            self.out.write(json.dumps({"stats": asdict(self.stats)}) + "\n")
            self.out.close()


def client_main(conf: ClientConf) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the storm stops its clients itself
    Client(conf).run()


# ----------------------------------------------------------------------------- the storm

@dataclass
class Kill:
    kind: str
    pid: int
    at: float  # seconds into the storm
    recovery: float | None  # seconds; None if it never recovered


class Storm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="storm_"))
        (self.tmp / "data").mkdir()
        password = f"storm{self.rng.getrandbits(48):x}"
        (self.tmp / "one_auth").write_text(f"oneadmin:{password}\n")
        self.pg_name: str | None = None
        if args.db:
            db_url, self.pg_name = harness._pg_create(args.db)
        else:
            db_url = f"sqlite:///{self.tmp / 'data' / 'one.db'}"
        self.serve = Serve(self.tmp, harness.free_port(), db_url, args.workers,
                           f"oneadmin:{password}")
        self.db = Database(db_url)
        self.kills: list[Kill] = []
        self.stop_keeper = threading.Event()

    # -------------------------------------------------------------- health

    def answers(self) -> bool:
        try:
            return bool(proxy(self.serve.url, 2.0).one.system.version(self.serve.session)[0])
        except (*TRANSPORT_ERRORS, xmlrpc.client.Fault):
            return False

    def healthy(self, gone: int) -> bool:
        """The API answers with all its workers, and a live core of this serve holds the
        lease; ``gone`` (the killed pid) is none of them."""
        roles = self.serve.roles()
        if roles is None or gone in (roles.supervisor, roles.master, roles.core, *roles.workers):
            return False
        if len(roles.workers) < self.args.workers:
            return False
        try:
            if self.db.lease_pid() != roles.core:
                return False
        except Exception:  # noqa: BLE001 - the database is busy or being created
            return False
        return self.answers()

    def wait_healthy(self, gone: int = -1, timeout: float = RECOVERY_TIMEOUT) -> float | None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.healthy(gone):
                return time.monotonic() - start
            time.sleep(0.05)
        return None

    def keeper(self) -> None:
        while not self.stop_keeper.wait(0.1):
            self.serve.keep()

    # -------------------------------------------------------------- setup

    def setup(self) -> None:
        self.serve.start()
        if self.wait_healthy(timeout=60) is None:
            raise RuntimeError("the server did not start:\n" + self.log_tail())
        one = proxy(self.serve.url)
        s = self.serve.session
        for i in range(self.args.hosts):
            driver = self.args.driver
            ok, hid, *_ = one.one.host.allocate(s, f"storm-{i}", driver, driver, -1)
            assert ok, hid
            if driver == "dummy" and self.args.delay > 0:
                one.one.host.update(s, hid, f'DUMMY_DELAY="{self.args.delay}"', 1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = one.one.hostpool.info(s)[1]
            if all(int(h.findtext("HOST_SHARE/MAX_CPU") or 0) > 0
                   for h in ET.fromstring(body).findall("HOST")):
                return
            time.sleep(0.2)
        raise RuntimeError("hosts were not monitored")

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = (self.tmp / "server.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    # -------------------------------------------------------------- the storm itself

    def clients(self) -> list[mp.process.BaseProcess]:
        ctx = mp.get_context("spawn")
        n = self.args.clients
        procs = []
        for i in range(n):
            conf = ClientConf(i, self.serve.url, self.serve.session,
                              self.args.vms // n + (i < self.args.vms % n), self.args.seconds,
                              self.rng.getrandbits(32), str(self.tmp / f"client-{i}.jsonl"),
                              self.args.cpu, self.args.memory, self.args.think)
            p = ctx.Process(target=client_main, args=(conf,), name=f"storm-client-{i}")
            p.start()
            procs.append(p)
        return procs

    def target(self, kind: str) -> int | None:
        roles = self.serve.roles()
        if roles is None:
            return None
        if kind == "worker":
            return self.rng.choice(roles.workers) if roles.workers else None
        return {"core": roles.core, "master": roles.master,
                "supervisor": roles.supervisor}[kind]

    def kill_loop(self, t0: float) -> None:
        lo, hi = self.args.kill_gap
        end = t0 + self.args.seconds
        order: list[str] = []
        while True:
            gap = self.rng.uniform(lo, hi)
            if time.monotonic() + gap >= end:
                break
            time.sleep(gap)
            if not order:  # each kind once per round, in a random order: every kind is hit
                order = self.rng.sample(self.args.kinds, len(self.args.kinds))
            kind = order.pop()
            pid = self.target(kind)
            if pid is None:
                continue
            self.serve.cause = kind
            at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            recovery = self.wait_healthy(pid)
            self.kills.append(Kill(kind, pid, at - t0, recovery))
            self.progress(f"{at - t0:6.1f} s  killed {kind:<10} {pid:>7}  recovered in "
                          + (f"{recovery:.2f} s" if recovery is not None else "never"))
            if recovery is None:
                break

    def progress(self, line: str) -> None:
        if not self.args.quiet:
            print(line, flush=True)

    def calm(self) -> tuple[float, bool]:
        """Wait until nothing is transient, pending or unfinished (at most ``--calm`` s)."""
        start = time.monotonic()
        while time.monotonic() - start < self.args.calm:
            try:
                transient, pending = unsettled(self.db.vm_states())
                if transient == 0 and pending == 0 and self.db.unfinished() == 0:
                    return time.monotonic() - start, True
            except Exception:  # noqa: BLE001 - busy database: look again
                pass
            time.sleep(0.5)
        return time.monotonic() - start, False

    def run(self) -> dict[str, Any]:
        self.setup()
        keeper = threading.Thread(target=self.keeper, daemon=True)
        keeper.start()
        t0 = time.monotonic()
        procs = self.clients()
        try:
            self.kill_loop(t0)
            for p in procs:
                p.join(max(1.0, t0 + self.args.seconds + RECOVERY_TIMEOUT - time.monotonic()))
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                    p.join(5)
        storm_s = time.monotonic() - t0
        if self.wait_healthy() is None:
            raise RuntimeError("the server did not come back after the storm:\n"
                               + self.log_tail())
        settle_s, settled = self.calm()
        report = self.check()
        report.update(storm_seconds=round(storm_s, 1), calm_seconds=round(settle_s, 1),
                      settled=settled, serve_starts=self.serve.starts,
                      orphans=self.serve.orphans, kills=self.kill_figures(),
                      config={k: v for k, v in vars(self.args).items() if k != "json"})
        return report

    # -------------------------------------------------------------- the figures

    def acks(self) -> tuple[dict[int, str], Counter[str]]:
        acked: dict[int, str] = {}
        stats: Counter[str] = Counter()
        for path in sorted(self.tmp.glob("client-*.jsonl")):
            for line in path.read_text().splitlines():
                rec = json.loads(line)
                if "stats" in rec:
                    for k, v in rec["stats"].items():
                        if isinstance(v, int):
                            stats[k] += v
                        else:
                            stats.update({f"action_{a}": n for a, n in v.items()})
                else:
                    acked[int(rec["id"])] = rec["key"]
        return acked, stats

    def check(self) -> dict[str, Any]:
        one = proxy(self.serve.url)
        s = self.serve.session
        vms = ET.fromstring(one.one.vmpool.infoextended(s, -2, -1, -1, -2)[1]).findall("VM")
        by_id: dict[int, ET.Element] = {int(v.findtext("ID") or -1): v for v in vms}
        keys: Counter[str] = Counter(v.findtext("USER_TEMPLATE/STORM_KEY") or "" for v in vms)
        acked, stats = self.acks()
        lost = [i for i, key in acked.items()
                if i not in by_id or by_id[i].findtext("USER_TEMPLATE/STORM_KEY") != key]
        duplicated = sum(n - 1 for k, n in keys.items() if k and n > 1)
        states = [(int(v.findtext("STATE") or -1), int(v.findtext("LCM_STATE") or -1))
                  for v in vms]
        transient, pending = unsettled(states)
        failed = sum(1 for st, lc in states if st == VmState.ACTIVE and lc in FAILURE_STATES)
        hosts = ET.fromstring(one.one.hostpool.info(s)[1]).findall("HOST")
        return {
            "acknowledged": len(acked), "acknowledged_by_lookup": stats["acked_by_lookup"],
            "vms": len(vms), "lost": len(lost), "lost_ids": lost[:20],
            "duplicated": duplicated, "stuck_transient": transient, "pending": pending,
            "failure_states": failed, "unfinished_operations": self.db.unfinished(),
            "failed_operations": self.db.failed(),
            "final_states": dict(Counter(state_label(st, lc) for st, lc in states)),
            "hosts": len(hosts), "hosts_capacity_wrong": capacity_errors(hosts, vms),
            "client_calls": stats["calls"], "client_refused": stats["refused"],
            "client_transport_errors": stats["transport_errors"],
            "client_actions": {k[7:]: v for k, v in stats.items() if k.startswith("action_")},
        }

    def kill_figures(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for kind in self.args.kinds:
            times = [k.recovery for k in self.kills if k.kind == kind]
            done = sorted(t for t in times if t is not None)
            out[kind] = {"kills": len(times), "never_recovered": len(times) - len(done),
                         "p50_s": round(statistics.median(done), 2) if done else None,
                         "max_s": round(done[-1], 2) if done else None}
        return out

    def close(self, keep: bool) -> None:
        self.stop_keeper.set()
        self.serve.stop()
        self.db.close()
        if self.pg_name and self.args.db:
            harness._pg_drop(self.args.db, self.pg_name)
        if keep:
            print(f"data, logs and client records kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def state_label(state: int, lcm: int) -> str:
    if state == VmState.ACTIVE:
        with contextlib.suppress(ValueError):
            return Lcm(lcm).name
    with contextlib.suppress(ValueError):
        return VmState(state).name
    return f"{state}/{lcm}"


def capacity_errors(hosts: list[ET.Element], vms: list[ET.Element]) -> list[dict[str, Any]]:
    """Hosts whose HOST_SHARE differs from what the VMs placed on them take (CPU x 100 and
    MEMORY in KB, as oned counts them)."""
    want: dict[int, list[int]] = {}
    for v in vms:
        hid = v.findtext("HISTORY_RECORDS/HISTORY[last()]/HID")
        if hid is None or int(v.findtext("STATE") or -1) not in HOLDING:
            continue
        sums = want.setdefault(int(hid), [0, 0, 0])
        sums[0] += round(float(v.findtext("TEMPLATE/CPU") or 0) * 100)
        sums[1] += int(float(v.findtext("TEMPLATE/MEMORY") or 0)) * 1024
        sums[2] += 1
    wrong = []
    for h in hosts:
        hid = int(h.findtext("ID") or -1)
        have = [int(h.findtext(f"HOST_SHARE/{k}") or 0)
                for k in ("CPU_USAGE", "MEM_USAGE", "RUNNING_VMS")]
        if have != want.get(hid, [0, 0, 0]):
            wrong.append({"host": hid, "share": have, "vms": want.get(hid, [0, 0, 0])})
    return wrong


def bad(report: dict[str, Any]) -> bool:
    """Something a crash must never cause."""
    return bool(report["lost"] or report["duplicated"] or report["stuck_transient"]
                or report["pending"] or report["unfinished_operations"]
                or report["failure_states"] or report["failed_operations"]
                or report["hosts_capacity_wrong"]
                or any(k["never_recovered"] for k in report["kills"].values()))


def print_report(r: dict[str, Any]) -> None:
    c = r["config"]
    print(f"\ncrash storm: {r['storm_seconds']} s, {c['clients']} clients, {c['hosts']} "
          f"{c['driver']} hosts, {c['workers']} API workers; calm {r['calm_seconds']} s "
          f"({'settled' if r['settled'] else 'NOT settled'}); serve started "
          f"{r['serve_starts']} times")
    print(f"  VMs acknowledged             {r['acknowledged']:>6}  "
          f"({r['acknowledged_by_lookup']} found by key after a lost reply); {r['vms']} VMs")
    for label, key in (("acknowledged VMs lost", "lost"), ("VMs duplicated", "duplicated"),
                       ("VMs stuck in a transient state", "stuck_transient"),
                       ("VMs left PENDING", "pending"), ("VMs in a failure state",
                                                         "failure_states"),
                       ("operations unfinished", "unfinished_operations")):
        print(f"  {label:<29}{r[key]:>6}")
    print(f"  operations failed            {sum(r['failed_operations'].values()):>6}  "
          f"{r['failed_operations'] or ''}")
    print(f"  hosts with wrong capacity    {len(r['hosts_capacity_wrong']):>6}  of {r['hosts']}")
    print(f"  final states                 {r['final_states']}")
    print(f"  client calls {r['client_calls']}, refused by state {r['client_refused']}, "
          f"transport errors {r['client_transport_errors']}; actions {r['client_actions']}")
    print("  kill         count  recovery p50   max  never")
    for kind, k in r["kills"].items():
        p50 = "-" if k["p50_s"] is None else f"{k['p50_s']:.2f} s"
        mx = "-" if k["max_s"] is None else f"{k['max_s']:.2f} s"
        print(f"  {kind:<12}{k['kills']:>6}  {p50:>12} {mx:>8} {k['never_recovered']:>5}")
    orphans = r["orphans"]
    print(f"  orphans killed before a restart: {sum(o['processes'] for o in orphans)} "
          f"processes after {len(orphans)} of the dead serves "
          f"({Counter(o['after'] for o in orphans)})")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--seconds", type=float, default=120, help="length of the storm")
    p.add_argument("--calm", type=float, default=90,
                   help="at most this long after the storm for everything to settle")
    p.add_argument("--vms", type=int, default=1000, help="VMs allocated over the storm")
    p.add_argument("--hosts", type=int, default=4)
    p.add_argument("--driver", choices=("dummy", "sim"), default="dummy",
                   help="sim hosts forget their VMs when the core dies (the model lives in "
                        "the core): the monitor then powers those VMs off")
    p.add_argument("--delay", type=float, default=0.2,
                   help="DUMMY_DELAY of dummy hosts: seconds each deploy and shutdown takes, "
                        "so kills find VMs in transient states")
    p.add_argument("--clients", type=int, default=4, help="client processes")
    p.add_argument("--workers", type=int, default=3, help="API workers")
    p.add_argument("--kill-gap", type=float, nargs=2, default=(2.0, 5.0), metavar=("MIN", "MAX"),
                   help="seconds between the recovery from one kill and the next kill")
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS),
                   help="what is killed (e.g. only the core, to time its recovery alone)")
    p.add_argument("--cpu", type=float, default=0.01, help="CPU of each VM")
    p.add_argument("--memory", type=int, default=16, help="MEMORY (MB) of each VM")
    p.add_argument("--think", type=float, default=0.02, help="client pause between calls (s)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--db", help="a PostgreSQL URL to create the database next to (default "
                                "SQLite in the data directory)")
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--keep", action="store_true",
                   help="keep the data directory and logs (kept anyway when a figure is bad)")
    p.add_argument("--quiet", action="store_true", help="no line per kill")
    args = p.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(2**32)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    storm = Storm(args)
    report: dict[str, Any] | None = None

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        report = storm.run()
    finally:
        failed = report is None or bad(report)
        storm.close(keep=args.keep or failed)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
