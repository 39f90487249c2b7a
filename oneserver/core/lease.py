"""Which core process is active: a row in the database that one holder renews. Two servers on
one PostgreSQL never schedule or run operations twice; a crashed holder is replaced once its
lease expires."""

from __future__ import annotations

import os
import socket
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
        if row.holder != holder and row.expires > now and not _dead_here(row.holder):
            return False
        db.Lease.update(holder=holder, expires=now + duration).where(
            db.Lease.name == NAME).execute()
        return True


def release(holder: str) -> None:
    with db.write_transaction():
        db.Lease.delete().where((db.Lease.name == NAME) & (db.Lease.holder == holder)).execute()


def _dead_here(holder: str) -> bool:
    """A holder on this machine whose process is gone: take over at once instead of waiting
    for its lease to expire (a restarted core resumes within a second)."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
