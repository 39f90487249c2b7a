"""The database: one peewee model per object kind, SQLite embedded by default, PostgreSQL chosen
by URL. Every object keeps its structured document (``doc``, JSON) and its rendered XML bodies,
so info and pool calls read stored text instead of rendering."""

from __future__ import annotations

import json
import os
from typing import Any

import peewee as pw
from playhouse.db_url import connect, parse
from playhouse.shortcuts import ReconnectMixin

database = pw.DatabaseProxy()


class JSONField(pw.TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, separators=(",", ":"))

    def python_value(self, value: Any) -> Any:
        return None if value is None else json.loads(value)


class Base(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class PoolControl(Base):
    """Last id handed out per pool: ids are never reused, even after a delete."""

    tablename = pw.CharField(primary_key=True)
    last_oid = pw.IntegerField()


class Meta(Base):
    key = pw.CharField(primary_key=True)
    value = pw.TextField()


class PoolObject(Base):
    oid = pw.IntegerField(primary_key=True)
    name = pw.CharField(index=True)
    doc = JSONField()
    body = pw.TextField()


class OwnedObject(PoolObject):
    uid = pw.IntegerField(index=True)
    gid = pw.IntegerField(index=True)
    # The nine permission bits as one int (OWNER_U is the highest), for filtering in SQL.
    perms = pw.IntegerField()


class User(PoolObject):
    gid = pw.IntegerField()
    password = pw.CharField()
    auth_driver = pw.CharField()
    enabled = pw.BooleanField()
    groups = pw.CharField()  # comma separated group ids, primary first


class Group(PoolObject):
    pass


class Cluster(PoolObject):
    pass


class Datastore(OwnedObject):
    pass


class Host(PoolObject):
    state = pw.IntegerField()
    cluster_id = pw.IntegerField(index=True)
    im_mad = pw.CharField()
    vm_mad = pw.CharField()
    last_monitored = pw.IntegerField(default=0)  # the monitor finds due hosts by it


class VMTemplate(OwnedObject):
    pass


class Image(OwnedObject):
    state = pw.IntegerField(index=True)
    datastore_id = pw.IntegerField(index=True)


class VM(OwnedObject):
    state = pw.IntegerField(index=True)
    lcm_state = pw.IntegerField()
    host_id = pw.IntegerField(index=True)
    resched = pw.IntegerField(default=0)
    short_body = pw.TextField()
    # Full body with only the last history record (vmpool.infoextended); NULL when equal to body.
    ext_body = pw.TextField(null=True)


class Acl(Base):
    oid = pw.IntegerField(primary_key=True)
    user = pw.BigIntegerField()
    resource = pw.BigIntegerField()
    rights = pw.BigIntegerField()
    zone = pw.BigIntegerField()


class Operation(Base):
    """A driver action the core must run for a VM or an image, written in the same transaction
    as the state change that asked for it. Executed in id order per object (``kind``, ``vm_id``);
    never lost across a crash."""

    id = pw.AutoField()
    # The object the operation is for: a VM ("vm") or an image ("image", whose id is in vm_id).
    # One queue and one executor for both, so an image's copy and its delete are ordered the
    # same way as a VM's prolog and its cleanup.
    kind = pw.CharField(default="vm")
    vm_id = pw.IntegerField(index=True)
    host_id = pw.IntegerField()
    action = pw.CharField()
    args = JSONField(default=dict)
    status = pw.CharField(default="queued", index=True)  # queued, running, done, failed
    created = pw.FloatField()
    started = pw.FloatField(null=True)
    finished = pw.FloatField(null=True)
    result = pw.TextField(null=True)
    # The VM's state_seq this operation expects: the VM's when queued, then the one its own
    # last step wrote. A VM whose state_seq differs was moved on by someone else.
    state_seq = pw.IntegerField(null=True)


class Lease(Base):
    """Which core process is active. The holder renews ``expires``; another may take over once it
    has passed."""

    name = pw.CharField(primary_key=True)
    holder = pw.CharField()
    expires = pw.FloatField()


class HostMonitoring(Base):
    host_id = pw.IntegerField(index=True)
    timestamp = pw.IntegerField()
    body = pw.TextField()


class VMMonitoring(Base):
    vm_id = pw.IntegerField(index=True)
    timestamp = pw.IntegerField()
    body = pw.TextField()


MODELS: list[type[Base]] = [
    PoolControl, Meta, User, Group, Cluster, Datastore, Host, VMTemplate, VM, Acl, Operation,
    Lease, HostMonitoring, VMMonitoring, Image,
]


class ReconnectingPostgres(ReconnectMixin, pw.PostgresqlDatabase):  # type: ignore[misc]
    """PostgreSQL that opens a new connection when the server dropped the old one (a restart
    of PostgreSQL must not leave every API worker failing until it is restarted too). Only
    outside a transaction: a transaction cut off fails, and the next call reconnects."""

    reconnect_errors = (
        (pw.OperationalError, "server closed the connection"),
        (pw.OperationalError, "terminating connection"),
        (pw.InterfaceError, "connection already closed"),
    )


def is_sqlite() -> bool:
    return isinstance(database.obj, pw.SqliteDatabase)


def open_database(url: str) -> pw.Database:
    """Bind the models to the database at ``url`` (``sqlite:///path`` or ``postgresql://…``)
    and create missing tables."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        db: pw.Database = pw.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": 10000,
                "synchronous": "normal",  # with WAL: durable at checkpoint, never corrupt
                "cache_size": -32000,
                "foreign_keys": 1,
            },
            check_same_thread=False,
        )
    elif url.startswith(("postgresql://", "postgres://")):
        db = ReconnectingPostgres(**parse(url))
    else:
        db = connect(url)
    database.initialize(db)
    db.connect(reuse_if_open=True)
    with db.atomic():
        if not isinstance(db, pw.SqliteDatabase):
            # Workers and the core start together: on PostgreSQL, concurrent CREATE INDEX IF
            # NOT EXISTS deadlock, so schema changes take one cluster-wide lock in turn.
            db.execute_sql("SELECT pg_advisory_xact_lock(2633)")
        db.create_tables(MODELS, safe=True)
        _add_missing_columns(db)
    return db


def retrying(fn: Any, *args: Any, attempts: int = 5) -> Any:
    """Run ``fn`` (which opens its own transaction) again after a retryable failure."""
    for attempt in range(attempts):
        try:
            return fn(*args)
        except Exception as exc:
            if attempt + 1 == attempts or not is_retryable(exc):
                raise
    return None


def is_retryable(exc: Exception) -> bool:
    """A PostgreSQL deadlock or serialization failure: the transaction was rolled back and can
    simply run again (two calls locked the same rows in different orders)."""
    text = str(exc)
    return isinstance(exc, pw.OperationalError) and (
        "deadlock detected" in text or "could not serialize" in text)


def _add_missing_columns(db: pw.Database) -> None:
    """Columns added after a database was created (``create_tables`` skips existing tables)."""
    from playhouse.migrate import SchemaMigrator, migrate

    have = {c.name for c in db.get_columns(Operation._meta.table_name)}
    for column in (Operation.kind, Operation.state_seq):
        if column.name not in have:
            migrate(SchemaMigrator.from_database(db).add_column(Operation._meta.table_name,
                                                                column.name, column))


def write_transaction() -> Any:
    """A transaction that takes the write lock up front on SQLite, so two workers never both
    read then fail to upgrade; on PostgreSQL a plain transaction with row locks."""
    if is_sqlite():
        return database.obj.atomic("IMMEDIATE")
    return database.obj.atomic()


_raw_sql: dict[str, str] = {}


def _cursor(sql: str, params: tuple[Any, ...]) -> Any:
    db = database.obj
    text = _raw_sql.get(sql)
    if text is None:
        text = _raw_sql[sql] = sql.replace("?", db.param)
    return db.execute_sql(text, params)


def raw(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a hand-written query on the hot paths, where building it with the ORM would cost
    more than the database itself. ``?`` placeholders; quote table names ("user", "vm")."""
    return _cursor(sql, params).fetchall()


def execute(sql: str, *params: Any) -> None:
    """Like :func:`raw`, for a statement that returns no rows."""
    _cursor(sql, params)


def next_oid(table: str) -> int:
    """Reserve the next id of a pool (inside the caller's write transaction). One atomic
    UPDATE … RETURNING, so two concurrent transactions can never get the same id."""
    execute("INSERT INTO pool_control (tablename, last_oid) VALUES (?, -1) "
        "ON CONFLICT (tablename) DO NOTHING", table)
    return int(raw("UPDATE pool_control SET last_oid = last_oid + 1 WHERE tablename = ? "
                   "RETURNING last_oid", table)[0][0])


def bump_oid(table: str, at_least: int) -> None:
    row = PoolControl.get_or_none(PoolControl.tablename == table)
    if row is None:
        PoolControl.create(tablename=table, last_oid=at_least)
    elif row.last_oid < at_least:
        PoolControl.update(last_oid=at_least).where(PoolControl.tablename == table).execute()
