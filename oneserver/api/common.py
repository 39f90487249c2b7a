"""What every object kind shares: owner/permission checks, info, chmod, chown, rename, update,
lock/unlock and filtered pool listings (reference §2.0 and §2.14)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any, cast

import peewee as pw

from oneserver import db, store
from oneserver.api import Context, authz
from oneserver.errors import (
    ACTION,
    ALLOCATE,
    INTERNAL,
    LOCKED,
    XML_RPC_API,
    OneError,
    not_found,
)
from oneserver.model.acl import ADMIN, MANAGE, USE, Target
from oneserver.template import Template, TemplateError, check_size, parse
from oneserver.wire import Escaped

DEFAULT_PERMS = [1, 1, 0, 0, 0, 0, 0, 0, 0]  # umask 177: owner use+manage


# A user owns itself with oned's default permissions (User::User sets itself as owner); the
# members of a group may USE it (see it, and move to it).
_SELF_PERMS = (1, 1, 0, 0, 0, 0, 0, 0, 0)
_MEMBERS_USE = (0, 0, 0, 1, 0, 0, 0, 0, 0)


def target(kind: str, doc: dict[str, Any]) -> Target:
    """What an authorization check sees of an object: owner, group, permissions, clusters."""
    oid = doc["id"]
    if kind == "user":
        return Target(kind, oid, oid, doc["gid"], _SELF_PERMS)
    if kind == "group":
        return Target(kind, oid, -1, oid, _MEMBERS_USE)
    if kind == "host":  # owned by nobody: only ACL rules (e.g. per cluster) give rights
        return Target(kind, oid, clusters=(doc["cluster_id"],))
    if "uid" not in doc:  # clusters and other unowned kinds
        return Target(kind, oid)
    return Target(kind, oid, doc["uid"], doc["gid"], tuple(doc["perms"]),
                  tuple(doc.get("clusters", ())))


def load_checked(ctx: Context, kind: str, oid: int, for_update: bool = False
                 ) -> dict[str, Any]:
    """Load one object and check the caller's right on it (from the authorization table)."""
    doc = store.load(kind, oid, for_update)
    ctx.authorize(target(kind, doc))
    return doc


def check_lock(kind: str, doc: dict[str, Any], right: int) -> None:
    """LOCKED when a lock of this level or lower covers the operation (lock levels 1 use,
    2 manage, 3 admin, 4 all; an operation needing ``right`` is blocked by levels <= it)."""
    lk = doc.get("lock")
    if not lk:
        return
    level = {USE: 1, MANAGE: 2, ADMIN: 3}.get(right, 4)
    if lk["locked"] <= level or lk["locked"] == 4:
        raise OneError(LOCKED, f"The resource {store.KINDS[kind].obj_name} is locked. "
                               f"[{doc['id']}].", doc["id"])


def parse_template(text: str, prefix: str = "") -> Template:
    try:
        return parse(text)
    except TemplateError as exc:
        raise OneError(INTERNAL, prefix + str(exc)) from None


def valid_name(name: str, what: str = "") -> str:
    """oned refuses empty names and names with characters that break its CLI tables."""
    if not name or name.strip() == "":
        raise OneError(INTERNAL, "Invalid NAME, it cannot be empty")
    if len(name) > 128:
        raise OneError(INTERNAL, "Invalid NAME, max length is 128 chars")
    for ch in "&|:\\\";/'#{}$<>":
        if ch in name:
            raise OneError(INTERNAL, f"Invalid NAME, char '{ch}' is not allowed")
    if any(ord(c) < 32 for c in name):
        raise OneError(INTERNAL, "Invalid NAME, control characters are not allowed")
    return name


def name_free(kind: str, name: str, label: str, uid: int | None = None) -> None:
    """ALLOCATE as oned words it when ``name`` is taken (per owner when ``uid`` is given)."""
    taken = store.name_taken(kind, name, uid)
    if taken is not None:
        raise OneError(ALLOCATE, f"Error allocating a new {store.KINDS[kind].obj_name}. NAME is "
                                 f"already taken by {label} {taken}.")


