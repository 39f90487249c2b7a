"""Calls that meet other writers: run again while the failure is one a retry can clear, then
a clear "try again" failure (db.Busy), never an unexplained internal error."""

from __future__ import annotations

import peewee as pw
import pytest

from oneserver import db
from oneserver.errors import INTERNAL, OneError


def failing(message: str, calls: list[int], succeed_after: int | None = None):  # noqa: ANN201
    def call() -> str:
        calls.append(1)
        if succeed_after is not None and len(calls) > succeed_after:
            return "done"
        raise pw.OperationalError(message)
    return call


@pytest.mark.parametrize("message", ["database is locked", "deadlock detected",
                                     "could not serialize access due to concurrent update"])
def test_a_busy_call_runs_again_then_says_try_again(message: str) -> None:
    calls: list[int] = []
    assert db.retrying(failing(message, calls, succeed_after=2), attempts=3) == "done"
    calls.clear()
    with pytest.raises(db.Busy) as info:
        db.retrying(failing(message, calls), attempts=3)
    assert len(calls) == 3
    assert isinstance(info.value, OneError) and info.value.code == INTERNAL
    assert "busy" in info.value.message and "try again" in info.value.message


def test_other_failures_are_not_run_again() -> None:
    calls: list[int] = []
    with pytest.raises(pw.OperationalError, match="no such table"):
        db.retrying(failing("no such table: vm", calls), attempts=3)
    assert len(calls) == 1
