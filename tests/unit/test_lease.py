"""One active core per database: the lease row."""

from __future__ import annotations

import os
import socket
import time

import pytest

from oneserver import db
from oneserver.core import lease


@pytest.fixture
def database(tmp_path):  # noqa: ANN001, ANN201
    url = f"sqlite:///{tmp_path / 'one.db'}"
    db.prepare_schema(url)
    db.open_database(url)
    yield
    db.database.close()


def test_one_holder_at_a_time(database) -> None:  # noqa: ANN001
    assert lease.acquire("node-a:1", 60)
    assert not lease.acquire("node-b:2", 60), "held by node-a"
    assert lease.acquire("node-a:1", 60), "the holder renews"
    lease.release("node-a:1")
    assert lease.acquire("node-b:2", 60)


def test_an_expired_lease_is_taken_over(database) -> None:  # noqa: ANN001
    assert lease.acquire("node-a:1", 0.05)
    time.sleep(0.1)
    assert lease.acquire("node-b:2", 60)
    assert not lease.acquire("node-a:1", 60)


def test_a_dead_holder_on_this_machine_is_replaced_at_once(database) -> None:  # noqa: ANN001
    dead = 2**22 + 12345  # above pid_max's default: no such process
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)
    assert lease.acquire(f"{socket.gethostname()}:{dead}", 60)
    assert lease.acquire(f"{socket.gethostname()}:{os.getpid()}", 60)