@contextlib.contextmanager
def changing(ctx: Context, kind: str, oid: int) -> Iterator[dict[str, Any]]:
    """One object changed in one write transaction: loaded (row-locked), checked for the
    right the authorization table gives the call and, unless the call ignores locks,
    against its lock; saved when the block ends without an error."""
    with db.write_transaction():
        doc = load_checked(ctx, kind, oid, for_update=True)
        if not ctx.op.ignores_lock:
            check_lock(kind, doc, ctx.op.right_on(kind, oid))
        yield doc
        store.save(kind, doc)


def info(ctx: Context, kind: str, oid: int) -> str:
    """The stored body of one object: the hot path of every client, one indexed read."""
    k = store.KINDS[kind]
    rows = db.raw(f'SELECT body FROM "{k.model._meta.table_name}" WHERE oid = ?', oid)
    if not rows:
        raise not_found(k.obj_name, oid)
    if not ctx.caller.is_admin:
        ctx.authorize(target(kind, store.load(kind, oid)))
    return Escaped(rows[0][0])


def update(ctx: Context, kind: str, oid: int, text: str, mode: int,
           field: str = "template") -> int:
    if mode not in (0, 1):
        raise OneError(XML_RPC_API, "Wrong update type", oid)
    # Parsed before the write lock is taken: a large template is the slow part of the call, and
    # the lock holds up every other writer. A parse error still comes after the authorization
    # and lock checks, in oned's order.
    try:
        new, failure = parse(text), None
    except TemplateError as exc:
        new, failure = Template(), exc
    with changing(ctx, kind, oid) as doc:
        try:
            if failure is not None:
                raise failure
            if mode == 1:
                merged = Template.from_json(doc[field])
                merged.merge(new)
                new = check_size(merged)  # merges add up: the sum is bounded too
        except TemplateError as exc:
            raise OneError(INTERNAL, f"Cannot update template. {exc}") from None
        if not ctx.caller.is_admin and kind in authz.RESTRICTED:
            authz.check_restricted(False, kind, [new], Template.from_json(doc[field]))
        doc[field] = new.to_json()
    return oid


def rename(ctx: Context, kind: str, oid: int, name: str, unique_per_owner: bool) -> int:
    with changing(ctx, kind, oid) as doc:
        valid_name(name)
        other = store.name_taken(kind, name, doc["uid"] if unique_per_owner else None)
        if other is not None and other != oid:
            raise OneError(ACTION, f"Cannot rename to {name!r}: NAME is already taken by "
                                   f"{store.KINDS[kind].obj_name.upper()} {other}.", oid)
        doc["name"] = name
    return oid


def chmod(ctx: Context, kind: str, oid: int, bits: list[int]) -> int:
    with changing(ctx, kind, oid) as doc:
        perms = list(doc["perms"])
        for i, bit in enumerate(bits):
            if bit == -1:
                continue
            if bit not in (0, 1):
                raise OneError(XML_RPC_API, "Wrong permission bit value", oid)
            # Changing ADMIN bits needs ADMIN rights on the object, as in oned.
            if i % 3 == 2 and bit != perms[i]:
                ctx.authorize(target(kind, doc), authz.CHMOD_ADMIN_BITS)
            perms[i] = bit
        doc["perms"] = perms
    return oid


def chown(ctx: Context, kind: str, oid: int, uid: int, gid: int) -> int:
    """As SharedAPI::chown: the call's right on the object, MANAGE on the new owner, USE on
    the new group; giving an object to its current owner or group changes nothing."""
    with changing(ctx, kind, oid) as doc:
        if uid > -1 and uid != doc["uid"]:
            user = store.load("user", uid)
            ctx.authorize(target("user", user))
            doc["uid"], doc["uname"] = uid, user["name"]
        if gid > -1 and gid != doc["gid"]:
            group = store.load("group", gid)
            ctx.authorize(target("group", group))
            doc["gid"], doc["gname"] = gid, group["name"]
    return oid


