"""Virtual networks as documents: a new network from its template (VirtualNetwork::insert, then
the IPAM's vnet_create that turns it READY with its address ranges), and what an update keeps
(post_update_template). Leases are in ``leases.py``."""

from __future__ import annotations

from typing import Any

from oneserver import numeric
from oneserver.model import address_range
from oneserver.template import Template

Doc = dict[str, Any]

# VirtualNetwork::VirtualNetworkState
INIT, READY, LOCK_CREATE, LOCK_DELETE, DONE, ERROR, UPDATE_FAILURE = range(7)
STATE_NAMES = ("INIT", "READY", "LOCK_CREATE", "LOCK_DELETE", "DONE", "ERROR",
               "UPDATE_FAILURE")

# What each VN driver needs (VirtualNetwork::parse_phydev_vlans), and its default bridge type
# (parse_bridge_type).
_NEEDS = {"dummy": ("BRIDGE",), "802.1Q": ("PHYDEV", "VLAN_ID"), "vxlan": ("PHYDEV", "VLAN_ID"),
          "ovswitch_vxlan": ("OUTER_VLAN_ID",)}
# oned.conf's VN_MAD_CONF: the bridge types each driver takes, the first the default.
_BRIDGE_TYPES = {
    "dummy": ("linux",), "802.1Q": ("linux",), "fw": ("linux",),
    "ovswitch": ("openvswitch", "openvswitch_dpdk"), "vxlan": ("linux",),
    "ovswitch_vxlan": ("openvswitch",), "bridge": ("linux",), "elastic": ("linux",),
    "nodeport": ("linux",),
}


class NetworkError(ValueError):
    """A network template oned refuses; str() is oned's message."""


def _vlan(tmpl: Template, name: str, auto_name: str) -> tuple[str, bool]:
    """VLAN_ID (or OUTER_VLAN_ID) as a number, else whether AUTOMATIC_* asks for one."""
    value = numeric.leading_int(tmpl.get_str(name))
    if value is not None:
        tmpl.set(name, str(value))
        tmpl.remove(auto_name)
        return str(value), False
    auto = tmpl.get_str(auto_name).upper() == "YES"
    tmpl.remove(auto_name)
    return "", auto


def _bridge_type(vn_mad: str, given: str) -> str:
    allowed = _BRIDGE_TYPES.get(vn_mad)
    if allowed is None:
        raise NetworkError(f'VN_MAD named "{vn_mad}" is not defined in oned.conf')
    given = given.strip()
    if given == "":
        return allowed[0]
    if given not in allowed:
        raise NetworkError(f'Attribute BRIDGE_TYPE has wrong value "{given}" for VN_MAD_CONF '
                           f"{vn_mad} in oned.conf")
    return given


def _security_groups(tmpl: Template) -> str:
    """SECURITY_GROUPS always includes the default group 0."""
    given = tmpl.get_str("SECURITY_GROUPS")
    tmpl.remove("SECURITY_GROUPS")
    ids = address_range.security_groups(given + ",0") if given else {0}
    return address_range.join(ids)


