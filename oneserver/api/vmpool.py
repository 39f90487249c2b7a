"""``one.vmpool.*``: listings of VMs."""

from __future__ import annotations

import time
from typing import Any

import peewee as pw

from oneserver import db, numeric
from oneserver.api import Context, api
from oneserver.api import common as c
from oneserver.documents.vm import history
from oneserver.errors import XML_RPC_API, OneError
from oneserver.model.vmstate import VmState
from oneserver.template import Template
from oneserver.wire import Escaped, escape


def _state_where(state: int) -> pw.Expression | None:
    if state < -2 or state > 11:
        raise OneError(XML_RPC_API, "Incorrect filter_flag, state")
    if state == -2:
        return None
    if state == -1:
        return db.VM.state != VmState.DONE
    return db.VM.state == state


def _kv_matches(doc: dict[str, Any], kv: str) -> bool:
    tmpl = Template.from_json(doc["template"])
    user = Template.from_json(doc["user_template"])
    for pair in kv.split("&"):
        key, _, value = pair.partition("=")
        key = key.strip().upper()
        found = (user if key in user else tmpl).get(key)
        have = found if isinstance(found, str) else None
        if have is None or (value and have != value):
            return False
    return True


def _listing(ctx: Context, flag: int, start: int, end: int, state: int, kv: str,
             column: str) -> str:
    where = _state_where(state)
    if kv:
        ids = [r.oid for r in db.VM.select(db.VM.oid, db.VM.doc).where(
            where if where is not None else pw.SQL("1=1")) if _kv_matches(r.doc, kv)]
        extra = db.VM.oid << ids
        where = extra if where is None else (where & extra)
    return c.listing(ctx, "vm", "VM_POOL", flag, start, end, where, column)


@api("one.vmpool.info", "iiiis", (-1, ""))
def vmpool_info(ctx: Context, flag: int, start: int, end: int, state: int, kv: str) -> str:
    return _listing(ctx, flag, start, end, state, kv, "short_body")


@api("one.vmpool.infoextended", "iiiis", (-1, ""))
def vmpool_infoextended(ctx: Context, flag: int, start: int, end: int, state: int, kv: str
                        ) -> str:
    return _listing(ctx, flag, start, end, state, kv, "ext")


@api("one.vmpool.infoset", "sb", (False,))
def vmpool_infoset(ctx: Context, id_list: str, extended: bool) -> str:
    # As oned's split_unique: each comma-separated piece read as an unsigned int from its
    # start; a piece that is no number is skipped, never an error.
    ids = {n for x in id_list.split(",") if x and (n := numeric.leading_uint(x)) is not None}
    if not ids:
        return "<VM_POOL></VM_POOL>"
    column = "body" if extended else "short_body"
    # Inlined (integers only), not one SQL variable per id: a long list must not run into
    # the database's limit on variables.
    where = db.VM.oid << pw.SQL(f"({','.join(map(str, sorted(ids)))})")
    return c.listing(ctx, "vm", "VM_POOL", -2, -1, -1, where, column)


@api("one.vmpool.monitoring", "ii", (-1,))
def vmpool_monitoring(ctx: Context, flag: int, seconds: int) -> str:
    if flag < -4:
        raise OneError(XML_RPC_API, "Incorrect filter_flag")
    visible = _visible_ids(ctx, flag)
    q = db.VMMonitoring.select(db.VMMonitoring.vm_id, db.VMMonitoring.body,
                               db.VMMonitoring.timestamp)
    if seconds > 0:
        q = q.where(db.VMMonitoring.timestamp >= int(time.time()) - seconds)
    rows = [r for r in q.order_by(db.VMMonitoring.vm_id, db.VMMonitoring.timestamp)
            if r.vm_id in visible]
    if seconds == 0:
        last: dict[int, str] = {}
        for r in rows:
            last[r.vm_id] = r.body
        return "<MONITORING_DATA>" + "".join(last.values()) + "</MONITORING_DATA>"
    return "<MONITORING_DATA>" + "".join(r.body for r in rows) + "</MONITORING_DATA>"


def _visible_ids(ctx: Context, flag: int) -> set[int]:
    q = db.VM.select(db.VM.oid, db.VM.uid, db.VM.gid, db.VM.doc)
    me = ctx.caller
    out = set()
    for r in q:
        if flag == -3 and r.uid != me.uid or flag >= 0 and r.uid != flag:
            continue
        if flag == -4 and r.gid != me.gid:
            continue
        if me.is_admin or ctx.may(c.target("vm", r.doc)):
            out.add(r.oid)
    return out


@api("one.vmpool.accounting", "iii", (-1, -1))
def vmpool_accounting(ctx: Context, flag: int, start_time: int, end_time: int) -> str:
    if flag < -4:
        raise OneError(XML_RPC_API, "Incorrect filter_flag")
    visible = _visible_ids(ctx, flag)
    parts = []
    for r in db.VM.select(db.VM.oid, db.VM.doc, db.VM.body).order_by(db.VM.oid):
        if r.oid not in visible:
            continue
        for h in r.doc["history"]:
            if start_time >= 0 and h["etime"] and h["etime"] < start_time:
                continue
            if end_time >= 0 and h["stime"] > end_time:
                continue
            # Each record embeds its VM; stored bodies are already escaped for the wire.
            parts.append(escape(history(h)).replace("&lt;/HISTORY&gt;",
                                                    r.body + "&lt;/HISTORY&gt;"))
    return Escaped("&lt;HISTORY_RECORDS&gt;" + "".join(parts) + "&lt;/HISTORY_RECORDS&gt;")
