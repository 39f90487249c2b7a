"""``one.user.*`` and ``one.userpool.*``."""

from __future__ import annotations

import secrets
import time
from typing import Any

from oneserver import db, store
from oneserver.api import Context, api, generic, hash_password
from oneserver.api import common as c
from oneserver.documents import identity as xml
from oneserver.documents import pool
from oneserver.errors import (
    ACTION,
    ALLOCATE,
    INTERNAL,
    XML_RPC_API,
    Fault,
    OneError,
    not_found,
)
from oneserver.model.acl import Target
from oneserver.wire import FAULT_INTERNAL

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
def user_allocate(ctx: Context, name: str, password: str, driver: str,
                  groups: list[Any]) -> int:
    if not all(type(g) is int for g in groups):
        # oned reads each element as an <i4> (xmlrpc_c::value_int) before anything else;
        # anything else, an <i8> included, makes xmlrpc-c's method registry answer this fault.
        raise Fault(FAULT_INTERNAL, "Unexpected error executing code for particular method, "
                    "detected by Xmlrpc-c method registry code.  Method did not fail; rather, "
                    "it did not complete at all.  Not integer type.  See type() method")
    ctx.authorize(Target("user"))
    driver = driver or "core"
    c.valid_name(name)
    if driver == "core" and not password:
        raise OneError(ALLOCATE, "Error allocating a new user. Invalid password, it cannot be "
                                 "empty")
    gids = list(dict.fromkeys(groups)) or [1 if ctx.caller.is_admin else ctx.caller.gid]
    with db.write_transaction():
        c.name_free("user", name, "USER")
        for gid in gids:  # the new user's groups: MANAGE on each (UserAllocate)
            if groups:
                ctx.authorize(c.target("group", store.load("group", gid)))
            else:
                store.load("group", gid)
        oid = store.next_id("user")
        doc = new_user(oid, name, password, driver, gids[:1])
        for gid in gids:
            _join(doc, gid)
        store.insert("user", doc)
    return oid


def _user_for_change(ctx: Context, oid: int) -> dict[str, Any]:
    """The user, row-locked and checked for the call's right (a user owns itself)."""
    return c.load_checked(ctx, "user", oid, for_update=True)


@api("one.user.delete", "i")
def user_delete(ctx: Context, oid: int) -> int:
    with db.write_transaction():
        doc = _user_for_change(ctx, oid)
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
        tokens = [t for t in doc.get("tokens", []) if t["expiration"] < 0
                  or t["expiration"] > time.time()]
        if valid == 0:
            if token and all(t["token"] != token for t in tokens):
                raise OneError(XML_RPC_API, f"Could not find token: {token}", oid)
            doc["tokens"] = [t for t in tokens if token and t["token"] != token] if token else []
            store.save("user", doc)
            return token or name
        if valid < -1:
            raise OneError(XML_RPC_API, "Wrong valid period for token", oid)
        # Scoped tokens (UserAPI::login): the group must be the user's and in the groups this
        # session acts with; a session scoped to one group cannot mint an unscoped token.
        me = ctx.caller
        if egid != -1 and not me.is_admin and (egid not in doc["groups"]
                                               or egid not in me.groups):
            raise OneError(XML_RPC_API, "EGID is not in user group list", oid)
        if egid == -1 and frozenset(doc["groups"]) != me.groups and me.uid == oid:
            raise OneError(XML_RPC_API, "Cannot create a full token with a specific group "
                                        "token", oid)
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
        doc = _user_for_change(ctx, oid)
        group = store.load("group", gid)
        ctx.authorize(c.target("group", group))
        if oid == 0 and gid != 0:
            raise OneError(INTERNAL, "User [0] oneadmin cannot be moved outside of the Group "
                                     "[0] oneadmin", oid)
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
        doc = _user_for_change(ctx, oid)
        ctx.authorize(c.target("group", store.load("group", gid)))
        if gid in doc["groups"]:
            raise OneError(ACTION, "User is already in this group", oid)
        _join(doc, gid)
        store.save("user", doc)
    return oid


@api("one.user.delgroup", "ii")
def user_delgroup(ctx: Context, oid: int, gid: int) -> int:
    with db.write_transaction():
        doc = _user_for_change(ctx, oid)
        ctx.authorize(c.target("group", store.load("group", gid)))
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
    return xml.user(c.load_checked(ctx, "user", oid))


@api("one.userpool.info")
def userpool_info(ctx: Context) -> str:
    rows = db.User.select(db.User.oid, db.User.doc).order_by(db.User.oid.desc())
    bodies = [xml.user_in_pool(r.doc) for r in rows
              if ctx.may(c.target("user", r.doc))]
    return pool("USER_POOL", bodies, xml.DEFAULT_USER_QUOTAS)


@api("one.user.enable", "ib")
def user_enable(ctx: Context, oid: int, enable: bool) -> int:
    """Enable or disable a user: a disabled user cannot authenticate (UserAPI::enable)."""
    with db.write_transaction():
        doc = _user_for_change(ctx, oid)
        if oid == 0:
            raise OneError(ACTION, "Cannot enable/disable oneadmin user", oid)
        if doc["enabled"] != enable:
            doc["enabled"] = enable
            store.save("user", doc)
    return oid


generic.register("one.user", "user", "update")
