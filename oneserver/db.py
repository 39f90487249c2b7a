"""The database: one peewee model per object kind, SQLite embedded by default, PostgreSQL chosen
by URL. Every object keeps its structured document (``doc``, JSON) and its rendered XML bodies,
so info and pool calls read stored text instead of rendering.

The schema is created, or migrated forward (``migrations.py``), once at start-up by
:func:`prepare_schema`, before any API worker or core runs; they only check its version
(:func:`open_database`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, TypeVarTuple

import peewee as pw
from playhouse.db_url import connect, parse
from playhouse.migrate import SchemaMigrator
from playhouse.shortcuts import ReconnectMixin

from oneserver.errors import INTERNAL, OneError
from oneserver.migrations import STEPS, Step

log = logging.getLogger("oneserver.db")

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

database = pw.DatabaseProxy()

SCHEMA_VERSION = len(STEPS)
VERSION_KEY = "schema_version"  # the Meta row that records it


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


class VNet(OwnedObject):
    """A virtual network; its address ranges and their leases live in ``doc`` (leases.py)."""

    parent_id = pw.IntegerField(default=-1, index=True)  # the network a reservation is from
    short_body = pw.TextField()  # the vnpool.info body: address ranges without leases

    class Meta:
        table_name = "vnet"


class SecGroup(OwnedObject):
    class Meta:
        table_name = "secgroup"


class VNTemplate(OwnedObject):
    class Meta:
        table_name = "vntemplate"


class Zone(PoolObject):
    pass


class Vdc(PoolObject):
    pass


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
    created = pw.DoubleField()
    started = pw.DoubleField(null=True)
    finished = pw.DoubleField(null=True)
    result = pw.TextField(null=True)
    # The VM's state_seq this operation expects: the VM's when queued, then the one its own
    # last step wrote. A VM whose state_seq differs was moved on by someone else.
    state_seq = pw.IntegerField(null=True)


class Lease(Base):
    """Which core process is active. The holder renews ``expires``; another may take over once it
    has passed."""

    name = pw.CharField(primary_key=True)
    holder = pw.CharField()
    expires = pw.DoubleField()


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
    Lease, HostMonitoring, VMMonitoring, Image, VNet, SecGroup, VNTemplate, Zone, Vdc,
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


class SchemaError(RuntimeError):
    """The database's schema is not the one this code works with; the message says what to do."""


