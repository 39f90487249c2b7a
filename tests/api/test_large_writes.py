"""Large writes never hold up the other writers: an update's template is parsed before the write
lock is taken, merged in one pass and bounded (``template.MAX_TEMPLATE``), so a 250 KB merge
update runs while another client's writes all succeed, and a template that would grow past the
bound is refused with OpenNebula's error and changes nothing. How long they take is measured by
tools/bench_large_update.py, not here."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
import xmlrpc.client
from typing import Any

from oneserver.template import MAX_TEMPLATE

INTERNAL = 0x2000
# Every call of these tests must answer within this (a hung worker fails the test instead of
# hanging the suite); it bounds, it does not measure.
CALL_TIMEOUT = 120.0


class _TimeoutTransport(xmlrpc.client.Transport):
    def make_connection(self, host: Any) -> Any:
        conn = super().make_connection(host)
        conn.timeout = CALL_TIMEOUT
        return conn


def proxy(server) -> xmlrpc.client.ServerProxy:  # noqa: ANN001
    return xmlrpc.client.ServerProxy(server.url, transport=_TimeoutTransport())


def ok(reply: list) -> Any:
    assert reply[0] is True, reply
    return reply[1]


def many_attributes(count: int, prefix: str) -> str:
    """``count`` short attributes, ``PREFIX000001=1``: the shape whose merge used to be
    quadratic (a 252 KB one held the write lock for 19 s)."""
    return "".join(f"{prefix}{i:06d}=1\n" for i in range(count))


def held_vm(server, name: str) -> int:  # noqa: ANN001
    return ok(server.call("one.vm.allocate", f'NAME="{name}"\nCPU=0.1\nMEMORY=64', True))


def test_a_large_merge_update_runs_while_another_client_writes(server) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    big, other = held_vm(server, f"large-{tag}"), held_vm(server, f"other-{tag}")
    user = ok(server.call("one.user.allocate", f"writer-{tag}", "pw", "core", []))
    text = many_attributes(20_000, "BIG_")  # 260 KB
    done = threading.Event()
    replies: list[list] = []
    errors: list[BaseException] = []

    def writer() -> None:  # an administrator's small writes, as fast as they are answered
        client, i = proxy(server), 0
        try:
            while not done.is_set() or i < 20:
                replies.append(client.one.vm.update(server.session, other, f'SEQ="{i}"', 1))
                replies.append(client.one.user.update(server.session, user, f'SEQ="{i}"', 1))
                i += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        client = proxy(server)
        # Adds every attribute, then twice replaces every one of them (the slow case before).
        for _ in range(3):
            assert ok(client.one.vm.update(server.session, big, text, 1)) == big
    finally:
        done.set()
        thread.join(CALL_TIMEOUT)
    assert not errors, errors
    failed = [r for r in replies if r[0] is not True]
    assert not failed, f"{len(failed)} of {len(replies)} concurrent writes failed: {failed[:3]}"
    body = ok(client.one.vm.info(server.session, big))
    assert body.count("<BIG_") == text.count("\n")
    last = len(replies) // 2 - 1
    assert f"<SEQ><![CDATA[{last}]]></SEQ>" in ok(server.call("one.vm.info", other))


def test_a_template_past_the_bound_is_refused_and_changes_nothing(server) -> None:  # noqa: ANN001
    vm = held_vm(server, f"bounded-{uuid.uuid4().hex[:8]}")
    client = proxy(server)
    before = ok(client.one.vm.info(server.session, vm))

    def refused(text: str, mode: int) -> None:
        reply = client.one.vm.update(server.session, vm, text, mode)
        assert reply[0] is False and reply[2] == INTERNAL, reply[:3]
        assert reply[1].startswith("[one.vm.update] Cannot update template. Template too "
                                   "large:"), reply[1]
        assert f"the limit is {MAX_TEMPLATE}" in reply[1]
        assert ok(client.one.vm.info(server.session, vm)) == before

    # One template over the bound: 2.7 MB of attributes of 32 characters of XML each.
    refused(many_attributes(MAX_TEMPLATE // 32 + 1000, "X"), 0)
    # Merges that each fit but add up past it: the third is refused, the first two stay.
    value = "x" * (MAX_TEMPLATE * 3 // 8)
    for name in ("PART_A", "PART_B"):
        ok(client.one.vm.update(server.session, vm, f'{name}="{value}"', 1))
    before = ok(client.one.vm.info(server.session, vm))
    refused(f'PART_C="{value}"', 1)
    assert before.count(value) == 2


def test_a_write_waits_for_a_lock_held_elsewhere(server) -> None:  # noqa: ANN001
    """Another process holds the write lock (SQLite) or the VM's row (PostgreSQL) for a
    while: the call waits for it and succeeds, it does not fail as busy."""
    vm = held_vm(server, f"waits-{uuid.uuid4().hex[:8]}")
    if server.backend == "sqlite":
        conn: Any = sqlite3.connect(server.db_url.removeprefix("sqlite:///"),
                                    isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        import psycopg2
        conn = psycopg2.connect(server.db_url)
        conn.cursor().execute("SELECT oid FROM vm WHERE oid = %s FOR UPDATE", (vm,))
    replies: list[list] = []
    thread = threading.Thread(target=lambda: replies.append(
        proxy(server).one.vm.update(server.session, vm, 'WAITED="yes"', 1)))
    try:
        thread.start()
        time.sleep(1.5)  # the call is waiting meanwhile (this is no assertion of time)
    finally:
        conn.rollback()
        conn.close()
        thread.join(CALL_TIMEOUT)
    assert replies and ok(replies[0]) == vm
    assert "<WAITED><![CDATA[yes]]></WAITED>" in ok(server.call("one.vm.info", vm))