def lock(ctx: Context, kind: str, oid: int, level: int, test: bool) -> int:
    if level not in (1, 2, 3, 4):
        raise OneError(XML_RPC_API, "Wrong lock level", oid)
    with changing(ctx, kind, oid) as doc:
        held = doc.get("lock")
        if held and test:
            raise OneError(ACTION, f"Object is already locked. Lock time: "
                                   f"{held['time']}", oid)
        if held and held["owner"] != ctx.caller.uid and not ctx.caller.is_admin:
            # Only an administrator overrides another user's lock (PoolObjectSQL::lock_db).
            raise OneError(ACTION, "Error trying to lock the resource.", oid)
        doc["lock"] = {"locked": level, "owner": ctx.caller.uid, "time": int(time.time()),
                       "req_id": -1}
    return oid


def unlock(ctx: Context, kind: str, oid: int) -> int:
    with changing(ctx, kind, oid) as doc:
        held = doc.get("lock")
        if held and held["owner"] != ctx.caller.uid and not ctx.caller.is_admin:
            raise OneError(ACTION, "Cannot unlock: Lock is owned by another user", oid)
        doc["lock"] = None
    return oid


def listing(ctx: Context, kind: str, root: str, flag: int = -2, start: int = -1, end: int = -1,
            where: pw.ColumnBase | None = None, column: str = "body") -> Escaped:
    """A pool document made of stored bodies (already escaped for the wire)."""
    rows = pool_rows(ctx, kind, flag, start, end, where, column)
    rows.insert(0, f"&lt;{root}&gt;")
    rows.append(f"&lt;/{root}&gt;")
    return Escaped("".join(rows))


def pool_rows(ctx: Context, kind: str, flag: int, start: int, end: int,
              where: pw.ColumnBase | None = None, column: str = "body") -> list[str]:
    """The stored bodies of a filtered pool listing, newest first (API_LIST_ORDER = DESC).
    ``column`` is a body column, or ``ext`` for the VM body with only its last history."""
    if flag < -4:
        raise OneError(XML_RPC_API, "Incorrect filter_flag")
    k = store.KINDS[kind]
    m = k.model
    if column == "ext":
        assert issubclass(m, db.VM), kind  # only VMs have a body with their last history
        out = pw.fn.COALESCE(m.ext_body, m.body)
    else:
        out = getattr(m, column)
    me = ctx.caller
    check = not me.is_admin  # every kind: a caller lists only what he may USE
    q = m.select(out, m.doc) if check else m.select(out)
    if where is not None:
        q = q.where(where)
    if issubclass(m, db.OwnedObject):
        if flag == -3:
            q = q.where(m.uid == me.uid)
        elif flag == -4:
            q = q.where(m.gid == me.gid)
        elif flag == -1 and not me.is_admin:
            q = q.where((m.uid == me.uid) | (m.gid << list(me.groups or {me.gid})))
        elif flag >= 0:
            q = q.where(m.uid == flag)
    paged = end < -1
    if not paged:
        if start > -1:
            q = q.where(m.oid >= start)
        if end > -1:
            q = q.where(m.oid <= end)
    q = q.order_by(m.oid.desc())
    offset, limit = max(start, 0), -end
    if not check:
        if paged:
            q = q.offset(offset).limit(limit)
        # Straight from the cursor: per-row ORM processing would cost more than the query.
        sql, params = q.sql()
        return [r[0] for r in db.database.obj.execute_sql(sql, params).fetchall()]
    # peewee's stubs keep the model as the row type after .tuples(); these rows are tuples.
    pairs = cast(Iterable[tuple[str, dict[str, Any]]], q.tuples())
    rows = [body for body, doc in pairs if ctx.may(target(kind, doc))]
    return rows[offset:offset + limit] if paged else rows


def new_owned_doc(ctx: Context, oid: int, name: str) -> dict[str, Any]:
    return {
        "id": oid, "uid": ctx.caller.uid, "gid": ctx.caller.gid, "uname": ctx.caller.uname,
        "gname": ctx.caller.gname, "name": name, "perms": list(DEFAULT_PERMS), "lock": None,
    }


