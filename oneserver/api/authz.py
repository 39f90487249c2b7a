"""Who may call what: oned 7.4's authorization operation for every method, in one table.

Each method names the object kind it acts on and the right the caller needs on it (oned's
``AuthRequest`` operations: USE, MANAGE, ADMIN, or CREATE on a kind), plus the rights it needs
on the other objects the call names (the host of a deploy, the new owner of a chown, …). The
rights come from ``src/rm/api/*API.h`` (each class's ``auth_op``), the handlers' extra
``add_auth`` calls, and the ``VM_*_OPERATIONS`` of ``oned.conf`` for ``one.vm.action``.
Handlers never name a right: they ask :meth:`Context.authorize` about an object, and the
table says which right that is. ``tests/api/test_authz_table.py`` walks this table for every
registered method and every kind of caller.

The restricted attributes of ``oned.conf`` (``*_RESTRICTED_ATTR``: what only the oneadmin
group may write in a template) live here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from oneserver.errors import AUTHORIZATION, OneError
from oneserver.model.acl import ADMIN, CREATE, MANAGE, USE
from oneserver.template import Template

NONE = 0  # a valid session is enough (one.system.version, …)


@dataclass(frozen=True)
class Operation:
    kind: str | None  # the kind of object the call acts on (None: no object)
    right: int  # needed on that object, or CREATE on the kind
    also: Mapping[str, int] = field(default_factory=dict)  # other objects: kind -> right
    listing: bool = False  # a pool call: it lists what the caller may USE
    ignores_lock: bool = False  # oned's *_NO_LCK operations (lock, unlock, info)
    creates: str | None = None  # the kind of object the call makes (CREATE on that kind)

    def right_on(self, kind: str, oid: int) -> int:
        """The right this operation needs on object ``oid`` of ``kind`` (-1 and a kind the
        call creates: CREATE on the kind)."""
        if oid < 0 and kind == self.creates:
            return CREATE
        if kind == self.kind:
            return self.right
        try:
            return self.also[kind]
        except KeyError:
            raise AssertionError(f"the authorization table gives no right on {kind!r}"
                                 ) from None


def _op(kind: str | None, right: int, *, listing: bool = False, ignores_lock: bool = False,
        creates: str | None = None, **also: int) -> Operation:
    if right == CREATE:
        creates = kind
    return Operation(kind, right, also, listing, ignores_lock, creates)


def _pool(kind: str) -> Operation:
    return _op(kind, USE, listing=True, ignores_lock=True)


def _info(kind: str) -> Operation:
    return _op(kind, USE, ignores_lock=True)


def _shared(prefix: str, kind: str, default: int, *verbs: str) -> dict[str, Operation]:
    """The generic verbs of a kind (SharedAPI): update/rename/delete take the class's
    operation; chmod needs ADMIN too when it changes ADMIN bits (see CHMOD_ADMIN_BITS); chown
    needs MANAGE on the new owner and USE on the new group; lock and unlock ignore locks."""
    ops = {
        "info": _info(kind),
        "update": _op(kind, default),
        "rename": _op(kind, default),
        "delete": _op(kind, default),
        "chmod": _op(kind, default),
        "chown": _op(kind, default, user=MANAGE, group=USE),
        "lock": _op(kind, MANAGE, ignores_lock=True),
        "unlock": _op(kind, MANAGE, ignores_lock=True),
    }
    return {f"{prefix}.{verb}": ops[verb] for verb in verbs}


# chmod of ADMIN bits (owner_a, group_a, other_a) needs ADMIN on the object (SharedAPI::chmod).
CHMOD_ADMIN_BITS = ADMIN
# one.vn.reserve into an existing reservation needs MANAGE on it (besides USE on the parent).
RESERVATION_TARGET = MANAGE
# one.vn.add_ar/rm_ar on a network made from a VN template need MANAGE only (ADMIN otherwise).
RANGES_OF_TEMPLATED = MANAGE

TABLE: dict[str, Operation] = {
    # --- system: no object -------------------------------------------------------------
    "one.system.version": _op(None, NONE),
    "one.system.config": _op(None, NONE),  # values oned hides are hidden outside oneadmin
    # xmlrpc-c's own methods take no session; system.multicall's calls are each authorized
    # as their own method.
    **{f"system.{name}": _op(None, NONE) for name in (
        "listMethods", "methodExist", "methodHelp", "methodSignature", "multicall",
        "shutdown", "capabilities", "getCapabilities")},
    # --- VMs (VirtualMachineAPI: MANAGE; deploy/migrate also MANAGE the host, USE the
    # system datastore; allocate USEs every image it takes) -------------------------------
    **_shared("one.vm", "vm", MANAGE, "info", "update", "rename", "chmod", "chown",
              "lock", "unlock"),
    "one.vm.allocate": _op("vm", CREATE, image=USE, vn=USE, secgroup=USE),
    "one.vm.action": _op("vm", MANAGE),  # refined per action by VM_ACTIONS
    "one.vm.deploy": _op("vm", ADMIN, host=MANAGE, datastore=USE),
    "one.vm.migrate": _op("vm", ADMIN, host=MANAGE, datastore=USE),
    "one.vm.recover": _op("vm", ADMIN),
    "one.vm.resize": _op("vm", MANAGE),
    "one.vm.updateconf": _op("vm", MANAGE),
    "one.vm.monitoring": _info("vm"),
    "one.vm.attachnic": _op("vm", MANAGE, vn=USE, secgroup=USE),
    "one.vm.detachnic": _op("vm", MANAGE),
    "one.vm.attachsg": _op("vm", MANAGE, secgroup=USE),
    "one.vm.detachsg": _op("vm", MANAGE),
    "one.vmpool.info": _pool("vm"),
    "one.vmpool.infoextended": _pool("vm"),
    "one.vmpool.infoset": _pool("vm"),
    "one.vmpool.monitoring": _pool("vm"),
    "one.vmpool.accounting": _pool("vm"),
    # --- VM templates (TemplateAPI: MANAGE; instantiate and clone USE the template) -------
    **_shared("one.template", "template", MANAGE, "info", "update", "rename", "delete",
              "chmod", "chown", "lock", "unlock"),
    "one.template.allocate": _op("template", CREATE),
    "one.template.clone": _op("template", USE, creates="template"),
    "one.template.instantiate": _op("template", USE, creates="vm", image=USE, vn=USE,
                                    secgroup=USE),
    "one.templatepool.info": _pool("template"),
    # --- images (ImageAPI: MANAGE; allocate and clone USE the datastore) ----------------
    **_shared("one.image", "image", MANAGE, "info", "update", "rename", "delete", "chmod",
              "chown", "lock", "unlock"),
    "one.image.allocate": _op("image", CREATE, datastore=USE),
    "one.image.clone": _op("image", USE, creates="image", datastore=USE),
    "one.image.enable": _op("image", MANAGE),
    "one.image.persistent": _op("image", MANAGE),
    "one.image.chtype": _op("image", MANAGE),
    "one.imagepool.info": _pool("image"),
    # --- hosts (HostAPI: ADMIN; allocate into a cluster needs ADMIN on it) --------------
    "one.host.allocate": _op("host", CREATE, cluster=ADMIN),
    "one.host.delete": _op("host", ADMIN),
    "one.host.status": _op("host", ADMIN),
    "one.host.update": _op("host", ADMIN),
    "one.host.rename": _op("host", ADMIN),
    "one.host.info": _info("host"),
    "one.host.monitoring": _op("host", USE),
    "one.hostpool.info": _pool("host"),
    "one.hostpool.monitoring": _pool("host"),
    # --- clusters (ClusterAPI: ADMIN, update/rename MANAGE; add/del ADMIN the member) ----
    "one.cluster.allocate": _op("cluster", CREATE),
    "one.cluster.delete": _op("cluster", ADMIN),
    "one.cluster.update": _op("cluster", MANAGE),
    "one.cluster.rename": _op("cluster", MANAGE),
    "one.cluster.info": _info("cluster"),
    "one.cluster.addhost": _op("cluster", ADMIN, host=ADMIN),
    "one.cluster.delhost": _op("cluster", ADMIN, host=ADMIN),
    "one.cluster.adddatastore": _op("cluster", ADMIN, datastore=ADMIN),
    "one.cluster.deldatastore": _op("cluster", ADMIN, datastore=ADMIN),
    "one.cluster.addvnet": _op("cluster", ADMIN, vn=ADMIN),
    "one.cluster.delvnet": _op("cluster", ADMIN, vn=ADMIN),
    "one.clusterpool.info": _pool("cluster"),
    # --- datastores (DatastoreAPI: MANAGE; allocate into a cluster needs ADMIN on it) ----
    **_shared("one.datastore", "datastore", MANAGE, "info", "update", "rename", "delete",
              "chmod", "chown"),
    "one.datastore.allocate": _op("datastore", CREATE, cluster=ADMIN),
    "one.datastore.enable": _op("datastore", MANAGE),
    "one.datastorepool.info": _pool("datastore"),
    # --- users (UserAPI: MANAGE, a user owns itself; delete/enable/chauth ADMIN; chgrp and
    # addgroup/delgroup also need the group) ---------------------------------------------
    "one.user.allocate": _op("user", CREATE, group=MANAGE),
    "one.user.delete": _op("user", ADMIN),
    "one.user.enable": _op("user", ADMIN),
    "one.user.info": _info("user"),
    "one.user.update": _op("user", MANAGE),
    "one.user.passwd": _op("user", MANAGE),
    "one.user.login": _op("user", MANAGE),
    "one.user.chgrp": _op("user", MANAGE, group=USE),
    "one.user.addgroup": _op("user", MANAGE, group=MANAGE),
    "one.user.delgroup": _op("user", MANAGE, group=MANAGE),
    "one.userpool.info": _pool("user"),
    # --- groups (GroupAPI: ADMIN) -------------------------------------------------------
    "one.group.allocate": _op("group", CREATE),
    "one.group.delete": _op("group", ADMIN),
    "one.group.update": _op("group", ADMIN),
    "one.group.info": _info("group"),
    "one.grouppool.info": _pool("group"),
    # --- ACL rules (AclAPI: MANAGE on the ACL object, which no rule can grant: oneadmin's
    # group only) ------------------------------------------------------------------------
    "one.acl.addrule": _op("acl", MANAGE),
    "one.acl.delrule": _op("acl", MANAGE),
    "one.acl.info": _op("acl", MANAGE),
    # --- virtual networks (VirtualNetworkAPI: MANAGE; allocate into a cluster needs ADMIN
    # on it; add_ar/rm_ar ADMIN for a network not made from a VN template; reserve USEs the
    # parent, and MANAGEs an earlier reservation it adds to: RESERVATION_TARGET) --------
    **_shared("one.vn", "vn", MANAGE, "info", "update", "rename", "delete", "chmod",
              "chown", "lock", "unlock"),
    "one.vn.allocate": _op("vn", CREATE, cluster=ADMIN),
    "one.vn.add_ar": _op("vn", ADMIN),
    "one.vn.rm_ar": _op("vn", ADMIN),
    "one.vn.update_ar": _op("vn", MANAGE),
    "one.vn.free_ar": _op("vn", MANAGE),
    "one.vn.hold": _op("vn", MANAGE),
    "one.vn.release": _op("vn", MANAGE),
    "one.vn.reserve": _op("vn", USE),
    "one.vn.recover": _op("vn", MANAGE),
    "one.vnpool.info": _pool("vn"),
    # --- security groups (SecurityGroupAPI: MANAGE; clone USEs the source) -------------
    **_shared("one.secgroup", "secgroup", MANAGE, "info", "update", "rename", "delete",
              "chmod", "chown"),
    "one.secgroup.allocate": _op("secgroup", CREATE),
    "one.secgroup.clone": _op("secgroup", USE, creates="secgroup"),
    "one.secgroup.commit": _op("secgroup", MANAGE),
    "one.secgrouppool.info": _pool("secgroup"),
    # --- network templates (VNTemplateAPI: MANAGE; instantiate and clone USE the template,
    # instantiate makes a network of the caller's without CREATE on networks) -----------
    **_shared("one.vntemplate", "vntemplate", MANAGE, "info", "update", "rename", "delete",
              "chmod", "chown", "lock", "unlock"),
    "one.vntemplate.allocate": _op("vntemplate", CREATE),
    "one.vntemplate.clone": _op("vntemplate", USE, creates="vntemplate"),
    "one.vntemplate.instantiate": _op("vntemplate", USE),
    "one.vntemplatepool.info": _pool("vntemplate"),
    # --- zones (ZoneAPI: ADMIN; info USE, update/rename MANAGE; allocate CREATE, which a
    # standalone server refuses before any check) ----------------------------------------
    "one.zone.allocate": _op("zone", CREATE),
    "one.zone.delete": _op("zone", ADMIN),
    "one.zone.info": _info("zone"),
    "one.zone.update": _op("zone", MANAGE),
    "one.zone.rename": _op("zone", MANAGE),
    "one.zone.enable": _op("zone", ADMIN),
    "one.zone.addserver": _op("zone", ADMIN),
    "one.zone.delserver": _op("zone", ADMIN),
    "one.zone.resetserver": _op("zone", ADMIN),
    "one.zone.raftstatus": _op("zone", ADMIN),  # basic_authorization of the local zone
    "one.zonepool.info": _pool("zone"),
    # --- VDCs (VdcAPI: ADMIN; info USE, update/rename MANAGE; editing a group or a resource
    # also needs ADMIN on it and on its zone, when they exist here) ----------------------
    "one.vdc.allocate": _op("vdc", CREATE),
    "one.vdc.delete": _op("vdc", ADMIN),
    "one.vdc.info": _info("vdc"),
    "one.vdc.update": _op("vdc", MANAGE),
    "one.vdc.rename": _op("vdc", MANAGE),
    "one.vdc.addgroup": _op("vdc", ADMIN, group=ADMIN),
    "one.vdc.delgroup": _op("vdc", ADMIN, group=ADMIN),
    **{f"one.vdc.{verb}{member}": Operation("vdc", ADMIN, {"zone": ADMIN, kind: ADMIN})
       for verb in ("add", "del")
       for member, kind in (("cluster", "cluster"), ("host", "host"),
                            ("datastore", "datastore"), ("vnet", "vn"))},
    "one.vdcpool.info": _pool("vdc"),
}
# The calls a disabled zone (one.zone.enable false) still serves: oned's *InfoAPI and pool
# requests, which set zone_disabled(true) (src/rm/api/*API.h); every other call is refused.
RUN_IN_DISABLED_ZONE = frozenset({
    "one.system.version", "one.system.config", "one.zone.info", "one.zone.enable",
    "one.zone.raftstatus", "one.zonepool.info", "one.vdc.info", "one.vdcpool.info",
    "one.vm.info", "one.vmpool.info", "one.vmpool.infoextended", "one.vmpool.monitoring",
    "one.vmpool.accounting", "one.vmpool.showback", "one.vmpool.calculateshowback",
    "one.host.info", "one.hostpool.info", "one.hostpool.monitoring", "one.clusterpool.info",
    "one.datastore.info", "one.datastorepool.info", "one.image.info", "one.imagepool.info",
    "one.template.info", "one.templatepool.info", "one.user.info", "one.userpool.info",
    "one.userquota.info", "one.group.info", "one.grouppool.info", "one.groupquota.info",
    "one.vn.info", "one.vnpool.info", "one.secgroup.info", "one.secgrouppool.info",
    "one.vntemplate.info", "one.vntemplatepool.info", "one.document.info",
    "one.documentpool.info", "one.vmgroup.info", "one.vmgrouppool.info", "one.vrouter.info",
    "one.vrouterpool.info", "one.market.info", "one.marketpool.info", "one.marketapp.info",
    "one.marketapppool.info", "one.hook.info", "one.hookpool.info", "one.hooklog.info",
    "one.backupjob.info", "one.backupjobpool.info",
})

# oned.conf's VM_ADMIN_OPERATIONS / VM_MANAGE_OPERATIONS (VM_USE_OPERATIONS is empty) for the
# actions of one.vm.action.
VM_ACTIONS: dict[str, int] = {
    "terminate": MANAGE, "terminate-hard": MANAGE, "undeploy": MANAGE,
    "undeploy-hard": MANAGE, "poweroff": MANAGE, "poweroff-hard": MANAGE, "reboot": MANAGE,
    "reboot-hard": MANAGE, "hold": MANAGE, "release": MANAGE, "stop": MANAGE,
    "suspend": MANAGE, "resume": MANAGE, "resched": ADMIN, "unresched": ADMIN,
}

def operation(method: str, params: list[Any]) -> Operation:
    """The operation of one call (one.vm.action's depends on the action it names)."""
    op = TABLE[method]
    if method == "one.vm.action" and params and params[0] in VM_ACTIONS:
        return _op("vm", VM_ACTIONS[params[0]])
    return op


# --- restricted attributes (oned.conf *_RESTRICTED_ATTR) --------------------------------

# (attribute, vector member or None for the whole attribute). DISK/SOURCE is ours: a disk
# SOURCE names a path on the front-end that the core copies into the container, so only the
# oneadmin group may give one directly (images set it for everybody else).
VM_RESTRICTED: tuple[tuple[str, str | None], ...] = (
    ("CONTEXT", "FILES"),
    *(("NIC", m) for m in (
        "MAC", "VLAN_ID", "BRIDGE", "FILTER", "FILTER_IP_SPOOFING", "FILTER_MAC_SPOOFING",
        "INBOUND_AVG_BW", "INBOUND_PEAK_BW", "INBOUND_PEAK_KB", "OUTBOUND_AVG_BW",
        "OUTBOUND_PEAK_BW", "OUTBOUND_PEAK_KB", "OPENNEBULA_MANAGED", "EXTERNAL",
        "VLAN_TAGGED_ID")),
    *(("NIC_ALIAS", m) for m in (
        "MAC", "VLAN_ID", "BRIDGE", "INBOUND_AVG_BW", "INBOUND_PEAK_BW", "INBOUND_PEAK_KB",
        "OUTBOUND_AVG_BW", "OUTBOUND_PEAK_BW", "OUTBOUND_PEAK_KB", "OPENNEBULA_MANAGED")),
    *(("NIC_DEFAULT", m) for m in ("MAC", "VLAN_ID", "BRIDGE", "FILTER", "EXTERNAL")),
    *(("DISK", m) for m in (
        "TOTAL_BYTES_SEC", "TOTAL_BYTES_SEC_MAX_LENGTH", "TOTAL_BYTES_SEC_MAX",
        "READ_BYTES_SEC", "READ_BYTES_SEC_MAX_LENGTH", "READ_BYTES_SEC_MAX",
        "WRITE_BYTES_SEC", "WRITE_BYTES_SEC_MAX_LENGTH", "WRITE_BYTES_SEC_MAX",
        "TOTAL_IOPS_SEC", "TOTAL_IOPS_SEC_MAX_LENGTH", "TOTAL_IOPS_SEC_MAX",
        "READ_IOPS_SEC", "READ_IOPS_SEC_MAX_LENGTH", "READ_IOPS_SEC_MAX",
        "WRITE_IOPS_SEC", "WRITE_IOPS_SEC_MAX_LENGTH", "WRITE_IOPS_SEC_MAX",
        "SIZE_IOPS_SEC", "OPENNEBULA_MANAGED", "ORIGINAL_SIZE", "SIZE_PREV", "SOURCE")),
    ("DEPLOY_ID", None), ("CPU_COST", None), ("MEMORY_COST", None), ("DISK_COST", None),
    ("PCI", None), ("EMULATOR", None), ("RAW", "DATA"), ("USER_PRIORITY", None),
    ("USER_INPUTS", "CPU"), ("USER_INPUTS", "MEMORY"), ("USER_INPUTS", "VCPU"),
    ("TOPOLOGY", "PIN_POLICY"), ("TOPOLOGY", "HUGEPAGE_SIZE"),
)
IMAGE_RESTRICTED: tuple[tuple[str, str | None], ...] = (("SOURCE", None),)
_VM_OPERATIONS = (("VM_USE_OPERATIONS", None), ("VM_MANAGE_OPERATIONS", None),
                  ("VM_ADMIN_OPERATIONS", None))
# Ours: where images may be registered from is read by the core, as root, on the front-end.
DATASTORE_RESTRICTED: tuple[tuple[str, str | None], ...] = (
    ("SAFE_DIRS", None), ("RESTRICTED_DIRS", None))
# oned.conf VNET_RESTRICTED_ATTR; the AR/ ones apply to each AR of add_ar/update_ar too.
AR_RESTRICTED = ("VN_MAD", "PHYDEV", "BRIDGE", "FILTER", "FILTER_IP_SPOOFING",
                 "FILTER_MAC_SPOOFING")
VNET_RESTRICTED: tuple[tuple[str, str | None], ...] = (
    *((a, None) for a in ("VN_MAD", "PHYDEV", "QINQ_TYPE", "BRIDGE", "CONF", "BRIDGE_CONF",
                          "OVS_BRIDGE_CONF", "IP_LINK_CONF", "FILTER", "FILTER_IP_SPOOFING",
                          "FILTER_MAC_SPOOFING", "CLUSTER_IDS", "EXTERNAL")),
    *(("AR", a) for a in AR_RESTRICTED),
)
RESTRICTED: dict[str, tuple[tuple[str, str | None], ...]] = {
    "vm": VM_RESTRICTED, "template": VM_RESTRICTED, "image": IMAGE_RESTRICTED,
    "user": _VM_OPERATIONS, "group": _VM_OPERATIONS, "datastore": DATASTORE_RESTRICTED,
    "vn": VNET_RESTRICTED, "vntemplate": VNET_RESTRICTED,
}
_WHAT = {"vm": "VM Template", "template": "VM Template", "image": "Template",
         "user": "Template", "group": "Template", "datastore": "Template",
         "vn": "VNET Template", "vntemplate": "VNET Template"}


def _restricted_values(kind: str, tmpl: Template) -> dict[str, list[Any]]:
    """``NAME`` or ``NAME/MEMBER`` -> the values ``tmpl`` gives that restricted attribute."""
    out: dict[str, list[Any]] = {}
    for name, member in RESTRICTED.get(kind, ()):
        for value in tmpl.get_all(name):
            if member is None:
                out.setdefault(name, []).append(value)
            elif isinstance(value, dict) and member in value:
                out.setdefault(f"{name}/{member}", []).append(value[member])
    return out


def check_restricted(is_admin: bool, kind: str, templates: Iterable[Template],
                     before: Template | None = None) -> None:
    """AUTHORIZATION when a caller outside the oneadmin group makes a restricted attribute
    differ from what it was (``before``; None: a new object, which must have none)."""
    if is_admin:
        return
    was = _restricted_values(kind, before) if before is not None else {}
    for tmpl in templates:
        now = _restricted_values(kind, tmpl)
        for attr in sorted(set(now) | set(was)):
            if now.get(attr) != was.get(attr):
                raise OneError(AUTHORIZATION, f"{_WHAT[kind]} includes a restricted "
                                              f"attribute {attr}.")
