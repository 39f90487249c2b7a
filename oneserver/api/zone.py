"""``one.zone.*`` and ``one.zonepool.info`` as a standalone (non-federated) oned answers them:
one zone, 0, which cannot be added to or deleted; its servers are kept in its document
(``SERVER_POOL``) without making this server part of an HA cluster (one.zone.raftstatus
stays solo, as oned's RaftManager outside the leader state ignores them)."""

from __future__ import annotations

from typing import Any

from oneserver import db, store
from oneserver.api import ZONE_DISABLED, Context, api, generic
from oneserver.api import common as c
from oneserver.errors import ACTION, ALLOCATE, OneError
from oneserver.model.acl import LOCAL_ZONE
from oneserver.template import Template, TemplateError, parse


def _post_update_template(doc: dict[str, Any]) -> None:
    """Zone::post_update_template: ENDPOINT is never empty ("-" then), and servers are never
    template attributes."""
    tmpl = Template.from_json(doc["template"])
    if not tmpl.get_str("ENDPOINT"):
        tmpl.set("ENDPOINT", "-")
    tmpl.remove("SERVER")
    doc["template"] = tmpl.to_json()


store.before_save("zone", _post_update_template)


def _local(oid: int, message: str) -> None:
    """A standalone server answers only for its own zone, before any other check."""
    if oid != LOCAL_ZONE:
        raise OneError(ACTION, message)


@api("one.zone.allocate", "s")
def zone_allocate(ctx: Context, text: str) -> int:
    # ZoneAPI::allocate refuses before it parses or authorizes anything.
    raise OneError(ALLOCATE, "Error allocating a new zone. New zones can only be created at "
                             "federation master")


@api("one.zone.delete", "i")
def zone_delete(ctx: Context, oid: int) -> int:
    c.load_checked(ctx, "zone", oid)
    # No zone of 100 or more can exist here (allocate is refused): every zone is a system one.
    raise OneError(ACTION, "Cannot delete zone. System Zones (ID < 100) cannot be deleted.")


@api("one.zone.enable", "ib")
def zone_enable(ctx: Context, oid: int, enable: bool) -> int:
    _local(oid, "Enable/disable mode have to be set through the target zone endpoints")
    with c.changing(ctx, "zone", oid) as doc:
        doc["state"] = 0 if enable else 1
        # What the dispatcher reads to refuse other calls while the zone is disabled.
        db.Meta.delete().where(db.Meta.key == ZONE_DISABLED).execute()
        if not enable:
            db.Meta.create(key=ZONE_DISABLED, value="1")
    return oid


@api("one.zone.addserver", "is")
def zone_addserver(ctx: Context, oid: int, text: str) -> int:
    _local(oid, "Servers have to be added through the target zone endpoints")
    with c.changing(ctx, "zone", oid) as doc:
        try:
            server = parse(text).get("SERVER")
        except TemplateError as exc:
            raise OneError(ACTION, str(exc)) from None
        if not isinstance(server, dict):
            raise OneError(ACTION, "SERVER not found in template")
        if not server.get("NAME"):
            raise OneError(ACTION, "Missing NAME in SERVER")
        if not server.get("ENDPOINT") and not server.get("ENDPOINT_GRPC"):
            raise OneError(ACTION, "Missing ENDPOINT or ENDPOINT_GRPC in SERVER")
        servers = Template.from_json(doc["servers"])
        taken = [int(s["ID"]) for s in servers.vectors("SERVER")]
        servers.add("SERVER", {**server, "ID": str(max(taken, default=-1) + 1)})
        doc["servers"] = servers.to_json()
    return oid


@api("one.zone.delserver", "ii")
def zone_delserver(ctx: Context, oid: int, server_id: int) -> int:
    _local(oid, "Servers have to be deleted through the target zone endpoints")
    with c.changing(ctx, "zone", oid) as doc:
        servers = Template.from_json(doc["servers"])
        kept = [s for s in servers.vectors("SERVER") if s.get("ID") != str(server_id)]
        if len(kept) == len(servers.vectors("SERVER")):
            raise OneError(ACTION, "SERVER not found in zone")
        doc["servers"] = Template([("SERVER", s) for s in kept]).to_json()
    return oid


@api("one.zone.resetserver", "ii")
def zone_resetserver(ctx: Context, oid: int, server_id: int) -> int:
    # oned resets a follower's replication index; a standalone server has no followers.
    _local(oid, "Servers have to be deleted through the target zone endpoints")
    c.load_checked(ctx, "zone", oid)
    return oid


@api("one.zonepool.info")
def zonepool_info(ctx: Context) -> str:
    return c.listing(ctx, "zone", "ZONE_POOL")


generic.register("one.zone", "zone", "info", "update", "rename")
