"""A VM's HISTORY records, written as oned writes them: one per placement, opened on deploy
(or on resume on the same host), with the action that closed it and who asked for it."""

from __future__ import annotations

import time
from typing import Any

from oneserver.model.vmstate import HISTORY_ACTION

Doc = dict[str, Any]


def now() -> int:
    return int(time.time())


def last_history(vm: Doc) -> Doc | None:
    return vm["history"][-1] if vm["history"] else None


def new_history(vm: Doc, host: Doc, ds_id: int, tm_mad: str, prolog: bool = True) -> Doc:
    t = now()
    h = {
        "oid": vm["id"], "seq": len(vm["history"]), "hostname": host["name"], "hid": host["id"],
        "cid": host["cluster_id"], "stime": t, "etime": 0, "vm_mad": host["vm_mad"],
        "tm_mad": tm_mad, "ds_id": ds_id, "pstime": t if prolog else 0, "petime": 0,
        "rstime": 0 if prolog else t, "retime": 0, "estime": 0, "eetime": 0, "action": 0,
        "uid": -1, "gid": -1, "request_id": -1,
    }
    vm["history"].append(h)
    return h


def record_action(vm: Doc, action: str, uid: int, gid: int) -> None:
    """Write who asked for ``action`` into the open history record, as oned does."""
    h = last_history(vm)
    if h is not None:
        h["action"] = HISTORY_ACTION.get(action, 0)
        h["uid"], h["gid"] = uid, gid
        h["request_id"] = -1


def close_history(vm: Doc) -> None:
    h = last_history(vm)
    if h is not None and h["etime"] == 0:
        h["etime"] = now()


def reopen_on_same_host(vm: Doc) -> Doc:
    """Resume from POWEROFF/SUSPENDED/UNKNOWN: oned closes the record and opens the next one
    on the same host, running from now."""
    old = vm["history"][-1]
    close_history(vm)
    t = now()
    h = dict(old, seq=old["seq"] + 1, stime=t, etime=0, pstime=0, petime=0, rstime=t,
             retime=0, estime=0, eetime=0, action=0, uid=-1, gid=-1, request_id=-1)
    vm["history"].append(h)
    return h
