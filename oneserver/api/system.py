"""``one.system.*`` and the zone calls clients make at start."""

from __future__ import annotations

from oneserver import settings
from oneserver.api import Context, api
from oneserver.api import common as c
from oneserver.model.acl import LOCAL_ZONE

VERSION = "7.4.0"

# What users outside the oneadmin group do not see (oned's NebulaTemplate::to_xml_hidden):
# these members of these vector attributes read "***".
HIDDEN = {"DB": ("BACKEND", "SERVER", "PORT", "USER", "PASSWD", "DB_NAME")}


@api("one.system.version")
def system_version(ctx: Context) -> str:
    return VERSION


@api("one.system.config")
def system_config(ctx: Context) -> str:
    conf = settings.current().oned_conf.copy()
    if not ctx.caller.is_admin:
        for name, members in HIDDEN.items():
            for vec in conf.vectors(name):
                vec.update((k, "***") for k in members if k in vec)
    return conf.to_xml("OPENNEBULA_CONFIGURATION")


@api("one.zone.raftstatus")
def zone_raftstatus(ctx: Context) -> str:
    """A standalone server's Raft state, solo, whatever zone 0's SERVER_POOL holds (oned's
    RaftManager takes servers only as a leader); ADMIN on the local zone, as oned."""
    c.load_checked(ctx, "zone", LOCAL_ZONE)
    return (
        "<RAFT><SERVER_ID>-1</SERVER_ID><STATE>0</STATE><TERM>0</TERM><VOTEDFOR>-1</VOTEDFOR>"
        "<COMMIT>0</COMMIT><LOG_INDEX>0</LOG_INDEX><LOG_TERM>0</LOG_TERM>"
        "<FEDLOG_INDEX>-1</FEDLOG_INDEX></RAFT>"
    )
