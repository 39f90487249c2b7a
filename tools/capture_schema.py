"""Capture a release's database as SQL, for the schema-migration test.

Usage: python tools/capture_schema.py VERSION [--pg postgresql://user:pw@127.0.0.1/db]

Run from the checkout of a release (it starts that checkout's ``oneserver serve``): creates a few
objects of every kind over XML-RPC (a user and a group, an ACL rule, a dummy host, a VM template,
a VM on hold and a VM that ran and was terminated, a VM left running), stops the server and
writes the database as SQL to ``tests/fixtures/schema/VERSION-sqlite.sql`` (and, with ``--pg``,
``VERSION-postgresql.sql``, from a database created and dropped on that server).
tests/api/test_schema_migration.py starts the current code on each of them. oneadmin's password
in the captured databases is the test suite's (``testpass``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
import xmlrpc.client
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "schema"
PASSWORD = "testpass"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Client:
    def __init__(self, url: str) -> None:
        self.proxy = xmlrpc.client.ServerProxy(url)

    def __call__(self, method: str, *params: Any) -> Any:
        ok, value, *_ = getattr(self.proxy, method)(f"oneadmin:{PASSWORD}", *params)
        if not ok:
            raise RuntimeError(f"{method}: {value}")
        return value

    def wait_state(self, vm: int, state: int, lcm: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = self("one.vm.info", vm)
            if (f"<STATE>{state}</STATE>" in body and f"<LCM_STATE>{lcm}</LCM_STATE>" in body):
                return
            time.sleep(0.2)
        raise RuntimeError(f"VM {vm} did not reach {state}/{lcm}")


def _populate(call: _Client) -> None:
    gid = call("one.group.allocate", "devs")
    uid = call("one.user.allocate", "alice", "alicepw", "core", [gid])
    call("one.user.update", uid, 'SSH_PUBLIC_KEY="ssh-ed25519 AAAA alice"', 1)
    # @devs may USE every VM template (user @gid, resource TEMPLATE/*, rights USE).
    call("one.acl.addrule", f"{0x200000000 | gid:x}", f"{0x20000000000 | 0x400000000:x}", "1", "")
    hid = call("one.host.allocate", "host-a", "dummy", "dummy", -1)
    tid = call("one.template.allocate",
               'NAME="small"\nCPU=0.1\nMEMORY=64\nDESCRIPTION="a small VM"\n')
    call("one.template.chown", tid, uid, gid)
    held = call("one.vm.allocate", 'NAME="held"\nCPU=0.1\nMEMORY=64\nDISK=[SIZE=10]\n', True)
    call("one.vm.update", held, 'NOTE="kept on hold"\nOWNER="ops"', 1)
    place = f'CPU=0.1\nMEMORY=64\nSCHED_REQUIREMENTS="ID = {hid}"\n'
    done = call("one.vm.allocate", 'NAME="done"\n' + place, False)
    running = call("one.vm.allocate", 'NAME="running"\n' + place, False)
    call.wait_state(done, 3, 3)
    call.wait_state(running, 3, 3)
    call("one.vm.action", "terminate-hard", done)
    call.wait_state(done, 6, 0)


def _serve(data: Path, db_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    auth = data.parent / "one_auth"
    auth.write_text(f"oneadmin:{PASSWORD}\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneserver", "serve", "--port", str(port), "--data", str(data),
         "--db", db_url, "--workers", "1"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT,
        env=dict(os.environ, ONE_AUTH=str(auth)))
    url = f"http://127.0.0.1:{port}/RPC2"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text())
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            xmlrpc.client.ServerProxy(url).one.system.version("")
            return proc, url
        time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(log.read_text())


def _capture(db_url: str, tmp: Path) -> None:
    proc, url = _serve(tmp / "data", db_url, tmp / "server.log")
    try:
        _populate(_Client(url))
    finally:
        proc.terminate()
        proc.wait(30)


def _pg_dump(url: str) -> str:
    from urllib.parse import urlparse
    u = urlparse(url)
    out = subprocess.run(
        ["pg_dump", "--no-owner", "--no-privileges", "--column-inserts", "-h", u.hostname or "",
         "-p", str(u.port or 5432), "-U", u.username or "", u.path.lstrip("/")],
        env=dict(os.environ, PGPASSWORD=u.password or ""), check=True, capture_output=True,
        text=True).stdout
    # psql meta-commands (\restrict in recent pg_dump) are not SQL: the test runs plain SQL.
    return "".join(line for line in out.splitlines(keepends=True) if not line.startswith("\\"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("version", help="the release, e.g. 0.1.0")
    ap.add_argument("--pg", help="a PostgreSQL URL whose server may create databases")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="capture_schema_") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "data").mkdir()
        path = tmp / "data" / "one.db"
        _capture(f"sqlite:///{path}", tmp)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sql = "\n".join(conn.iterdump()) + "\n"
        (OUT / f"{args.version}-sqlite.sql").write_text(sql)
    if args.pg:
        import psycopg2
        name = f"capture_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(args.pg)
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {name}")
        url = re.sub(r"/[^/]*$", "/" + name, args.pg)
        try:
            with tempfile.TemporaryDirectory(prefix="capture_schema_") as tmp_name:
                (Path(tmp_name) / "data").mkdir()
                _capture(url, Path(tmp_name))
            (OUT / f"{args.version}-postgresql.sql").write_text(_pg_dump(url))
        finally:
            admin.cursor().execute(f"DROP DATABASE IF EXISTS {name}")
            admin.close()
    print(f"written to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
