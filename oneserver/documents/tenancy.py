"""``<ZONE>`` and ``<VDC>`` documents."""

from __future__ import annotations

from typing import Any

from oneserver.documents import el, ids, template

# A VDC's resource sets: key in the stored document, element of the set and of each member.
VDC_RESOURCES = (("clusters", "CLUSTERS", "CLUSTER"), ("hosts", "HOSTS", "HOST"),
                 ("datastores", "DATASTORES", "DATASTORE"), ("vnets", "VNETS", "VNET"))


def zone(doc: dict[str, Any]) -> str:
    return (
        f"<ZONE><ID>{doc['id']}</ID>" + el("NAME", doc["name"])
        + f"<STATE>{doc['state']}</STATE>" + template(doc["template"])
        + template(doc["servers"], "SERVER_POOL") + "</ZONE>"
    )


def _resources(outer: str, inner: str, members: list[list[int]]) -> str:
    # Members as oned's ResourceSet keeps them: ordered by (zone, id), ALL (-10) first.
    return f"<{outer}>" + "".join(
        f"<{inner}><ZONE_ID>{zid}</ZONE_ID><{inner}_ID>{rid}</{inner}_ID></{inner}>"
        for zid, rid in sorted(members)) + f"</{outer}>"


def vdc(doc: dict[str, Any]) -> str:
    return (
        f"<VDC><ID>{doc['id']}</ID>" + el("NAME", doc["name"])
        + ids("GROUPS", sorted(doc["groups"]))
        + "".join(_resources(outer, inner, doc[key]) for key, outer, inner in VDC_RESOURCES)
        + template(doc["template"]) + "</VDC>"
    )
