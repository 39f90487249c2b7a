"""Start and stop a private ``oneserver serve`` for a tool: free loopback port, data in a temporary
directory, SQLite by default or a fresh database on a PostgreSQL server, an optional ``--etc``
directory and extra ``serve`` flags. Shared by bench_api, sim_hosts, experiment_100x200 and
scale_run (``import harness``: tools/ is sys.path[0] when a tool runs as ``python tools/x.py``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procstat import tree_cpu, tree_stats  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SSH_DRIVERS = (("IM_MAD", "lxc"), ("VM_MAD", "lxc"), ("TM_MAD", "ssh"), ("TM_MAD", "shared"))


def write_etc(dest: Path, ssh_command: str) -> Path:
    """A copy of the project's ``etc/`` whose lxc drivers and ssh/shared TMs reach hosts
    through ``ssh_command`` (``-o ssh_command=…``): the ssh a lab's hosts need is front-end
    configuration, never a host or cluster template attribute. The changed driver blocks are
    appended (the last block of a NAME wins)."""
    from oneserver.settings import read_conf

    shutil.copytree(ROOT / "etc", dest, dirs_exist_ok=True)
    conf = dest / "oned.conf"
    blocks = []
    for block, name in SSH_DRIVERS:
        for vec in read_conf(conf).vectors(block):
            if vec.get("NAME") == name:
                args = f'{vec.get("ARGUMENTS", "")} -o ssh_command={ssh_command}'
                blocks.append(f'{block} = [ NAME = "{name}", EXECUTABLE = '
                              f'"{vec.get("EXECUTABLE", name)}", ARGUMENTS = "{args}" ]')
    with conf.open("a") as f:
        f.write("\n# Reach the hosts through the lab's ssh.\n" + "\n".join(blocks) + "\n")
    return dest


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    session: str
    tmp: Path
    db_url: str
    pg_admin_url: str | None = None
    pg_name: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/RPC2"

    def call(self, method: str, *params: Any) -> Any:
        """One call with xmlrpc.client (for setup); raises on a failure answer."""
        proxy = xmlrpc.client.ServerProxy(self.url)
        ok, value, *_ = getattr(proxy, method)(self.session, *params)
        if not ok:
            raise RuntimeError(f"{method} failed: {value}")
        return value

    def body(self, method: str, *params: Any) -> bytes:
        return xmlrpc.client.dumps((self.session, *params), method).encode()

    def cpu(self) -> float:
        return tree_cpu(self.proc.pid)

    def roles(self) -> dict[str, float]:
        """CPU seconds so far by role: master, workers, core."""
        out = {"master": 0.0, "workers": 0.0, "core": 0.0}
        root = self.proc.pid
        for stat in tree_stats(root):
            if stat.pid == root:
                out["master"] += stat.total
                continue
            try:
                cmd = Path(f"/proc/{stat.pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            out["core" if b"core" in cmd else "workers"] += stat.total
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_create(admin_url: str) -> tuple[str, str]:
    import psycopg2
    name = f"oneserver_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name, name


def _pg_drop(admin_url: str, name: str) -> None:
    import psycopg2
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def start_server(workers: int, db: str | None = None, etc: Path | None = None,
                 extra: list[str] | None = None, prefix: str = "bench_api_",
                 wait_workers: bool = True) -> Server:
    """Start ``oneserver serve`` and wait until it answers (and, with ``wait_workers``, until
    every worker is up, so that their start-up is not measured)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    data = tmp / "data"
    data.mkdir()
    password = secrets.token_hex(12)
    auth = tmp / "one_auth"
    auth.write_text(f"oneadmin:{password}\n")
    pg_name = None
    if db:
        db_url, pg_name = _pg_create(db)
    else:
        db_url = f"sqlite:///{data / 'one.db'}"
    port = free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed by the server's exit
    # Its own session: a Ctrl-C in the terminal reaches us, and we stop the server in order.
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneserver", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data", str(data), "--db", db_url, "--workers", str(workers),
         *(["--etc", str(etc)] if etc else []), *(extra or [])],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT,
        env=dict(os.environ, ONE_AUTH=str(auth)), start_new_session=True)
    log.close()
    server = Server(proc, port, f"oneadmin:{password}", tmp, db_url, db, pg_name)
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("server exited:\n" + (tmp / "server.log").read_text())
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                if server.call("one.system.version"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not answer:\n" + (tmp / "server.log").read_text())
            time.sleep(0.1)
        # Wait for every worker to be up, so that their start-up is not counted.
        deadline = time.monotonic() + 30
        while wait_workers and len(tree_stats(proc.pid)) < workers + 2 \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        if wait_workers:
            time.sleep(1.0)
    except BaseException:
        stop_server(server)
        raise
    return server


def log_tail(server: Server, lines: int = 60) -> str:
    try:
        text = (server.tmp / "server.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_server(server: Server, show_log: bool = False) -> None:
    proc = server.proc
    if proc.poll() is None:
        proc.terminate()  # gunicorn stops its workers; ``serve`` then stops the core
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # anything of its session left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    if show_log and (tail := log_tail(server)):
        print(f"--- end of the server log ---\n{tail}\n---", file=sys.stderr)
    if server.pg_admin_url and server.pg_name:
        try:
            _pg_drop(server.pg_admin_url, server.pg_name)
        except Exception as exc:  # noqa: BLE001 - report, keep cleaning up
            print(f"could not drop database {server.pg_name}: {exc}", file=sys.stderr)
    shutil.rmtree(server.tmp, ignore_errors=True)
