"""``<VNET>`` (full for vn.info, short for vnpool.info), ``<SECURITY_GROUP>`` and
``<VNTEMPLATE>`` documents, in oned 7.4's element order."""

from __future__ import annotations

from typing import Any

from oneserver.documents import cdata, el, ids, lock, owner_head, permissions, template
from oneserver.model import address_range as ar_

# Who vn.info may show as a lease's owner: None for everybody (VM, VNET, VROUTER → ids).
Visible = dict[str, set[int] | None]
ALL: Visible = {"VM": None, "VNET": None, "VROUTER": None}


def _optional(name: str, value: Any, as_cdata: bool = True) -> str:
    """``<NAME/>`` when unset (-1 or ""), else the value (VirtualNetwork::to_xml_extended)."""
    if value in (-1, ""):
        return f"<{name}/>"
    return cdata(name, value) if as_cdata else el(name, value)


def _vector(name: str, members: dict[str, str], skip: tuple[str, ...] = ()) -> str:
    return (f"<{name}>" + "".join(cdata(k, members[k]) for k in sorted(members)
                                  if k not in skip) + f"</{name}>")


def _head(doc: dict[str, Any]) -> str:
    return (
        "<VNET>" + owner_head(doc) + lock(doc) + permissions(doc["perms"])
        + ids("CLUSTERS", doc["clusters"]) + cdata("BRIDGE", doc["bridge"])
        + cdata("BRIDGE_TYPE", doc["bridge_type"]) + cdata("STATE", doc["state"])
        + cdata("PREV_STATE", doc["prev_state"])
        + _optional("PARENT_NETWORK_ID", doc["parent_id"], as_cdata=False)
        + _optional("TEMPLATE_ID", doc["template_id"], as_cdata=False)
        + _optional("VN_MAD", doc["vn_mad"]) + _optional("PHYDEV", doc["phydev"])
        + _optional("VLAN_ID", doc["vlan_id"]) + _optional("OUTER_VLAN_ID", doc["outer_vlan_id"])
        + f"<VLAN_ID_AUTOMATIC>{int(doc['vlan_id_automatic'])}</VLAN_ID_AUTOMATIC>"
        f"<OUTER_VLAN_ID_AUTOMATIC>{int(doc['outer_vlan_id_automatic'])}"
        "</OUTER_VLAN_ID_AUTOMATIC>"
        + f"<USED_LEASES>{sum(ar_.used(a) for a in doc['ars'])}</USED_LEASES>"
        + ids("VROUTERS", doc["vrouters"]) + ids("UPDATED_VMS", doc["updated"])
        + ids("OUTDATED_VMS", doc["outdated"]) + ids("UPDATING_VMS", doc["updating"])
        + ids("ERROR_VMS", doc["error"]) + template(doc["template"])
    )


def _full_ar(ar: dict[str, Any], visible: Visible) -> str:
    parts = ["<AR>"]
    parts += [cdata(k, v) for k, v in sorted(ar["attrs"].items()) if k != "ALLOCATED"]
    parts += [cdata(k, v) for k, v in ar_.ends(ar)]
    parts.append(f"<USED_LEASES>{ar_.used(ar)}</USED_LEASES>")
    if not ar["allocated"]:
        parts.append("<LEASES/>")
    else:
        parts.append("<LEASES>" + "".join(_vector("LEASE", row)
                                          for row in ar_.lease_rows(ar, visible))
                     + "</LEASES>")
    parts.append("</AR>")
    return "".join(parts)


def vnet(doc: dict[str, Any], visible: Visible = ALL) -> str:
    """vn.info: every AR with its ends, USED_LEASES and the leases ``visible`` lets through."""
    ars = "".join(_full_ar(a, visible) for a in doc["ars"])
    return _head(doc) + f"<AR_POOL>{ars}</AR_POOL></VNET>"


def vnet_short(doc: dict[str, Any]) -> str:
    """vnpool.info: each AR's stored attributes (ALLOCATED included), no leases."""
    ars = "".join(_vector("AR", a["attrs"]) for a in doc["ars"])
    return _head(doc) + f"<AR_POOL>{ars}</AR_POOL></VNET>"


def secgroup(doc: dict[str, Any]) -> str:
    return (
        "<SECURITY_GROUP>" + owner_head(doc) + permissions(doc["perms"])
        + ids("UPDATED_VMS", doc["updated"]) + ids("OUTDATED_VMS", doc["outdated"])
        + ids("UPDATING_VMS", doc["updating"]) + ids("ERROR_VMS", doc["error"])
        + template(doc["template"]) + "</SECURITY_GROUP>"
    )


def vntemplate(doc: dict[str, Any]) -> str:
    return (
        "<VNTEMPLATE>" + owner_head(doc) + lock(doc) + permissions(doc["perms"])
        + f"<REGTIME>{doc['regtime']}</REGTIME>" + template(doc["template"]) + "</VNTEMPLATE>"
    )
