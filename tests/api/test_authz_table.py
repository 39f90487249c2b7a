"""The authorization table, walked for every registered method and every kind of caller.

For each method the call is made, on a fresh object, by five callers: the object's owner, a
member of its group, another user of group ``users``, a user of another group, and oneadmin.
What each may do comes from an oracle written here from oned 7.4's rules (object permissions
``111 110 100``, the default ACL rules of group ``users``, a user owning itself), not from the
server's table: a denied call must answer AUTHORIZATION and change nothing, an allowed one must
get past authorization. Pool calls must list the object exactly for the callers who may USE it.
"""

from __future__ import annotations

import re
import uuid
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from oneserver import api
from oneserver.api import authz
from oneserver.model.acl import ADMIN, CREATE, MANAGE, USE

AUTHORIZATION = 0x200
ROLES = ("owner", "member", "other", "stranger", "admin")
ALL = {USE, MANAGE, ADMIN, CREATE}
OWNED = {"owner": {USE, MANAGE, ADMIN}, "member": {USE, MANAGE}, "other": {USE},
         "stranger": {USE}, "admin": ALL}  # permissions 111 110 100, owner alice, group g1
# What each caller holds on each kind of fixture object (oned's semantics, by hand).
RIGHTS: dict[str, dict[str, set[int]]] = {
    "vm": OWNED, "template": OWNED, "image": OWNED, "datastore": OWNED, "vn": OWNED,
    "secgroup": OWNED, "vntemplate": OWNED,
    # Hosts belong to nobody; the default rule "@1 HOST/* MANAGE #0" gives group users MANAGE
    # (not USE: they may deploy there but not read or list hosts).
    "host": {"owner": {MANAGE}, "member": {MANAGE}, "other": {MANAGE}, "stranger": set(),
             "admin": ALL},
    # The system datastore: oneadmin's, and "@1 DATASTORE/* USE #0".
    "sysds": {"owner": {USE}, "member": {USE}, "other": {USE}, "stranger": set(),
              "admin": ALL},
    "cluster": {"owner": set(), "member": set(), "other": set(), "stranger": set(),
                "admin": ALL},
    # A user owns itself (use, manage); the "owner" caller is the user in question.
    "user": {"owner": {USE, MANAGE}, "member": set(), "other": set(), "stranger": set(),
             "admin": ALL},
    # A fresh group whose one member is the "member" caller: members may USE their group.
    "group": {"owner": set(), "member": {USE}, "other": set(), "stranger": set(),
              "admin": ALL},
    # g1, the group of the owned objects and of the victim user: alice, carol, the victim.
    "g1": {"owner": {USE}, "member": {USE}, "other": set(), "stranger": set(), "admin": ALL},
    "g2": {"owner": set(), "member": set(), "other": set(), "stranger": set(), "admin": ALL},
    "acl": {"owner": set(), "member": set(), "other": set(), "stranger": set(),
            "admin": ALL},
    # Zone 0 is oneadmin's (110 000 000); "* ZONE/* USE *" lets everybody USE it.
    "zone": {"owner": {USE}, "member": {USE}, "other": {USE}, "stranger": {USE},
             "admin": ALL},
    # VDCs are oneadmin's and no default rule names them.
    "vdc": {"owner": set(), "member": set(), "other": set(), "stranger": set(),
            "admin": ALL},
}
# CREATE: "@1 VM+IMAGE+TEMPLATE+…/* CREATE *" for group users; anything else is oneadmin's.
CREATORS = {"vm": {"owner", "member", "other", "admin"},
            "template": {"owner", "member", "other", "admin"},
            "image": {"owner", "member", "other", "admin"},
            "secgroup": {"owner", "member", "other", "admin"}}


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@dataclass
class World:
    """The shared objects and the callers' sessions."""

    server: Any
    sessions: dict[str, str]
    names: dict[str, str]
    g1: int
    g2: int
    ds: int
    host: int
    cluster: int
    tgz: Path

    def admin(self, method: str, *params: Any) -> Any:
        ok, value, *_ = self.server.call(method, *params)
        assert ok, (method, params, value)
        return value

    def owned(self, oid: int, kind: str) -> int:
        owner_uid = int(self.names["owner_uid"])
        self.admin(f"one.{kind}.chown", oid, owner_uid, self.g1)
        self.admin(f"one.{kind}.chmod", oid, 1, 1, 1, 1, 1, 0, 1, 0, 0)
        return oid

    def new(self, kind: str) -> int:
        """A fresh object of ``kind`` for one call."""
        if kind == "vm":
            return self.owned(self.admin("one.vm.allocate", "CPU=0.1\nMEMORY=16\n", True), "vm")
        if kind == "template":
            return self.owned(self.admin("one.template.allocate",
                                         f'NAME="{uniq("t")}"\nCPU=0.1\nMEMORY=16\n'), "template")
        if kind == "image":
            iid = self.admin("one.image.allocate", f'NAME="{uniq("i")}"\nPATH="{self.tgz}"\n',
                             self.ds)
            wait_ready(self, iid)
            return self.owned(iid, "image")
        if kind == "datastore":
            return self.owned(self.admin(
                "one.datastore.allocate",
                f'NAME="{uniq("ds")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n', -1),
                "datastore")
        if kind == "host":
            return self.admin("one.host.allocate", uniq("h"), "dummy", "dummy", -1)
        if kind == "cluster":
            return self.admin("one.cluster.allocate", uniq("c"))
        if kind == "user":
            name = uniq("victim")
            uid = self.admin("one.user.allocate", name, "pw", "", [self.g1])
            self.sessions["victim"], self.names["victim"] = f"{name}:pw", name
            return uid
        if kind == "group":
            gid = self.admin("one.group.allocate", uniq("g"))
            self.admin("one.user.addgroup", int(self.names["member_uid"]), gid)
            return gid
        if kind == "acl":
            return self.admin("one.acl.addrule", *acl_rule())
        if kind == "zone":  # a standalone server has one zone
            return 0
        if kind == "vdc":
            return self.admin("one.vdc.allocate", f'NAME="{uniq("vdc")}"')
        if kind == "vn":  # AR 0 has no lease; 10.213.7.11 is free
            return self.owned(self.admin(
                "one.vn.allocate", f'NAME="{uniq("vn")}"\nVN_MAD="dummy"\nBRIDGE="br-a"\n'
                'AR=[TYPE="IP4",IP="10.213.7.10",SIZE="4"]', -1), "vn")
        if kind == "vntemplate":
            return self.owned(self.admin(
                "one.vntemplate.allocate", f'NAME="{uniq("vnt")}"\nVN_MAD="dummy"\n'
                'BRIDGE="br-t"\nAR=[TYPE="ETHER",SIZE="2"]'), "vntemplate")
        if kind == "secgroup":
            return self.owned(self.admin(
                "one.secgroup.allocate", f'NAME="{uniq("sg")}"\n'
                'RULE=[PROTOCOL="TCP",RULE_TYPE="inbound",RANGE="22"]'), "secgroup")
        raise AssertionError(kind)


