"""Which core process is active: a row in the database that one holder renews. Two servers on
one PostgreSQL never schedule or run operations twice; a crashed holder is replaced once its
lease expires."""

from __future__ import annotations

import time

from oneserver import db

NAME = "core"


def acquire(holder: str, duration: float) -> bool:
    """Take or renew the lease. True when ``holder`` holds it until now + duration."""
    now = time.time()
    with db.write_transaction():
        row = db.Lease.get_or_none(db.Lease.name == NAME)
        if row is None:
            db.Lease.create(name=NAME, holder=holder, expires=now + duration)
            return True
        if row.holder != holder and row.expires > now:
            return False
        db.Lease.update(holder=holder, expires=now + duration).where(
            db.Lease.name == NAME).execute()
        return True


def release(holder: str) -> None:
    with db.write_transaction():
        db.Lease.delete().where((db.Lease.name == NAME) & (db.Lease.holder == holder)).execute()