def new_doc(oid: int, owner: Doc, tmpl: Template, clusters: list[int], parent: int = -1,
            template_id: int = -1) -> Doc:
    """The network VirtualNetwork::insert makes of ``tmpl`` (NetworkError when it refuses),
    made READY with its address ranges at once: the internal IPAM has nothing to ask a driver
    for. An AR it refuses leaves the network in ERROR with the reason in its template, as the
    IPAM's vnet_create answer does in oned."""
    tmpl = tmpl.copy()
    tmpl.remove("TEMPLATE_ID")
    name = tmpl.get_str("NAME")
    prefix = tmpl.get_str("TEMPLATE_NAME")
    tmpl.remove("NAME")
    tmpl.remove("TEMPLATE_NAME")
    if not name and not prefix:
        raise NetworkError("No NAME in template for Virtual Network.")
    name = name or f"{prefix}-{oid}"
    vn_mad = tmpl.get_str("VN_MAD")
    tmpl.remove("VN_MAD")
    if not vn_mad:
        raise NetworkError("No VN_MAD in template for Virtual Network.")
    phydev = tmpl.get_str("PHYDEV")
    tmpl.remove("PHYDEV")
    bridge = tmpl.get_str("BRIDGE")
    tmpl.remove("BRIDGE")
    vlan_id, vlan_auto = _vlan(tmpl, "VLAN_ID", "AUTOMATIC_VLAN_ID")
    outer_id, outer_auto = _vlan(tmpl, "OUTER_VLAN_ID", "AUTOMATIC_OUTER_VLAN_ID")
    for need in _NEEDS.get(vn_mad, ()):
        have = {"BRIDGE": bridge, "PHYDEV": phydev, "VLAN_ID": vlan_id or vlan_auto,
                "OUTER_VLAN_ID": outer_id or outer_auto}[need]
        if not have:
            raise NetworkError({
                "BRIDGE": f"BRIDGE is mandatory for driver {vn_mad}",
                "PHYDEV": f"PHYDEV is mandatory for driver {vn_mad}",
                "VLAN_ID": f"VLAN_ID (or AUTOMATIC_VLAN_ID) is mandatory for driver {vn_mad}",
                "OUTER_VLAN_ID": f"OUTER_VLAN_ID (or AUTOMATIC) is mandatory for driver "
                                 f"{vn_mad}"}[need])
    bridge_type = _bridge_type(vn_mad, tmpl.get_str("BRIDGE_TYPE"))
    tmpl.remove("BRIDGE_TYPE")
    if not bridge:
        bridge = f"onebr.{vlan_id}" if vlan_id else f"onebr{oid}"
    ar_defs = tmpl.vectors("AR")
    tmpl.remove("AR")
    doc: Doc = {
        **owner, "id": oid, "name": name, "clusters": sorted(clusters), "bridge": bridge,
        "bridge_type": bridge_type, "state": LOCK_CREATE, "prev_state": INIT,
        "parent_id": parent, "template_id": template_id, "vn_mad": vn_mad, "phydev": phydev,
        "vlan_id": vlan_id, "outer_vlan_id": outer_id, "vlan_id_automatic": vlan_auto,
        "outer_vlan_id_automatic": outer_auto, "vrouters": [], "updated": [], "outdated": [],
        "updating": [], "error": [], "ars": [], "next_ar": 0,
    }
    for k, v in (("VN_MAD", vn_mad), ("PHYDEV", phydev), ("BRIDGE_TYPE", bridge_type),
                 ("BRIDGE", bridge), ("SECURITY_GROUPS", _security_groups(tmpl))):
        tmpl.add(k, v)
    doc["template"] = tmpl.to_json()
    normalize(doc)
    doc["state"] = doc["prev_state"] = READY  # saved by the IPAM's answer: PREV_STATE too
    try:
        for ar_def in ar_defs:
            add_ar(doc, ar_def)
    except address_range.ARError as exc:
        doc["state"] = doc["prev_state"] = ERROR
        t = Template.from_json(doc["template"])
        t.set("ERROR", str(exc))
        doc["template"] = t.to_json()
    return doc


def normalize(doc: Doc) -> None:
    """What VirtualNetwork::post_update_template writes back into the template: the driver
    attributes from the network (VLAN_ID and OUTER_VLAN_ID even when empty)."""
    tmpl = Template.from_json(doc["template"])
    for name, value in (("VN_MAD", doc["vn_mad"]), ("BRIDGE_TYPE", doc["bridge_type"]),
                        ("PHYDEV", doc["phydev"]), ("BRIDGE", doc["bridge"])):
        tmpl.set(name, value)
    tmpl.remove("AUTOMATIC_VLAN_ID")
    tmpl.remove("AUTOMATIC_OUTER_VLAN_ID")
    for name, key, auto in (("VLAN_ID", "vlan_id", "vlan_id_automatic"),
                            ("OUTER_VLAN_ID", "outer_vlan_id", "outer_vlan_id_automatic")):
        if doc[auto]:
            tmpl.remove(name)
        else:
            tmpl.set(name, doc[key])
    doc["template"] = tmpl.to_json()


def updated_template(doc: Doc, new: Template) -> None:
    """Take ``new`` as the network's template (one.vn.update), as post_update_template does:
    VN_MAD is required; BRIDGE, PHYDEV, VLAN_ID and BRIDGE_TYPE come from it into the network."""
    new = new.copy()
    new.remove("TEMPLATE_ID")
    vn_mad = new.get_str("VN_MAD")
    if not vn_mad:
        raise NetworkError("No VN_MAD in template for Virtual Network.")
    given_type = new.get_str("BRIDGE_TYPE")
    if vn_mad != doc["vn_mad"] and given_type == doc["bridge_type"]:
        given_type = ""
    doc["bridge_type"] = _bridge_type(vn_mad, given_type)
    doc["vn_mad"] = vn_mad
    doc["phydev"] = new.get_str("PHYDEV")
    if not doc["vlan_id_automatic"]:
        doc["vlan_id"] = new.get_str("VLAN_ID")
    if not doc["outer_vlan_id_automatic"]:
        doc["outer_vlan_id"] = new.get_str("OUTER_VLAN_ID")
    if new.get_str("BRIDGE"):
        doc["bridge"] = new.get_str("BRIDGE")
    doc["template"] = new.to_json()
    normalize(doc)


def add_ar(doc: Doc, definition: dict[str, str]) -> dict[str, Any]:
    """A new AR in the network (ARError when oned refuses its definition)."""
    ar = address_range.new(definition, doc["next_ar"])
    doc["next_ar"] += 1
    doc["ars"].append(ar)
    return ar


def find_ar(doc: Doc, ar_id: int) -> dict[str, Any] | None:
    return next((a for a in doc["ars"] if address_range.ar_id(a) == ar_id), None)


def used(doc: Doc) -> int:
    return sum(address_range.used(a) for a in doc["ars"])


def security_groups(doc: Doc) -> set[int]:
    return address_range.security_groups(Template.from_json(doc["template"]).get_str(
        "SECURITY_GROUPS"))
