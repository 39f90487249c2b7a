"""A new ACL rule as oned's AclManager::add_rule takes it: its text form (AclRule::build_str)
and what makes it malformed (AclRule::malformed), with oned's words."""

from __future__ import annotations

from oneserver.model.acl import ALL, CLUSTER, GROUP, INDIVIDUAL

# PoolObjectSQL::ObjectType bits.
_OBJ = {
    "VM": 0x1000000000, "HOST": 0x2000000000, "NET": 0x4000000000, "IMAGE": 0x8000000000,
    "USER": 0x10000000000, "TEMPLATE": 0x20000000000, "GROUP": 0x40000000000,
    "ACL": 0x80000000000, "DATASTORE": 0x100000000000, "CLUSTER": 0x200000000000,
    "DOCUMENT": 0x400000000000, "ZONE": 0x800000000000, "SECGROUP": 0x1000000000000,
    "VDC": 0x2000000000000, "VROUTER": 0x4000000000000, "MARKETPLACE": 0x8000000000000,
    "MARKETPLACEAPP": 0x10000000000000, "VMGROUP": 0x20000000000000,
    "VNTEMPLATE": 0x40000000000000, "HOOK": 0x80000000000000,
    "BACKUPJOB": 0x100000000000000,
}
# The types a rule names, in the order its text lists them (AclRule::pool_objects).
_LISTED = ("VM", "HOST", "NET", "IMAGE", "USER", "TEMPLATE", "GROUP", "DATASTORE", "CLUSTER",
           "DOCUMENT", "ZONE", "SECGROUP", "VDC", "VROUTER", "MARKETPLACE", "MARKETPLACEAPP",
           "VMGROUP", "VNTEMPLATE", "BACKUPJOB")
_RIGHTS = ((0x1, "USE"), (0x2, "MANAGE"), (0x4, "ADMIN"), (0x8, "CREATE"))


def _mask(*names: str) -> int:
    bits = 0
    for name in names:
        bits |= _OBJ[name]
    return bits


_NOT_BY_CLUSTER = _mask("VM", "IMAGE", "USER", "TEMPLATE", "GROUP", "ACL", "CLUSTER",
                        "DOCUMENT", "ZONE", "SECGROUP", "VDC", "VROUTER", "MARKETPLACE",
                        "MARKETPLACEAPP", "VMGROUP", "VNTEMPLATE")
_NOT_BY_GROUP = _mask("HOST", "GROUP", "CLUSTER", "ZONE", "VDC")
_FEDERATED = _mask("USER", "GROUP", "ZONE", "ACL", "VDC")
_SELECTORS = 0xF00000000
_TYPES = 0xFFFFFFF000000000


def _id(value: int) -> int:
    """The low 32 bits as a C ``int`` (AclRule::user_id() and friends)."""
    return ((value & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000


def text(user: int, resource: int, rights: int, zone: int) -> str:
    """The rule as oned writes it, e.g. ``#2 NET+SECGROUP/@1 USE #0``."""
    def who(value: int, marks: tuple[tuple[int, str], ...]) -> str:
        for bit, mark in marks:
            if value & bit:
                return "*" if mark == "*" else f"{mark}{_id(value)}"
        return "??"

    types = "+".join(name for name in _LISTED if resource & _OBJ[name])
    ops = "+".join(name for bit, name in _RIGHTS if rights & bit)
    return (f"{who(user, ((GROUP, '@'), (INDIVIDUAL, '#'), (ALL, '*')))} {types}/"
            f"{who(resource, ((GROUP, '@'), (INDIVIDUAL, '#'), (CLUSTER, '%'), (ALL, '*')))} "
            f"{ops} {who(zone, ((INDIVIDUAL, '#'), (ALL, '*')))}")


def problems(user: int, resource: int, rights: int, zone: int) -> str:
    """Why oned refuses the rule as malformed ("" when it does not), worded and joined as
    oned does (it forgets the separator before the zone's GROUP complaint)."""
    out = _Report()
    _user_problems(user, out)
    _resource_problems(resource, out)
    if rights == 0:
        out.add("wrong [rights], it cannot be 0")
    if rights > 0xF:
        out.add("wrong [rights], it cannot be bigger than 0xF")
    _zone_problems(zone, resource, out)
    return out.text


class _Report:
    def __init__(self) -> None:
        self.text = ""

    def add(self, problem: str, separated: bool = True) -> None:
        self.text += ("; " if self.text and separated else "") + problem


def _user_problems(user: int, out: _Report) -> None:
    if user & INDIVIDUAL and user & GROUP:
        out.add("[user] INDIVIDUAL (#) and GROUP (@) bits are exclusive")
    if user & INDIVIDUAL and user & ALL:
        out.add("[user] INDIVIDUAL (#) and ALL (*) bits are exclusive")
    if user & GROUP and user & ALL:
        out.add("[user] GROUP (@) and ALL (*) bits are exclusive")
    if user & 0x700000000 == 0:
        out.add("[user] is missing one of the INDIVIDUAL, GROUP or ALL bits")
    if _id(user) < 0:
        out.add("[user] ID cannot be negative")
    if user & ALL and _id(user) != 0:
        out.add("when using the ALL bit, [user] ID must be 0")


def _resource_problems(resource: int, out: _Report) -> None:
    selectors = resource & _SELECTORS
    if any(resource & bit and selectors != bit for bit in (INDIVIDUAL, GROUP, CLUSTER, ALL)):
        out.add("[resource] INDIVIDUAL (#), GROUP (@), CLUSTER (%) and ALL (*) bits are "
                "exclusive")
    types = resource & _TYPES
    if resource & CLUSTER and types & _NOT_BY_CLUSTER:
        out.add("[resource] CLUSTER(%) selector can be applied only to DATASTORE, HOST and "
                "NET types")
    if resource & GROUP and types & _NOT_BY_GROUP:
        out.add("[resource] GROUP(@) selector cannot be applied to HOST, GROUP, CLUSTER, "
                "ZONE or VDC types")
    if selectors == 0:
        out.add("[resource] is missing one of the INDIVIDUAL, GROUP, CLUSTER or ALL bits")
    if _id(resource) < 0:
        out.add("[resource] ID cannot be negative")
    if resource & ALL and _id(resource) != 0:
        out.add("when using the ALL bit, [resource] ID must be 0")
    if types == 0:
        out.add("[resource] type is missing")
    if resource & 0xFE80000000000000:
        out.add("wrong [resource] type")


def _zone_problems(zone: int, resource: int, out: _Report) -> None:
    if zone & GROUP:
        out.add("[zone] GROUP (@) bit is not supported", separated=False)
    if zone & INDIVIDUAL and zone & ALL:
        out.add("[zone] INDIVIDUAL (#) and ALL (*) bits are exclusive")
    if zone & 0x700000000 == 0:
        out.add("[zone] is missing one of the INDIVIDUAL or ALL bits")
    if _id(zone) < 0:
        out.add("[zone] ID cannot be negative")
    if zone & ALL and _id(zone) != 0:
        out.add("when using the ALL bit, [zone] ID must be 0")
    types = resource & _TYPES
    if zone & ALL and resource & INDIVIDUAL and types & _FEDERATED != types:
        out.add("[resource] INDIVIDUAL(#) selector cannot be applied to ALL zones, except for "
                "USER, GROUP and ZONE types")