def acl_rule() -> tuple[str, str, str, str]:
    """A rule nobody else has: "#<random uid> VM/* USE"."""
    return f"{0x100000000 | uuid.uuid4().int % 10**6:x}", "1000400000000", "1", ""


def wait_ready(world: World, iid: int) -> None:
    from tests.conftest import wait_for
    wait_for(f"image {iid} READY", lambda: "<STATE>1</STATE>" in world.admin(
        "one.image.info", iid, False), 20)


# method -> (the params after the session, given (world, oid); [(oracle kind, right)] needed)
Call = Callable[[World, int], tuple[Any, ...]]


# The right each verb needs on each kind, read from oned 7.4 (src/rm/api/*API.h auth_op and
# SharedAPI.cc): written out here so that the server's table is checked, not repeated.
U, M, A = USE, MANAGE, ADMIN
VERBS: dict[str, dict[str, int]] = {
    "vm": {"info": U, "update": M, "rename": M, "chmod": M, "chown": M, "lock": M,
           "unlock": M},
    "template": {"info": U, "update": M, "rename": M, "delete": M, "chmod": M, "chown": M,
                 "lock": M, "unlock": M},
    "image": {"info": U, "update": M, "rename": M, "delete": M, "chmod": M, "chown": M,
              "lock": M, "unlock": M},
    "datastore": {"info": U, "update": M, "rename": M, "delete": M, "chmod": M, "chown": M},
    "host": {"info": U, "update": A, "rename": A, "delete": A},
    "cluster": {"info": U, "update": M, "rename": M, "delete": A},
    "user": {"info": U, "update": M, "delete": A},
    "group": {"info": U, "update": A, "delete": A},
    "zone": {"info": U, "update": M, "rename": M, "delete": A},
    "vdc": {"info": U, "update": M, "rename": M, "delete": A},
    "vn": {"info": U, "update": M, "rename": M, "delete": M, "chmod": M, "chown": M,
           "lock": M, "unlock": M},
    "secgroup": {"info": U, "update": M, "rename": M, "delete": M, "chmod": M, "chown": M},
    "vntemplate": {"info": U, "update": M, "rename": M, "delete": M, "chmod": M, "chown": M,
                   "lock": M, "unlock": M},
}


