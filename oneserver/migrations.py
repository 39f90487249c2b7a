"""The history of the database schema: ``STEPS[n]`` takes a database from version n to n + 1
with playhouse.migrate (``db.prepare_schema`` runs them in order and records the version).

Version 0 is a database from before versions were recorded: oneserver 0.1.0, or a build before
it. Each step names its tables and columns and defines its fields itself, as they were at its
version, never through the live models: it must do the same thing after the models change again.

To change the schema: change the model in ``db.py`` and append a step here.
tests/api/test_schema_migration.py starts the code on the databases of earlier releases and
checks that they end with the tables, columns and indexes of a new database.
"""

from __future__ import annotations

from collections.abc import Callable

import peewee as pw
from playhouse.migrate import SchemaMigrator, migrate

Step = Callable[[SchemaMigrator, pw.Database], None]


def _columns(db: pw.Database, table: str) -> set[str]:
    return {c.name for c in db.get_columns(table)}


def _unversioned(migrator: SchemaMigrator, db: pw.Database) -> None:
    """0 → 1. oneserver 0.1.0 added the operation queue's newer columns on every start; a
    database last opened by a build older than one of them gets it here."""
    have = _columns(db, "operation")
    wanted = {"kind": pw.CharField(default="vm"), "state_seq": pw.IntegerField(null=True)}
    migrate(*(migrator.add_column("operation", name, field)
              for name, field in wanted.items() if name not in have))


def _double_precision_times(migrator: SchemaMigrator, db: pw.Database) -> None:
    """1 → 2. Times as double precision: PostgreSQL's REAL has 4 bytes and rounds a Unix time
    to a multiple of 128 s, so a core's 15 s lease could read as long expired (a second core
    would take over) and operation times were off by a minute. SQLite's REAL has 8 bytes."""
    if isinstance(db, pw.SqliteDatabase):
        return
    migrate(*(migrator.alter_column_type(table, name, pw.DoubleField())  # the type only
              for table, name in (("lease", "expires"), ("operation", "created"),
                                  ("operation", "started"), ("operation", "finished"))))


def _network_tables(migrator: SchemaMigrator, db: pw.Database) -> None:
    """Virtual networks (``vnet``), security groups (``secgroup``) and network templates
    (``vntemplate``): owned objects like VM templates; a network also keeps its parent (a
    reservation's) and the short body vnpool.info lists."""

    def owned(table: str, **extra: pw.Field) -> type[pw.Model]:
        fields: dict[str, object] = {
            "oid": pw.IntegerField(primary_key=True), "name": pw.CharField(index=True),
            "doc": pw.TextField(), "body": pw.TextField(), "uid": pw.IntegerField(index=True),
            "gid": pw.IntegerField(index=True), "perms": pw.IntegerField(), **extra,
        }
        meta = type("Meta", (), {"database": db, "table_name": table})
        # Named as the table: peewee names the indexes after the model.
        return type(table, (pw.Model,), {**fields, "Meta": meta})

    db.create_tables([
        owned("vnet", parent_id=pw.IntegerField(default=-1, index=True),
              short_body=pw.TextField()),
        owned("secgroup"), owned("vntemplate"),
    ])


def _tenancy_tables(migrator: SchemaMigrator, db: pw.Database) -> None:
    """Zones (``zone``) and VDCs (``vdc``): pool objects with a name, a document and a body.
    Zone 0 and VDC 0 of a database made before them are created at the next start
    (``bootstrap.bootstrap``), as they are on a new one."""

    def pool_object(table: str) -> type[pw.Model]:
        fields: dict[str, object] = {
            "oid": pw.IntegerField(primary_key=True), "name": pw.CharField(index=True),
            "doc": pw.TextField(), "body": pw.TextField(),
        }
        meta = type("Meta", (), {"database": db, "table_name": table})
        # Named as the table: peewee names the indexes after the model.
        return type(table, (pw.Model,), {**fields, "Meta": meta})

    db.create_tables([pool_object("zone"), pool_object("vdc")])


STEPS: list[Step] = [_unversioned, _double_precision_times, _network_tables, _tenancy_tables]
