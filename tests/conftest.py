"""Shared fixtures: a real ``oneserver serve`` (gunicorn workers + core) on a free loopback
port, once per database backend. SQLite always; PostgreSQL when ONESERVER_TEST_PG is set to an
URL of a database the tests may create databases with (CI sets it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from harness import write_etc  # noqa: E402,F401 - tests give their servers a lab's ssh with it

REFERENCE = ROOT.parent / "shared" / "reference"
# The one test that reads oned's recorded replies and XSDs beside the project: a clone without
# them does not collect it (a skip would fail CI, and a user's run too).
CROSSCHECK = "api/test_reference_crosscheck.py"
collect_ignore = [] if REFERENCE.is_dir() else [CROSSCHECK]
PASSWORD = "testpass"
PG_ENV = "ONESERVER_TEST_PG"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true (returned), or fail after ``timeout``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    db_url: str
    data_dir: Path
    backend: str
    proc: subprocess.Popen
    session: str = f"oneadmin:{PASSWORD}"

    def call(self, method: str, *params: object, session: str | None = None) -> list:
        """A raw XML-RPC call; returns oned's response array."""
        proxy = xmlrpc.client.ServerProxy(self.url, allow_none=False)
        return getattr(proxy, method)(session or self.session, *params)

    def pyone(self, session: str | None = None):  # noqa: ANN201 - pyone has no stubs
        import pyone
        return pyone.OneServer(self.url, session=session or self.session)

    def wait_vm(self, vm_id: int, state: int, lcm: int | None = None,
                timeout: float = 20.0) -> tuple[int, int]:
        """Poll one.vm.info until (STATE, LCM_STATE) matches; returns the last seen."""
        import re
        deadline = time.time() + timeout
        seen = (-1, -1)
        while time.time() < deadline:
            ok, body, *_ = self.call("one.vm.info", vm_id)
            assert ok, body
            st = int(re.search(r"<STATE>(\d+)</STATE>", body).group(1))
            lc = int(re.search(r"<LCM_STATE>(\d+)</LCM_STATE>", body).group(1))
            seen = (st, lc)
            if st == state and (lcm is None or lc == lcm):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"VM {vm_id} stayed in {seen}, wanted {(state, lcm)}")


def _pg_database(base_url: str) -> str:
    """Create a fresh database next to ``base_url``'s and return its URL."""
    import psycopg2
    name = f"oneserver_test_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(base_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return base_url.rsplit("/", 1)[0] + "/" + name


def start_server(tmp: Path, backend: str, extra: list[str] | None = None,
                 env: dict[str, str] | None = None) -> Server:
    """``oneserver serve`` on a free port with ``extra`` flags; ``env`` is added to this
    process's environment (oneadmin's password comes from ``tmp/one_auth``)."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    auth = tmp / "one_auth"
    auth.write_text(f"oneadmin:{PASSWORD}\n")
    if backend == "sqlite":
        db_url = f"sqlite:///{data / 'one.db'}"
    else:
        db_url = _pg_database(os.environ[PG_ENV])
    port = free_port()
    env = dict(os.environ, ONE_AUTH=str(auth), **(env or {}))
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneserver", "serve", "--port", str(port), "--data", str(data),
         "--db", db_url, "--workers", "2", *(extra or [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/RPC2"
    return answering(Server(url, db_url, data, backend, proc), tmp / "server.log")


def answering(server: Server, log: Path, timeout: float = 30) -> Server:
    """``server`` once it answers; RuntimeError with its log if it exits or stays silent."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            if server.call("one.system.version")[0]:
                return server
        time.sleep(0.1)
    server.proc.terminate()
    raise RuntimeError(f"server did not answer: {log.read_text()}")


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(20)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    if server.backend == "postgresql":  # each server had a database of its own
        import psycopg2
        conn = psycopg2.connect(os.environ[PG_ENV])
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {server.db_url.rsplit('/', 1)[1]}")
        conn.close()


def backends() -> list:
    pg = pytest.param("postgresql", marks=pytest.mark.skipif(
        not os.environ.get(PG_ENV),
        reason=f"PostgreSQL backend not configured: set {PG_ENV}=postgresql://user:pw@host/db"))
    return ["sqlite", pg]


@pytest.fixture(scope="session", params=backends())
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    """One server per backend for the whole session; tests create their own objects."""
    srv = start_server(tmp_path_factory.mktemp(f"server-{request.param}"), request.param)
    yield srv
    stop_server(srv)


@pytest.fixture
def one(server: Server):  # noqa: ANN201
    """A pyone client logged in as oneadmin."""
    return server.pyone()


def pytest_report_header(config: pytest.Config) -> str:
    if REFERENCE.is_dir():
        return f"reference: {REFERENCE} (tests/{CROSSCHECK} runs)"
    return f"reference: none at {REFERENCE}, tests/{CROSSCHECK} not collected"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI (ONESERVER_CI=1) a skipped test is a failure: every real-path test must run."""
    if os.environ.get("ONESERVER_CI") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped and session.exitstatus == 0:
        print(f"\nONESERVER_CI=1: {skipped} test(s) skipped; every test must run in CI")
        session.exitstatus = 1
