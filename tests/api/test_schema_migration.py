"""A user who upgrades keeps the database: the current code starts on the databases of earlier
releases (``tests/fixtures/schema/RELEASE-BACKEND.sql``, captured by tools/capture_schema.py
from a freshly created and used database of that release), migrates them forward once at
start-up, and their objects are all there. A schema newer than the code stops the start with
a clear message; API workers only check the version and never create or change anything."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import unescape

import peewee as pw
import pytest
from playhouse.db_url import connect

from oneserver import db, migrations, wsgi
from tests.conftest import PG_ENV, ROOT, Server, answering, free_port, stop_server

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "schema"
RELEASES = sorted({p.name.split("-")[0] for p in FIXTURES.glob("*.sql")})


def backends() -> list:
    pg = pytest.param("postgresql", marks=pytest.mark.skipif(
        not os.environ.get(PG_ENV), reason=f"PostgreSQL backend not configured: set {PG_ENV}"))
    return ["sqlite", pg]


# ----------------------------------------------------------------------------- databases

@contextlib.contextmanager
def empty_database(backend: str, tmp: Path) -> Iterator[str]:
    """The URL of a new, empty database; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'data' / 'one.db'}"
        return
    import psycopg2
    name = f"oneserver_migrate_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(os.environ[PG_ENV])
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield os.environ[PG_ENV].rsplit("/", 1)[0] + "/" + name
    finally:
        with contextlib.suppress(pw.DatabaseError):
            db.database.close()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def run_sql(url: str, sql: str) -> list[tuple]:
    """Run SQL on the database behind ``url`` with the backend's own driver, not peewee."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path)) as conn:
            if sql.lstrip().upper().startswith("SELECT"):
                return conn.execute(sql).fetchall()
            conn.executescript(sql)
            return []
    import psycopg2
    with contextlib.closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def load_release(release: str, backend: str, url: str) -> None:
    run_sql(url, (FIXTURES / f"{release}-{backend}.sql").read_text())


def recorded_version(url: str) -> str | None:
    rows = run_sql(url, f"SELECT value FROM meta WHERE key = '{db.VERSION_KEY}'")
    return rows[0][0] if rows else None


def schema(url: str) -> dict[str, tuple[set, set]]:
    """Per table: its columns (name, type, nullable, primary key) and indexes (name,
    columns, unique), as peewee reads them from the database."""
    with contextlib.closing(connect(url)) as database:
        return {t: ({(c.name, c.data_type.lower(), c.null, c.primary_key)
                     for c in database.get_columns(t)},
                    {(i.name, tuple(i.columns), i.unique) for i in database.get_indexes(t)})
                for t in database.get_tables()}


# ----------------------------------------------------------------------------- server

def serve(tmp: Path, url: str, backend: str) -> Server:
    """``oneserver serve`` on a database that already exists (it keeps its passwords)."""
    (tmp / "data").mkdir(exist_ok=True)
    port = free_port()
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [sys.executable, "-m", "oneserver", "serve", "--port", str(port), "--data",
         str(tmp / "data"), "--db", url, "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    server = Server(f"http://127.0.0.1:{port}/RPC2", url, tmp / "data", backend, proc)
    return answering(server, tmp / "server.log", timeout=60)


def stop(server: Server) -> None:
    server.backend = "sqlite"  # the database is this module's to drop, not stop_server's
    stop_server(server)


def body(server: Server, method: str, oid: int, session: str | None = None) -> str:
    ok, value, *_ = server.call(method, oid, session=session)
    assert ok, value
    return value


def start_command(command: str, tmp: Path, url: str) -> subprocess.CompletedProcess[str]:
    """``oneserver COMMAND`` that is expected to stop at start-up."""
    argv = [sys.executable, "-m", "oneserver", command, "--data", str(tmp / "data"), "--db", url]
    if command == "serve":
        argv += ["--port", str(free_port())]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=ROOT)


# ----------------------------------------------------------------------------- tests

@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("release", RELEASES)
def test_a_release_database_is_migrated_and_keeps_its_objects(
        release: str, backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url, empty_database(
            backend, tmp_path / "fresh") as fresh:
        load_release(release, backend, url)
        stored = {table: run_sql(url, f'SELECT body FROM "{table}" WHERE oid = 0')[0][0]
                  for table in ("vm", "vm_template", "user")}
        assert recorded_version(url) != str(db.SCHEMA_VERSION)
        server = serve(tmp_path, url, backend)
        try:
            assert recorded_version(url) == str(db.SCHEMA_VERSION)
            # The objects and their stored bodies came through untouched.
            assert body(server, "one.vm.info", 0) == unescape(stored["vm"])
            assert body(server, "one.template.info", 0) == unescape(stored["vm_template"])
            assert body(server, "one.user.info", 0) == unescape(stored["user"])
            held, alice = body(server, "one.vm.info", 0), body(server, "one.user.info", 2)
            assert "<NOTE><![CDATA[kept on hold]]></NOTE>" in held and "<STATE>2</STATE>" in held
            assert "<NAME>alice</NAME>" in alice and "<GID>100</GID>" in alice
            assert "<STATE>6</STATE>" in body(server, "one.vm.info", 1)
            assert "<NAME>host-a</NAME>" in body(server, "one.host.info", 0)
            assert "<ID>5</ID>" in server.call("one.acl.info")[1]
            # Passwords too: alice logs in and sees her template.
            assert "<NAME>small</NAME>" in body(server, "one.template.info", 0,
                                                session="alice:alicepw")
            # Ids go on from where the release left them, and the core works the old queue.
            ok, vm, *_ = server.call("one.vm.allocate", 'NAME="after"\nCPU=0.1\nMEMORY=64', True)
            assert ok and vm == 3, vm
            assert server.call("one.vm.action", "terminate-hard", 2)[0]
            server.wait_vm(2, 6, 0)
        finally:
            stop(server)
        db.prepare_schema(fresh)
        assert schema(url) == schema(fresh), "a migrated database must equal a new one"


@pytest.mark.parametrize("backend", backends())
def test_a_newer_schema_stops_the_start(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        db.prepare_schema(url)
        newer = str(db.SCHEMA_VERSION + 1)
        run_sql(url, f"UPDATE meta SET value = '{newer}' WHERE key = '{db.VERSION_KEY}'")
        for command in ("serve", "core"):
            done = start_command(command, tmp_path, url)
            assert done.returncode != 0, done
            assert f"the database schema is version {newer}, newer than this oneserver " \
                   f"knows ({db.SCHEMA_VERSION})" in done.stderr, done.stderr
            assert "Traceback" not in done.stderr, done.stderr
        assert recorded_version(url) == newer


@pytest.mark.parametrize("backend", backends())
def test_a_worker_only_checks_the_schema(backend: str, tmp_path: Path) -> None:
    with empty_database(backend, tmp_path) as url:
        run_sql(url, "CREATE TABLE unrelated (x INTEGER)")  # an empty SQLite file: no tables
        with pytest.raises(db.SchemaError, match="has no oneserver schema"):
            wsgi.setup(str(tmp_path / "data"), url)
        db.database.close()
        assert set(schema(url)) == {"unrelated"}, "a worker created tables"
        load_release(RELEASES[0], backend, url)
        before = schema(url)
        with pytest.raises(db.SchemaError, match="migrates it when it starts"):
            wsgi.setup(str(tmp_path / "data"), url)
        db.database.close()
        assert schema(url) == before, "a worker migrated the schema"


@pytest.mark.parametrize("backend", backends())
def test_each_step_runs_once_in_order(backend: str, tmp_path: Path) -> None:
    ran: list[int] = []

    def step(n: int) -> migrations.Step:
        def add_column(migrator, database) -> None:  # noqa: ANN001
            ran.append(n)
            # Fails if the step ever ran twice on one database: the column is there then.
            migrator.add_column("host", f"note{n}", pw.TextField(null=True)).run()
        return add_column

    future = [*migrations.STEPS, step(1), step(2)]
    with empty_database(backend, tmp_path) as url:
        db.prepare_schema(url)
        db.prepare_schema(url, future[:-1])
        db.prepare_schema(url, future)
        db.prepare_schema(url, future)
        assert ran == [1, 2]
        assert recorded_version(url) == str(len(future))
        columns = {c[0] for c in schema(url)["host"][0]}
        assert {"note1", "note2"} <= columns
        with pytest.raises(db.SchemaError, match="newer than this oneserver knows"):
            db.open_database(url)
        db.database.close()


def test_a_model_changed_without_a_step_stops_the_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    db.prepare_schema(url)
    run_sql(url, "ALTER TABLE vm DROP COLUMN resched")
    with pytest.raises(db.SchemaError, match=re.escape("has no column resched in 'vm'")):
        db.prepare_schema(url)
