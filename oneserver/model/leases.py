"""The ledger of IP/MAC leases: which VM (or hold, or reservation) has which address of which
network. Each lease lives in its network's document (the AR's ``allocated`` map, oned's
ALLOCATED) and changes in the same transaction as the change it counts: a VM's allocate takes
its NICs' leases, the VM reaching DONE gives them back, a hotplugged NIC takes or frees one.
Networks are row-locked (PostgreSQL) in id order before they are read, so concurrent calls
through several API workers never hand out one address twice; SQLite's write transaction
serializes them anyway.

A NIC gets the attributes VirtualNetwork::nic_attribute writes (NETWORK, NETWORK_ID, BRIDGE,
BRIDGE_TYPE, VN_MAD, PHYDEV, VLAN_ID, TARGET, CLUSTER_ID, AR_ID, IP/MAC/IP6…, the inherited
attributes of oned.conf's INHERIT_VNET_ATTR such as GATEWAY and DNS, SECURITY_GROUPS)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from oneserver import db, numeric, store
from oneserver.errors import INTERNAL, OneError
from oneserver.model import address_range as ar_
from oneserver.model import networks, secgroups
from oneserver.template import Template

Doc = dict[str, Any]
Vector = dict[str, str]
# Raises when the caller may not USE an object (kind, document).
MayUse = Callable[[str, Doc], None]

# oned.conf INHERIT_VNET_ATTR (7.4.0 defaults).
INHERIT = (
    "VLAN_TAGGED_ID", "FILTER", "FILTER_IP_SPOOFING", "FILTER_MAC_SPOOFING", "MTU", "METRIC",
    "IP6_METRIC", "METHOD", "IP6_METHOD", "INBOUND_AVG_BW", "INBOUND_PEAK_BW",
    "INBOUND_PEAK_KB", "OUTBOUND_AVG_BW", "OUTBOUND_PEAK_BW", "OUTBOUND_PEAK_KB", "CONF",
    "BRIDGE_CONF", "OVS_BRIDGE_CONF", "IP_LINK_CONF", "EXTERNAL_IP", "AWS_ALLOCATION_ID",
    "VULTR_IP_ID", "GATEWAY", "DNS", "VXLAN_MODE", "VXLAN_TEP", "VXLAN_MC", "CVLANS",
    "QINQ_TYPE", "TRUST", "SPOOFCHK",
)
HOLD = ar_.owner(ar_.VM, -1)
_NIC_NAME = r"NIC[0-9]+(_ALIAS[0-9]+)?"


def failed(message: str) -> OneError:
    return OneError(INTERNAL, message)


# ----------------------------------------------------------------------------- networks

class Networks:
    """The networks and security groups one call changes, each read (row-locked) once with a
    plain query (this is the allocate's hot path) and saved at the end. Networks are locked
    before security groups, each kind in id order, so two calls never wait in a cycle."""

    def __init__(self) -> None:
        self.docs: dict[int, Doc | None] = {}
        self.groups: dict[int, Doc | None] = {}
        self.changed_groups: set[int] = set()

    @staticmethod
    def _fetch(kind: str, oid: int) -> Doc | None:
        table = store.KINDS[kind].model._meta.table_name
        lock = "" if db.is_sqlite() else " FOR UPDATE"
        rows = db.raw(f'SELECT doc FROM "{table}" WHERE oid = ?{lock}', oid)
        return json.loads(rows[0][0]) if rows else None

    def get(self, oid: int) -> Doc | None:
        if oid not in self.docs:
            self.docs[oid] = self._fetch("vn", oid)
        return self.docs[oid]

    def group(self, oid: int) -> Doc | None:
        if oid not in self.groups:
            self.groups[oid] = self._fetch("secgroup", oid)
        return self.groups[oid]

    def lock(self, oids: Iterable[int], groups: Iterable[int] = ()) -> None:
        for oid in sorted(oids):
            self.get(oid)
        for oid in sorted(groups):
            self.group(oid)

    def save(self) -> None:
        for doc in self.docs.values():
            if doc is not None:
                store.save("vn", doc)
        for oid in sorted(self.changed_groups):
            doc = self.groups.get(oid)
            if doc is not None:
                store.save("secgroup", doc)


def _network_id(nic: Vector, owner_uid: int) -> int:
    """The network a NIC names (VirtualNetworkPool::get_nic_by_id / get_nic_by_name), with
    oned's messages when there is none."""
    given = nic.get("NETWORK_ID", "")
    if given != "":
        oid = numeric.leading_int(given)
        if oid is None:
            raise failed(f"Virtual network with ID: {given} does not exist")
        return oid
    if nic.get("NETWORK_UID", "") != "":
        uid = numeric.leading_int(nic["NETWORK_UID"])
        if uid is None:
            raise failed("Cannot get user in NETWORK_UID")
    elif nic.get("NETWORK_UNAME", "") != "":
        found = store.name_taken("user", nic["NETWORK_UNAME"])
        if found is None:
            raise failed("User set in NETWORK_UNAME does not exist")
        uid = found
    else:
        uid = owner_uid
    oid = store.name_taken("vn", nic["NETWORK"], uid)
    if oid is None:
        raise failed(f"User {uid} does not own a network with name: {nic['NETWORK']} . Set "
                     "NETWORK_UNAME or NETWORK_UID of owner in NIC.")
    return oid


def names_network(nic: Vector) -> bool:
    return nic.get("NETWORK_ID", "") != "" or nic.get("NETWORK", "") != ""


def _lease(net: Doc, nic: Vector, vm_id: int) -> bool:
    """One address of ``net`` for VM ``vm_id``, written into ``nic`` (nic_attribute)."""
    nic["NETWORK"] = net["name"]
    nic["NETWORK_ID"] = str(net["id"])
    nic["BRIDGE"] = net["bridge"]
    for name, value in (("VN_MAD", net["vn_mad"]), ("PHYDEV", net["phydev"]),
                        ("VLAN_ID", net["vlan_id"]), ("OUTER_VLAN_ID", net["outer_vlan_id"])):
        if value:
            nic[name] = value
    if net["parent_id"] != -1:
        nic["PARENT_NETWORK_ID"] = str(net["parent_id"])
    if not nic.get("TARGET", ""):
        nic["TARGET"] = f"one-{vm_id}-{nic['NIC_ID']}"
    nic["CLUSTER_ID"] = ",".join(str(c) for c in net["clusters"])
    if net["bridge_type"]:
        nic["BRIDGE_TYPE"] = net["bridge_type"]
    given = [(k, nic[k]) for k in ("IP", "IP6", "MAC") if nic.get(k, "")]
    if len(given) > 1:
        return False
    pack = ar_.owner(ar_.VM, vm_id)
    floating = (nic.get("FLOATING_IP", "").upper() == "YES"
                and nic.get("FLOATING_ONLY", "").upper() == "YES")
    if floating:
        ok = True
    elif given:
        ok = any(ar_.allocate_at(a, *given[0], pack, nic, INHERIT) for a in net["ars"])
    else:
        ok = any(ar_.allocate(a, pack, nic, INHERIT) for a in net["ars"])
    tmpl = Template.from_json(net["template"])
    for name in INHERIT:
        value = tmpl.get(name)
        if isinstance(value, dict):
            for k, v in value.items():
                if not nic.get(k, "") and v:
                    nic[k] = v
        elif value and not nic.get(name, ""):
            nic[name] = value
    sgs = ar_.security_groups(nic.get("SECURITY_GROUPS", "")) | networks.security_groups(net)
    if nic.get("AR_ID", "") and (ar := networks.find_ar(net, int(nic["AR_ID"]))) is not None:
        sgs |= ar_.security_groups(ar["attrs"].get("SECURITY_GROUPS", ""))
    nic["SECURITY_GROUPS"] = ar_.join(sgs)
    if ok:
        net["updated"] = sorted({*net["updated"], vm_id})
    return ok


def _take(nets: Networks, nic: Vector, vm_id: int, owner_uid: int) -> None:
    net = nets.get(_network_id(nic, owner_uid))
    if net is None:
        raise failed(f"Virtual network with ID: {nic.get('NETWORK_ID') or nic.get('NETWORK')}"
                     " does not exist")
    if not _lease(net, nic, vm_id):
        raise failed(f"Cannot get IP/MAC lease from virtual network {net['id']}.")


def _authorize(nets: Networks, nics: list[Vector], owner_uid: int, may_use: MayUse) -> None:
    """Lock the networks the NICs name and the security groups they would get, and check
    USE on each (VirtualNetworkPool::authorize_nic); a network that does not exist is refused
    later, by the lease."""
    ids: set[int] = set()
    for nic in nics:
        if names_network(nic):
            try:
                ids.add(_network_id(nic, owner_uid))
            except OneError:
                continue
    nets.lock(ids)
    groups: set[int] = set()
    for nic in nics:
        if not names_network(nic):
            continue
        try:
            net = nets.get(_network_id(nic, owner_uid))
        except OneError:
            continue
        if net is None:
            continue
        may_use("vn", net)
        groups |= ar_.security_groups(nic.get("SECURITY_GROUPS", "")) | \
            networks.security_groups(net)
        for a in net["ars"]:
            groups |= ar_.security_groups(a["attrs"].get("SECURITY_GROUPS", ""))
    nets.lock(set(), groups)
    for oid in sorted(groups):
        sg = nets.group(oid)
        if sg is not None:
            may_use("secgroup", sg)


def _rules(nets: Networks, sg_ids: set[int], vm_id: int) -> list[dict[str, str]]:
    """The VM's SECURITY_GROUP_RULEs of ``sg_ids``, each group counting the VM."""
    docs = [d for oid in sorted(sg_ids) if (d := nets.group(oid)) is not None]
    nets.changed_groups |= {d["id"] for d in docs}
    return secgroups.vm_rules(docs, vm_id)


def _name(nic: Vector, default: str) -> str:
    name = nic.get("NAME", "")
    if not name:
        nic["NAME"] = default
        return default
    if re.fullmatch(_NIC_NAME, name):  # taken by oned's own names: prefixed, as oned does
        name = "_" + name
        nic["NAME"] = name
    return name


# ----------------------------------------------------------------------------- VM allocate

def attach_vm(vm_id: int, system: Template, owner_uid: int, may_use: MayUse) -> None:
    """Give every NIC and NIC_ALIAS of a new VM its lease (VirtualMachineNics::
    get_network_leases) and the VM its SECURITY_GROUP_RULEs and cluster requirements.
    Within the caller's transaction: a refusal (OneError) leaves nothing changed."""
    default = system.get("NIC_DEFAULT")
    nics = system.vectors("NIC")
    aliases = system.vectors("NIC_ALIAS")
    nets = Networks()
    _authorize(nets, [*nics, *aliases], owner_uid, may_use)
    sg_ids: set[int] = set()
    by_name: dict[str, dict[str, Any]] = {}
    for nic_id, nic in enumerate(nics):
        mode = nic.get("NETWORK_MODE", "").upper()
        if isinstance(default, dict) and mode != "AUTO":
            for k, v in default.items():
                nic.setdefault(k, v)
        nic["NIC_ID"] = str(nic_id)
        if mode in ("AUTO", "DUMMY"):
            _name(nic, f"NIC{nic_id}")
            if mode == "DUMMY" and not nic.get("MAC", ""):
                nic["MAC"] = ar_.mac_to_s((ar_.MAC_PREFIX << 32) | secrets.randbits(32))
            continue
        if names_network(nic):
            _take(nets, nic, vm_id, owner_uid)
            sg_ids |= ar_.security_groups(nic.get("SECURITY_GROUPS", ""))
        by_name[_name(nic, f"NIC{nic_id}")] = {"id": nic_id, "aliases": []}
    for alias_id, alias in enumerate(aliases, start=len(nics)):
        parent = by_name.get(alias.get("PARENT", ""))
        if parent is None:
            raise failed(f"NIC named {alias.get('PARENT', '')} not found for alias")
        alias["PARENT_ID"] = str(parent["id"])
        alias["ALIAS_ID"] = str(len(parent["aliases"]))
        parent["aliases"].append(alias_id)
        alias["NIC_ID"] = str(alias_id)
        if names_network(alias):
            _take(nets, alias, vm_id, owner_uid)
        _name(alias, f"NIC{parent['id']}_ALIAS{alias_id}")
    for nic in nics:
        entry = by_name.get(nic.get("NAME", ""))
        if entry and entry["aliases"]:
            nic["ALIAS_IDS"] = ",".join(str(i) for i in entry["aliases"])
    for rule in _rules(nets, sg_ids, vm_id):
        system.add("SECURITY_GROUP_RULE", rule)
    nets.save()
    requirements(system, [d for n in (*nics, *aliases) if n.get("NETWORK_ID", "").isdigit()
                          and (d := nets.docs.get(int(n["NETWORK_ID"]))) is not None])


def requirements(system: Template, used_nets: list[Doc]) -> None:
    """The clusters every network of the VM is in (VirtualMachine::automatic_requirements):
    the VM may only run on a host of one of them."""
    if not used_nets:
        return
    clusters = set(used_nets[0]["clusters"])
    for net in used_nets[1:]:
        clusters &= set(net["clusters"])
    if not clusters:
        raise failed("Incompatible clusters in NIC. Network for NIC is not in the same "
                     "cluster as the one used by other VM elements")
    ids = sorted(clusters)
    host = " | ".join(f"CLUSTER_ID = {c}" for c in ids)
    ds = " | ".join(f'"CLUSTERS/ID" @> {c}' for c in ids)
    current = system.get_str("AUTOMATIC_REQUIREMENTS", "!(PIN_POLICY = PINNED)")
    system.set("AUTOMATIC_REQUIREMENTS", f"({host}) & {current}")
    system.set("AUTOMATIC_DS_REQUIREMENTS", f"({ds})")
    system.set("AUTOMATIC_NIC_REQUIREMENTS", f"({ds})")


# ----------------------------------------------------------------------------- giving back

def _free_nic(nets: Networks, nic: Vector, vm_id: int) -> None:
    oid = numeric.to_id(nic.get("NETWORK_ID", ""))
    ar_id = numeric.to_id(nic.get("AR_ID", ""))
    net = None if oid is None or ar_id is None else nets.get(oid)
    if net is None or ar_id is None:
        return
    ar = networks.find_ar(net, ar_id)
    if ar is not None:
        pack = ar_.owner(ar_.VM, vm_id)
        if nic.get("SHARED", "").upper() == "YES":
            what = "IP" if nic.get("IP", "") else "IP6"
            ar_.free(ar, what, nic.get(what, ""), pack)
        else:
            ar_.free(ar, "MAC", nic.get("MAC", ""), pack)
    for name in secgroups.VM_LISTS:
        if vm_id in net[name] and not _still_uses(net, vm_id):
            net[name].remove(vm_id)


def _still_uses(net: Doc, vm_id: int) -> bool:
    pack = ar_.owner(ar_.VM, vm_id)
    return any(pack in owners for a in net["ars"] for owners in a["allocated"].values())


def release_vm(vm: Doc) -> None:
    """Give back every lease of a VM that reached DONE, and its place in its security groups.
    Once per VM (DONE is final); within the caller's transaction."""
    if vm.get("leases_released"):
        return
    vm["leases_released"] = True
    tmpl = Template.from_json(vm["template"])
    nics = [*tmpl.vectors("NIC"), *tmpl.vectors("NIC_ALIAS")]
    nets = Networks()
    nets.lock({n for nic in nics if (n := numeric.to_id(nic.get("NETWORK_ID", "")))
               is not None})
    for nic in nics:
        _free_nic(nets, nic, vm["id"])
    sgs = {n for r in tmpl.vectors("SECURITY_GROUP_RULE")
           if (n := numeric.to_id(r.get("SECURITY_GROUP_ID", ""))) is not None}
    for nic in nics:
        sgs |= ar_.security_groups(nic.get("SECURITY_GROUPS", ""))
    _forget(nets, sgs, vm["id"])
    nets.save()


def _forget(nets: Networks, sg_ids: set[int], vm_id: int) -> None:
    nets.lock(set(), sg_ids)
    for oid in sorted(sg_ids):
        sg = nets.group(oid)
        if sg is not None:
            secgroups.uses(sg, vm_id, False)
            nets.changed_groups.add(oid)


# ----------------------------------------------------------------------------- hotplug

def attach_nic(vm: Doc, nic: Vector, may_use: MayUse) -> Vector:
    """A new NIC for a VM (one.vm.attachnic): its lease and rules, within the caller's
    transaction. Returns the NIC as written into the VM's TEMPLATE."""
    tmpl = Template.from_json(vm["template"])
    existing = [int(n["NIC_ID"]) for n in (*tmpl.vectors("NIC"), *tmpl.vectors("NIC_ALIAS"))
                if n.get("NIC_ID", "").isdigit()]
    nic = dict(nic)
    nic_id = max(existing, default=-1) + 1
    nic["NIC_ID"] = str(nic_id)
    nets = Networks()
    _authorize(nets, [nic], vm["uid"], may_use)
    sg_ids: set[int] = set()
    if names_network(nic):
        _take(nets, nic, vm["id"], vm["uid"])
        sg_ids = ar_.security_groups(nic.get("SECURITY_GROUPS", ""))
    _name(nic, f"NIC{nic_id}")
    have = {r.get("SECURITY_GROUP_ID") for r in tmpl.vectors("SECURITY_GROUP_RULE")}
    tmpl.add("NIC", nic)
    for rule in _rules(nets, sg_ids, vm["id"]):
        if rule["SECURITY_GROUP_ID"] not in have:
            tmpl.add("SECURITY_GROUP_RULE", rule)
    nets.save()
    vm["template"] = tmpl.to_json()
    return nic


def detach_nic(vm: Doc, nic_id: int) -> Vector | None:
    """Take NIC ``nic_id`` (and its aliases) out of the VM's TEMPLATE and give back their
    leases; the rules of groups no other NIC uses go too. None when there is no such NIC."""
    tmpl = Template.from_json(vm["template"])
    nics = tmpl.vectors("NIC")
    gone = next((n for n in nics if n.get("NIC_ID") == str(nic_id)), None)
    if gone is None:
        return None
    aliases = [a for a in tmpl.vectors("NIC_ALIAS") if a.get("PARENT_ID") == str(nic_id)]
    nets = Networks()
    nets.lock({n for x in (gone, *aliases) if (n := numeric.to_id(x.get("NETWORK_ID", "")))
               is not None})
    for x in (gone, *aliases):
        _free_nic(nets, x, vm["id"])
    keep = [(k, v) for k, v in tmpl.items if not (isinstance(v, dict) and (
        (k == "NIC" and v is gone) or (k == "NIC_ALIAS" and any(v is a for a in aliases))))]
    still: set[int] = set()
    for k, v in keep:
        if k == "NIC" and isinstance(v, dict):
            still |= ar_.security_groups(v.get("SECURITY_GROUPS", ""))
    dropped = ar_.security_groups(gone.get("SECURITY_GROUPS", "")) - still
    keep = [(k, v) for k, v in keep if not (k == "SECURITY_GROUP_RULE" and isinstance(v, dict)
                                            and numeric.to_id(v.get("SECURITY_GROUP_ID", ""))
                                            in dropped)]
    _forget(nets, dropped, vm["id"])
    nets.save()
    vm["template"] = Template(keep).to_json()
    return gone


# ----------------------------------------------------------------------------- hold, reserve

def hold(net: Doc, lease: Vector, release: bool) -> None:
    """one.vn.hold / one.vn.release of the address ``lease`` names (IP, IP6 or MAC, and
    AR_ID to look in one AR only)."""
    given = [(k, lease[k]) for k in ("IP", "IP6", "MAC") if lease.get(k, "")]
    if not given:
        raise failed("Missing MAC, IP or IP6.")
    if len(given) > 1:
        raise failed("Only one attribute MAC, IP or IP6 can be set.")
    ars = net["ars"]
    if lease.get("AR_ID", "") != "":
        ar_id = numeric.leading_uint(lease["AR_ID"])
        ars = [a for a in ars if ar_id is not None and ar_.ar_id(a) == ar_id]
    what, value = given[0]
    if release:
        for a in ars:
            ar_.free(a, what, value, HOLD)
        return
    if not any(ar_.allocate_at(a, what, value, HOLD, None, ()) for a in ars):
        raise failed("Address is not part of the address range or in use.")


def free_reservation(parent: Doc, reservation_id: int, ar: dict[str, Any] | None = None
                     ) -> int:
    """Give back to ``parent`` the addresses reservation ``reservation_id`` holds (those of
    one of its ARs, ``ar``, or all); how many."""
    pack = ar_.owner(ar_.NET, reservation_id)
    if ar is None:
        return sum(ar_.free_owner(a, pack) for a in parent["ars"])
    source = networks.find_ar(parent, int(ar["attrs"].get("PARENT_NETWORK_AR_ID", "-1")))
    if source is None:
        return 0
    first = ar_.index_of(source, "MAC", ar["attrs"].get("MAC", ""))
    freed = 0
    if first is not None:
        for i in range(first, first + ar_.size(ar)):
            owners = source["allocated"].get(str(i), [])
            if pack in owners:
                owners.remove(pack)
                freed += 1
                if not owners:
                    del source["allocated"][str(i)]
        ar_.sync(source)
    return freed