def _plan() -> dict[str, tuple[Call, list[tuple[str, int]]]]:
    p: dict[str, tuple[Call, list[tuple[str, int]]]] = {}

    def on(method: str, call: Call, *needs: tuple[str, int]) -> None:
        p[method] = (call, list(needs))

    ident = lambda w, o: (o,)  # noqa: E731
    verb_params: dict[str, Call] = {
        "info": lambda w, o: (o, False), "update": lambda w, o: (o, 'X_TEST="1"', 1),
        "rename": lambda w, o: (o, uniq("renamed")), "chmod": lambda w, o: (o, *([-1] * 9)),
        "chown": lambda w, o: (o, -1, -1), "lock": lambda w, o: (o, 1, False),
        "unlock": ident, "delete": ident,
    }
    for kind, verbs in VERBS.items():
        for verb, right in verbs.items():
            on(f"one.{kind}.{verb}", verb_params[verb], (kind, right))
    for kind in ("template", "image"):
        on(f"one.{kind}.delete", lambda w, o: (o, False), (kind, M))
    on("one.template.info", lambda w, o: (o, False, False), ("template", U))
    # VMs (VM_MANAGE_OPERATIONS / VM_ADMIN_OPERATIONS of oned.conf)
    on("one.vm.allocate", lambda w, o: ("CPU=0.1\nMEMORY=16\n", True), ("vm", CREATE))
    on("one.vm.action", lambda w, o: ("release", o), ("vm", M))
    on("one.vm.deploy", lambda w, o: (o, w.host, False, -1, ""), ("vm", A), ("host", M),
       ("sysds", U))
    on("one.vm.migrate", lambda w, o: (o, w.host, False, False, -1, 0), ("vm", A),
       ("host", M), ("sysds", U))
    on("one.vm.recover", lambda w, o: (o, 2), ("vm", A))
    on("one.vm.resize", lambda w, o: (o, "CPU=0.2\n", False), ("vm", M))
    on("one.vm.updateconf", lambda w, o: (o, 'CONTEXT=[A="1"]', 1), ("vm", M))
    on("one.vm.monitoring", ident, ("vm", U))
    # NIC hotplug (VirtualMachineAttachNic/DetachNic: MANAGE, nic-attach/detach in
    # VM_MANAGE_OPERATIONS; the NIC's network USE): on a held VM, refused past authorization
    on("one.vm.attachnic", lambda w, o: (o, 'NIC=[NETWORK_ID="0"]'), ("vm", M))
    on("one.vm.detachnic", lambda w, o: (o, 0), ("vm", M))
    # security groups of a NIC (VirtualMachineAttachSG/DetachSG: MANAGE; the group USE):
    # the held VM has no NIC 0, so an allowed call is refused past authorization
    on("one.vm.attachsg", lambda w, o: (o, 0, 0), ("vm", M))
    on("one.vm.detachsg", lambda w, o: (o, 0, 0), ("vm", M))
    # templates and images
    on("one.template.allocate", lambda w, o: (f'NAME="{uniq("t")}"\nCPU=1\nMEMORY=8\n',),
       ("template", CREATE))
    on("one.template.clone", lambda w, o: (o, uniq("clone"), False), ("template", U),
       ("template", CREATE))
    on("one.template.instantiate", lambda w, o: (o, "", True, "", False), ("template", U),
       ("vm", CREATE))
    on("one.image.allocate", lambda w, o: (f'NAME="{uniq("i")}"\nPATH="/var/tmp/'
                                           f'{uniq("no")}"\n', w.ds, False),
       ("image", CREATE), ("datastore", U))
    on("one.image.clone", lambda w, o: (o, uniq("clone"), -1), ("image", U),
       ("image", CREATE), ("datastore", U))
    on("one.image.enable", lambda w, o: (o, True), ("image", M))
    on("one.image.persistent", lambda w, o: (o, False), ("image", M))
    on("one.image.chtype", lambda w, o: (o, "OS"), ("image", M))
    # hosts, clusters, datastores
    on("one.host.allocate", lambda w, o: (uniq("h"), "dummy", "dummy", -1), ("host", CREATE))
    on("one.host.status", lambda w, o: (o, 1), ("host", A))
    on("one.host.monitoring", ident, ("host", U))
    on("one.cluster.allocate", lambda w, o: (uniq("c"),), ("cluster", CREATE))
    on("one.cluster.addhost", lambda w, o: (o, w.host), ("cluster", A), ("host", A))
    on("one.cluster.delhost", lambda w, o: (o, w.host), ("cluster", A), ("host", A))
    on("one.cluster.adddatastore", lambda w, o: (o, w.ds), ("cluster", A), ("datastore", A))
    on("one.cluster.deldatastore", lambda w, o: (o, w.ds), ("cluster", A), ("datastore", A))
    on("one.datastore.allocate",
       lambda w, o: (f'NAME="{uniq("ds")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n',
                     -1), ("datastore", CREATE))
    on("one.datastore.enable", lambda w, o: (o, True), ("datastore", M))
    # users, groups, ACLs
    on("one.user.allocate", lambda w, o: (uniq("u"), "pw", "", []), ("user", CREATE))
    on("one.user.passwd", lambda w, o: (o, "pw"), ("user", M))
    on("one.user.login", lambda w, o: (w.names["victim"], "", 60, -1), ("user", M))
    on("one.user.chgrp", lambda w, o: (o, w.g1), ("user", M), ("g1", U))
    on("one.user.addgroup", lambda w, o: (o, w.g2), ("user", M), ("g2", M))
    on("one.user.delgroup", lambda w, o: (o, w.g2), ("user", M), ("g2", M))
    on("one.user.enable", lambda w, o: (o, True), ("user", A))
    on("one.group.allocate", lambda w, o: (uniq("g"),), ("group", CREATE))
    on("one.acl.addrule", lambda w, o: acl_rule(), ("acl", M))
    on("one.acl.delrule", ident, ("acl", M))
    on("one.acl.info", lambda w, o: (), ("acl", M))
    # zones (ZoneAPI.h: ADMIN but info USE, update/rename MANAGE; a standalone server refuses
    # allocate before any check)
    on("one.zone.rename", lambda w, o: (o, "OpenNebula"), ("zone", M))  # the name it has
    on("one.zone.allocate", lambda w, o: ('NAME="z"\nENDPOINT="http://z:2633/RPC2"',))
    on("one.zone.enable", lambda w, o: (o, True), ("zone", A))
    on("one.zone.addserver", lambda w, o: (o, f'SERVER=[NAME="{uniq("s")}",ENDPOINT="e"]'),
       ("zone", A))
    on("one.zone.delserver", lambda w, o: (o, 999), ("zone", A))
    on("one.zone.resetserver", lambda w, o: (o, 999), ("zone", A))
    on("one.zone.raftstatus", lambda w, o: (), ("zone", A))
    # VDCs (VdcAPI.h/.cc: ADMIN on the VDC, and on the group, zone and resource it names)
    on("one.vdc.allocate", lambda w, o: (f'NAME="{uniq("vdc")}"',), ("vdc", CREATE))
    on("one.vdc.addgroup", lambda w, o: (o, w.g2), ("vdc", A), ("g2", A))
    on("one.vdc.delgroup", lambda w, o: (o, w.g2), ("vdc", A), ("g2", A))
    for verb in ("add", "del"):
        on(f"one.vdc.{verb}cluster", lambda w, o: (o, 0, w.cluster), ("vdc", A), ("zone", A),
           ("cluster", A))
        on(f"one.vdc.{verb}host", lambda w, o: (o, 0, w.host), ("vdc", A), ("zone", A),
           ("host", A))
        on(f"one.vdc.{verb}datastore", lambda w, o: (o, 0, w.ds), ("vdc", A), ("zone", A),
           ("datastore", A))
        on(f"one.vdc.{verb}vnet", lambda w, o: (o, 0, -10), ("vdc", A), ("zone", A))
    # virtual networks (VirtualNetworkAPI.h/.cc: MANAGE; add_ar/rm_ar ADMIN for networks not
    # made from a VN template; reserve USE on the parent; allocate ADMIN on the cluster)
    on("one.vn.allocate", lambda w, o: (f'NAME="{uniq("vn")}"\nVN_MAD="dummy"\nBRIDGE="b"',
                                        -1), ("vn", CREATE), ("cluster", A))
    on("one.vn.add_ar", lambda w, o: (o, 'AR=[TYPE="ETHER",SIZE="2"]'), ("vn", A))
    on("one.vn.rm_ar", lambda w, o: (o, 0, False), ("vn", A))
    on("one.vn.free_ar", lambda w, o: (o, 0), ("vn", M))
    on("one.vn.update_ar", lambda w, o: (o, 'AR=[AR_ID="0",SIZE="5"]'), ("vn", M))
    on("one.vn.hold", lambda w, o: (o, 'LEASES=[IP="10.213.7.11"]'), ("vn", M))
    on("one.vn.release", lambda w, o: (o, 'LEASES=[IP="10.213.7.11"]'), ("vn", M))
    on("one.vn.reserve", lambda w, o: (o, f'SIZE=1\nNAME="{uniq("rsv")}"'), ("vn", U))
    on("one.vn.recover", lambda w, o: (o, 1), ("vn", M))
    on("one.cluster.addvnet", lambda w, o: (o, w.new("vn")), ("cluster", A), ("vn", A))
    on("one.cluster.delvnet", lambda w, o: (o, w.new("vn")), ("cluster", A), ("vn", A))
    # security groups (SecurityGroupAPI.h: MANAGE; clone USEs the source and CREATEs)
    on("one.secgroup.allocate", lambda w, o: (f'NAME="{uniq("sg")}"',), ("secgroup", CREATE))
    on("one.secgroup.clone", lambda w, o: (o, uniq("sgclone")), ("secgroup", U),
       ("secgroup", CREATE))
    on("one.secgroup.commit", lambda w, o: (o, False), ("secgroup", M))
    # network templates (VNTemplateAPI.h/.cc: MANAGE; instantiate and clone USE the template)
    on("one.vntemplate.allocate", lambda w, o: (f'NAME="{uniq("vnt")}"\nVN_MAD="dummy"',),
       ("vntemplate", CREATE))
    on("one.vntemplate.clone", lambda w, o: (o, uniq("vntclone")), ("vntemplate", U),
       ("vntemplate", CREATE))
    on("one.vntemplate.instantiate", lambda w, o: (o, uniq("fromt"), ""), ("vntemplate", U))
    # no object
    for method in ("one.system.version", "one.system.config"):
        on(method, lambda w, o: ())
    return {m: v for m, v in p.items() if m in api.METHODS}