def _bind(url: str) -> pw.Database:
    """Bind the models to the database at ``url`` (``sqlite:///path`` or ``postgresql://…``)
    and connect."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        db: pw.Database = pw.SqliteDatabase(
            path,
            pragmas={
                "journal_mode": "wal",
                # A writer waits this long for another's transaction before "database is
                # locked"; write transactions are short (templates are parsed before them).
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
    return db


def open_database(url: str) -> pw.Database:
    """Bind the models to the database at ``url`` and check that its schema is this code's
    (SchemaError otherwise). Changes nothing: what API workers and the core do on start."""
    db = _bind(url)
    found = _recorded_version(db)
    if found != SCHEMA_VERSION:
        raise SchemaError(_mismatch(found, SCHEMA_VERSION))
    return db


def prepare_schema(url: str, steps: Sequence[Step] = STEPS) -> None:
    """Create a new database's schema, or migrate an existing one to version ``len(steps)``;
    SchemaError for a newer schema than that, or one that does not match the models. Runs at
    start-up, before any API worker or core opens the database; concurrent start-ups on one
    PostgreSQL take turns, and the usual start (nothing to change) takes no lock."""
    db = _bind(url)
    target = len(steps)
    try:
        if _recorded_version(db) != target:
            with _schema_lock(db):
                found = _recorded_version(db)  # another start-up may have done it meanwhile
                if found is None:
                    db.create_tables(MODELS)
                elif found > target:
                    raise SchemaError(_mismatch(found, target))
                elif found < target:
                    migrator = SchemaMigrator.from_database(db)
                    for step in steps[found:]:
                        step(migrator, db)
                    log.warning("database schema migrated from version %d to %d", found, target)
                Meta.insert(key=VERSION_KEY, value=str(target)).on_conflict(
                    conflict_target=[Meta.key], update={Meta.value: str(target)}).execute()
        _check_tables(db, target)
    finally:
        db.close()


@contextlib.contextmanager
def _schema_lock(db: pw.Database) -> Iterator[None]:
    """One transaction that holds the schema alone: SQLite's write lock, or on PostgreSQL a
    cluster-wide advisory lock (concurrent CREATE INDEX IF NOT EXISTS deadlock there)."""
    if isinstance(db, pw.SqliteDatabase):
        with db.atomic("IMMEDIATE"):
            yield
        return
    with db.atomic():
        db.execute_sql("SELECT pg_advisory_xact_lock(2633)")
        yield


def _recorded_version(db: pw.Database) -> int | None:
    """None for a database without oneserver's tables, 0 for one from before versions were
    recorded (it has the tables, not the row)."""
    if not db.table_exists(Meta._meta.table_name):
        return None
    row = Meta.get_or_none(Meta.key == VERSION_KEY)
    return 0 if row is None else int(row.value)


def _mismatch(found: int | None, known: int) -> str:
    if found is None:
        return ("the database has no oneserver schema: `oneserver serve` (or `oneserver core`) "
                "creates it when it starts")
    if found > known:
        return (f"the database schema is version {found}, newer than this oneserver knows "
                f"({known}): a newer oneserver migrated it. Run that version, or restore the "
                f"backup taken before the upgrade (docs/upgrading.md)")
    return (f"the database schema is version {found}, this oneserver needs {known}: "
            f"`oneserver serve` (or `oneserver core`) migrates it when it starts")


def _check_tables(db: pw.Database, version: int) -> None:
    """Every model's table and columns are there: a model changed without a migration step
    stops the start-up here, with its name, instead of failing calls later."""
    tables = set(db.get_tables())
    for model in MODELS:
        table = model._meta.table_name
        if table not in tables:
            raise SchemaError(f"the database schema (version {version}) has no table "
                              f"{table!r}: a model was added without a migration step")
        missing = {f.column_name for f in model._meta.sorted_fields} - {
            c.name for c in db.get_columns(table)}
        if missing:
            raise SchemaError(f"the database schema (version {version}) has no column "
                              f"{', '.join(sorted(missing))} in {table!r}: a model was changed "
                              f"without a migration step")


class Busy(OneError):
    """A call that kept meeting other writers (SQLite's busy timeout ran out, PostgreSQL found
    a deadlock every time): nothing was written, and the caller may simply call again."""

    def __init__(self) -> None:
        super().__init__(INTERNAL, "The database is busy with other writes: nothing was "
                                   "changed, try again.")


def retrying(fn: Callable[[*_Ts], _T], *args: *_Ts, attempts: int = 5) -> _T:
    """Run ``fn`` (which opens its own transaction) again after a retryable failure; Busy
    once ``attempts`` have failed that way."""
    for attempt in range(attempts):
        try:
            return fn(*args)
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if attempt + 1 == attempts:
                raise Busy() from exc
    raise ValueError(f"retrying needs at least one attempt, not {attempts}")


def is_retryable(exc: Exception) -> bool:
    """A failure that rolled the transaction back and that the same call may not meet again:
    a PostgreSQL deadlock or serialization failure (two calls locked the same rows in
    different orders), or SQLite's write lock still held when its busy timeout ran out."""
    text = str(exc)
    return isinstance(exc, pw.OperationalError) and (
        "deadlock detected" in text or "could not serialize" in text
        or "database is locked" in text)


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
    rows: list[tuple[Any, ...]] = _cursor(sql, params).fetchall()
    return rows


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
