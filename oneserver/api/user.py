"""``one.user.*`` and ``one.userpool.*``."""

from __future__ import annotations

import secrets
import time
from typing import Any

from oneserver import db, store
from oneserver.acl import ADMIN, CREATE, MANAGE, USE, Target
from oneserver.api import Context, api, generic, hash_password
from oneserver.api import common as c
from oneserver.documents import identity as xml
from oneserver.documents import pool
from oneserver.errors import (
    ACTION,
    ALLOCATE,
    AUTHORIZATION,
    XML_RPC_API,
    OneError,
    not_found,
)

RESERVED_USERS = (0, 1)


def new_user(oid: int, name: str, password: str, driver: str, groups: list[int]
             ) -> dict[str, Any]:
    primary = store.load("group", groups[0])
    return {
        "id": oid, "gid": groups[0], "groups": groups, "gname": primary["name"], "name": name,
        "password": hash_password(password), "auth_driver": driver, "enabled": True,
        "tokens": [], "template": [],
    }


def _join(user: dict[str, Any], gid: int) -> None:
    group = store.load("group", gid, for_update=True)
    if user["id"] not in group["users"]:
        group["users"].append(user["id"])
        store.save("group", group)
    if gid not in user["groups"]:
        user["groups"].append(gid)


def _leave(user: dict[str, Any], gid: int) -> None:
    group = store.load("group", gid, for_update=True)
    if user["id"] in group["users"]:
        group["users"].remove(user["id"])
        store.save("group", group)
    if gid in user["groups"]:
        user["groups"].remove(gid)


@api("one.user.allocate", "sssA", ("", []))
def user_allocate(ctx: Context, name: str, password: str, driver: str, groups: list) -> int:
    ctx.check(Target("user"), CREATE)
    driver = driver or "core"
    c.valid_name(name)
    if driver == "core" and not password:
        raise OneError(ALLOCATE, "Error allocating a new user. Invalid password, it cannot be "
                                 "empty")
    if not all(type(g) is int for g in groups):
        raise OneError(XML_RPC_API, "Group ids must be integers")
    gids = list(dict.fromkeys(groups)) or [1 if ctx.caller.is_admin else ctx.caller.gid]
    with db.write_transaction():
        c.name_free("user", name, "USER")
        for gid in gids:
            store.load("group", gid)
        oid = store.next_id("user")
        doc = new_user(oid, name, password, driver, gids[:1])
        for gid in gids:
            _join(doc, gid)
        store.insert("user", doc)
    return oid


def _user_for_change(ctx: Context, oid: int, right: int = MANAGE) -> dict[str, Any]:
    doc = store.load("user", oid, for_update=True)
    if ctx.caller.uid != oid:
        ctx.check(Target("user", oid), right)
    return doc


@api("one.user.delete", "i")
def user_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        doc = store.load("user", oid, for_update=True)
        ctx.check(Target("user", oid), ADMIN)
        if oid in RESERVED_USERS:
            raise OneError(ACTION, "Cannot delete reserved user", oid)
        for gid in list(doc["groups"]):
            _leave(doc, gid)
        store.delete("user", oid)
    return oid


@api("one.user.passwd", "is")
def user_passwd(ctx: Context, oid: int, password: str) -> int:
    if not password:
        raise OneError(ACTION, "Invalid password, it cannot be empty", oid)
    with db.write_transaction():
        doc = _user_for_change(ctx, oid)
        doc["password"] = hash_password(password)
        store.save("user", doc)
    return oid


@api("one.user.login", "ssii", (-1,))
def user_login(ctx: Context, name: str, token: str, valid: int, egid: int) -> str:
    with db.write_transaction():
        oid = store.name_taken("user", name)
        if oid is None:
            raise not_found("user", -1)
        doc = _user_for_change(ctx, oid)
        if egid >= 0 and egid not in doc["groups"]:
            raise OneError(AUTHORIZATION, f"User [{ctx.caller.uid}] : EGID is not a group of "
                                          f"the user.", oid)
        tokens = [t for t in doc.get("tokens", []) if t["expiration"] < 0
                  or t["expiration"] > time.time()]
        if valid == 0:
            doc["tokens"] = [t for t in tokens if token and t["token"] != token] if token else []
            store.save("user", doc)
            return token or name
        token = token or secrets.token_hex(32)
        expiration = -1 if valid < 0 else int(time.time()) + valid
        tokens = [t for t in tokens if t["token"] != token]
        tokens.append({"token": token, "expiration": expiration, "egid": egid})
        doc["tokens"] = tokens
        store.save("user", doc)
    return token


@api("one.user.chgrp", "ii")
def user_chgrp(ctx: Context, oid: int, gid: int) -> int:
    with db.write_transaction():
        doc = store.load("user", oid, for_update=True)
        ctx.check(Target("user", oid), MANAGE)
        group = store.load("group", gid)
        if not ctx.caller.is_admin:
            raise OneError(AUTHORIZATION, f"User [{ctx.caller.uid}] not authorized to perform "
                                          f"action on group.", gid)
        old = doc["gid"]
        if old != gid:
            _leave(doc, old)
            _join(doc, gid)
            doc["groups"].remove(gid)
            doc["groups"].insert(0, gid)
            doc["gid"], doc["gname"] = gid, group["name"]
        store.save("user", doc)
    return oid


@api("one.user.addgroup", "ii")
def user_addgroup(ctx: Context, oid: int, gid: int) -> int:
    with db.write_transaction():
        doc = store.load("user", oid, for_update=True)
        ctx.check(Target("user", oid), MANAGE)
        store.load("group", gid)
        if gid in doc["groups"]:
            raise OneError(ACTION, "User is already in this group", oid)
        _join(doc, gid)
        store.save("user", doc)
    return oid


@api("one.user.delgroup", "ii")
def user_delgroup(ctx: Context, oid: int, gid: int) -> int:
    with db.write_transaction():
        doc = store.load("user", oid, for_update=True)
        ctx.check(Target("user", oid), MANAGE)
        store.load("group", gid)
        if gid == doc["gid"]:
            raise OneError(ACTION, "Cannot remove user from the primary group", oid)
        if gid not in doc["groups"]:
            raise OneError(ACTION, "User is not part of this group", oid)
        _leave(doc, gid)
        store.save("user", doc)
    return oid


@api("one.user.info", "ib", (-1, False))
def user_info(ctx: Context, oid: int, decrypt: bool) -> str:
    oid = ctx.caller.uid if oid == -1 else oid
    doc = store.load("user", oid)
    if ctx.caller.uid != oid:
        ctx.check(Target("user", oid), USE)
    return xml.user(doc)


@api("one.userpool.info")
def userpool_info(ctx: Context) -> str:
    rows = db.User.select(db.User.oid, db.User.doc).order_by(db.User.oid.desc())
    bodies = [xml.user_in_pool(r.doc) for r in rows
              if ctx.caller.is_admin or r.oid == ctx.caller.uid
              or ctx.may(Target("user", r.oid), USE)]
    return pool("USER_POOL", bodies, xml.DEFAULT_USER_QUOTAS)


generic.register("one.user", "user", "update")