POOLS: dict[str, tuple[str, Call]] = {
    "one.vmpool.info": ("vm", lambda w, o: (-2, -1, -1, -1)),
    "one.vmpool.infoextended": ("vm", lambda w, o: (-2, -1, -1, -1)),
    "one.vmpool.infoset": ("vm", lambda w, o: (str(o), False)),
    "one.vmpool.monitoring": ("vm", lambda w, o: (-2, -1)),
    "one.vmpool.accounting": ("vm", lambda w, o: (-2, -1, -1)),
    "one.templatepool.info": ("template", lambda w, o: (-2, -1, -1)),
    "one.imagepool.info": ("image", lambda w, o: (-2, -1, -1)),
    "one.hostpool.info": ("host", lambda w, o: ()),
    "one.hostpool.monitoring": ("host", lambda w, o: (-1,)),
    "one.clusterpool.info": ("cluster", lambda w, o: ()),
    "one.datastorepool.info": ("datastore", lambda w, o: ()),
    "one.userpool.info": ("user", lambda w, o: ()),
    "one.grouppool.info": ("group", lambda w, o: ()),
    "one.zonepool.info": ("zone", lambda w, o: ()),
    "one.vdcpool.info": ("vdc", lambda w, o: ()),
    "one.vnpool.info": ("vn", lambda w, o: (-2, -1, -1)),
    "one.secgrouppool.info": ("secgroup", lambda w, o: (-2, -1, -1)),
    "one.vntemplatepool.info": ("vntemplate", lambda w, o: (-2, -1, -1)),
}
api.load_all()
PLAN = _plan()


