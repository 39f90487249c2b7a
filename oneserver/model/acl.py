"""Permissions and ACL rules, as oned's AuthRequest evaluates them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

# Rule user/resource id kinds (high bits), resource type bits and rights, from AclRule.h.
INDIVIDUAL = 0x100000000
GROUP = 0x200000000
ALL = 0x400000000
CLUSTER = 0x800000000
ID_MASK = 0xFFFFFFFF

TYPES = {
    "VM": 0x1000000000, "HOST": 0x2000000000, "NET": 0x4000000000, "IMAGE": 0x8000000000,
    "USER": 0x10000000000, "TEMPLATE": 0x20000000000, "GROUP": 0x40000000000,
    "DATASTORE": 0x100000000000, "CLUSTER": 0x200000000000, "DOCUMENT": 0x400000000000,
    "ZONE": 0x800000000000, "SECGROUP": 0x1000000000000, "VDC": 0x2000000000000,
    "VROUTER": 0x4000000000000, "MARKETPLACE": 0x8000000000000,
    "MARKETPLACEAPP": 0x10000000000000, "VMGROUP": 0x20000000000000,
    "VNTEMPLATE": 0x40000000000000, "HOOK": 0x80000000000000, "BACKUPJOB": 0x100000000000000,
}
KIND_TYPE = {
    "vm": "VM", "host": "HOST", "user": "USER", "group": "GROUP", "cluster": "CLUSTER",
    "datastore": "DATASTORE", "template": "TEMPLATE", "image": "IMAGE", "zone": "ZONE",
    "vdc": "VDC", "vn": "NET", "secgroup": "SECGROUP", "vntemplate": "VNTEMPLATE",
}
USE, MANAGE, ADMIN, CREATE = 0x1, 0x2, 0x4, 0x8
RIGHT_NAMES = {USE: "USE", MANAGE: "MANAGE", ADMIN: "ADMIN", CREATE: "CREATE"}

LOCAL_ZONE = 0  # this server's zone: a standalone oned's is zone 0

# oned's bootstrap rules (AclManager): users may create their own resources and use zones and
# marketplaces, in every zone. The rules that let group users deploy (HOST MANAGE, NET and
# DATASTORE USE in zone #0) are not among them: the default VDC gives them (oneserver.model.vdcs).
DEFAULT_RULES = [
    (GROUP | 1,
     ALL | TYPES["VM"] | TYPES["IMAGE"] | TYPES["TEMPLATE"] | TYPES["DOCUMENT"]
     | TYPES["SECGROUP"] | TYPES["VMGROUP"] | TYPES["BACKUPJOB"],
     CREATE, ALL),
    (ALL, ALL | TYPES["ZONE"], USE, ALL),
    (ALL, ALL | TYPES["MARKETPLACE"] | TYPES["MARKETPLACEAPP"], USE, ALL),
]


@dataclass(frozen=True)
class Caller:
    uid: int
    gid: int
    uname: str
    gname: str
    groups: frozenset[int] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        """oneadmin and members of the oneadmin group bypass every check, as in oned."""
        return self.uid == 0 or 0 in self.groups


@dataclass(frozen=True)
class Rule:
    id: int
    user: int
    resource: int
    rights: int
    zone: int


@dataclass(frozen=True)
class Target:
    """What a check is about: an object (oid >= 0) or a kind of object to create (oid -1)."""

    kind: str
    oid: int = -1
    uid: int = -1
    gid: int = -1
    perms: tuple[int, ...] = (0,) * 9
    clusters: tuple[int, ...] = ()


def _perm_allows(caller: Caller, t: Target, right: int) -> bool:
    if right == CREATE or t.oid < 0:
        return False
    col = {USE: 0, MANAGE: 1, ADMIN: 2}[right]
    if t.uid == caller.uid and t.perms[col]:
        return True
    if t.gid in caller.groups and t.perms[3 + col]:
        return True
    return bool(t.perms[6 + col])


def _user_matches(caller: Caller, user: int) -> bool:
    if user & ALL:
        return True
    if user & INDIVIDUAL:
        return (user & ID_MASK) == caller.uid
    if user & GROUP:
        return (user & ID_MASK) in caller.groups
    return False


def _resource_matches(t: Target, resource: int) -> bool:
    kind_type = KIND_TYPE.get(t.kind)
    if kind_type is None or not resource & TYPES[kind_type]:  # e.g. ACL rules themselves
        return False
    if resource & ALL:
        return True
    rid = resource & ID_MASK
    if resource & INDIVIDUAL:
        return t.oid == rid
    if resource & GROUP:
        return t.gid == rid
    if resource & CLUSTER:
        return rid in t.clusters
    return False


def allowed(caller: Caller, t: Target, right: int, rules: Iterable[Rule]) -> bool:
    if caller.is_admin or _perm_allows(caller, t, right):
        return True
    return any(
        r.rights & right and _zone_matches(r.zone) and _user_matches(caller, r.user)
        and _resource_matches(t, r.resource)
        for r in rules
    )


def _zone_matches(zone: int) -> bool:
    """A rule applies here when it is for every zone or for this one (AclManager::authorize);
    a rule for another zone of a federation gives nothing on this server."""
    return bool(zone & ALL) or zone & (INDIVIDUAL | ID_MASK) == INDIVIDUAL | LOCAL_ZONE


def rule_string(user: int, resource: int, rights: int, zone: int) -> str:
    """oned's text form of a rule, e.g. ``@1 VM+IMAGE/* CREATE *``."""

    def who(value: int) -> str:
        if value & ALL:
            return "*"
        if value & INDIVIDUAL:
            return f"#{value & ID_MASK}"
        if value & GROUP:
            return f"@{value & ID_MASK}"
        if value & CLUSTER:
            return f"%{value & ID_MASK}"
        return "?"

    types = "+".join(name for name, bit in TYPES.items() if resource & bit)
    rights_s = "+".join(name for bit, name in RIGHT_NAMES.items() if rights & bit)
    return f"{who(user)} {types}/{who(resource)} {rights_s} {who(zone)}"