def test_every_method_is_in_the_table_and_walked_here() -> None:
    assert set(api.METHODS) <= set(authz.TABLE)
    assert set(api.METHODS) == set(PLAN) | set(POOLS), \
        sorted(set(api.METHODS) ^ (set(PLAN) | set(POOLS)))
    for method in POOLS:
        assert authz.TABLE[method].listing


@pytest.fixture(scope="module")
def world(server, tmp_path_factory: pytest.TempPathFactory) -> World:  # noqa: ANN001
    from tests.api.test_images import make_rootfs, pack
    one = server.pyone()
    g1, g2 = one.group.allocate(uniq("g1")), one.group.allocate(uniq("g2"))
    # Every new group joins the default VDC (rights on every host, network and datastore);
    # the stranger's group leaves it, and has no rule at all.
    one.vdc.delgroup(0, g2)
    sessions, names = {"admin": server.session}, {}
    for role, groups in (("owner", [1, g1]), ("member", [1, g1]), ("other", [1]),
                         ("stranger", [g2])):
        name = uniq(role)
        uid = one.user.allocate(name, "pw", "", groups)
        sessions[role], names[role], names[f"{role}_uid"] = f"{name}:pw", name, str(uid)
    images = tmp_path_factory.mktemp("authz-images")
    tgz = pack(make_rootfs(images / "tree"), images / "rootfs.tar.gz")
    ds = one.datastore.allocate(
        f'NAME="{uniq("authz-ds")}"\nTYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="ssh"\n'
        f'SAFE_DIRS="{images}"\n', -1)
    w = World(server, sessions, names, g1, g2, ds, one.host.allocate(uniq("h"), "dummy",
                                                                      "dummy", -1),
              one.cluster.allocate(uniq("c")), tgz)
    w.owned(ds, "datastore")
    return w


def _object_kind(method: str) -> str | None:
    """The kind of the object a call is made on (None: it names none)."""
    for kind, right in PLAN[method][1]:
        if right != CREATE and kind in WORLD_KINDS:
            return kind
    return None


WORLD_KINDS = ("vm", "template", "image", "datastore", "host", "cluster", "user", "group",
               "acl", "zone", "vdc", "vn", "secgroup",
               "vntemplate")


def _snapshot(world: World, kind: str, oid: int) -> str | None:
    if kind not in ("vm", "template", "image", "user", "group", "cluster", "zone", "vdc",
                    "vn", "secgroup", "vntemplate"):
        return None
    body = world.admin(f"one.{kind}.info", oid, False)
    return re.sub(r"<(LAST_MON_TIME|SCHED_MESSAGE)>.*?</\1>", "", body)


@pytest.mark.parametrize("method", sorted(PLAN))
def test_method_for_every_caller(world: World, method: str) -> None:
    call, needs = PLAN[method]
    kind = _object_kind(method)
    for role in ROLES:
        no_object = kind is None or method in ("one.acl.addrule", "one.acl.info")
        oid = -1 if no_object else world.new(kind)
        session = world.sessions["victim" if kind == "user" and role == "owner" else role]
        allowed = all(role in CREATORS.get(k, {"admin"}) if right == CREATE
                      else right in RIGHTS[k][role] for k, right in needs)
        before = _snapshot(world, kind, oid) if kind and oid >= 0 else None
        reply = world.server.call(method, *call(world, oid), session=session)
        refused = reply[0] is False and reply[2] == AUTHORIZATION
        assert refused != allowed, (method, role, reply)
        if refused:
            assert reply[1].startswith(f"[{method}] User ["), reply
            after = _snapshot(world, kind, oid) if kind and oid >= 0 else None
            assert before == after, (method, role)


@pytest.mark.parametrize("method", sorted(POOLS))
def test_pool_lists_what_the_caller_may_use(world: World, method: str) -> None:
    kind, call = POOLS[method]
    oid = world.new(kind)
    if kind == "vm":  # monitoring and accounting list VMs with samples or history only
        pattern = rf"<(?:ID|VM_ID|OID)>{oid}</" if "info" in method else None
    else:
        pattern = rf"<ID>{oid}</ID>" if "monitoring" not in method else None
    for role in ROLES:
        session = world.sessions["victim" if kind == "user" and role == "owner" else role]
        reply = world.server.call(method, *call(world, oid), session=session)
        assert reply[0] is True, (method, role, reply)
        if pattern is not None:
            listed = re.search(pattern, reply[1]) is not None
            assert listed == (USE in RIGHTS[kind][role]), (method, role)


def test_resched_is_an_admin_action(world: World) -> None:
    vid = world.new("vm")
    # The member may MANAGE the VM (release above) but not ADMIN it.
    reply = world.server.call("one.vm.action", "resched", vid, session=world.sessions["member"])
    assert reply[0] is False and reply[2] == AUTHORIZATION
    assert authz.operation("one.vm.action", ["resched", vid]).right == ADMIN


def test_fault_for_an_unknown_method_even_unauthenticated(world: World) -> None:
    proxy = xmlrpc.client.ServerProxy(world.server.url)
    with pytest.raises(xmlrpc.client.Fault):
        proxy.one.host.nosuchmethod("nobody:x")


def test_every_vm_action_has_its_right() -> None:
    from oneserver.model import lifecycle
    assert set(authz.VM_ACTIONS) == lifecycle.VALID_ACTIONS
