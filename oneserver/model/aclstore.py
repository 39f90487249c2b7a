"""ACL rules in the database, kept as oned's AclManager keeps them: a rule is added once
(a duplicate or a malformed rule is refused with AclManager's words) and deleted by id or
by its four values; a deleted group or zone takes the rules that name it."""

from __future__ import annotations

from oneserver import db
from oneserver.errors import INTERNAL, OneError
from oneserver.model import aclrule
from oneserver.model.acl import CLUSTER, GROUP, ID_MASK, INDIVIDUAL


def _exists(user: int, resource: int, rights: int, zone: int) -> bool:
    return bool(db.Acl.select().where(
        (db.Acl.user == user) & (db.Acl.resource == resource) & (db.Acl.rights == rights)
        & (db.Acl.zone == zone)).exists())


def add(user: int, resource: int, rights: int, zone: int) -> int:
    """The id of a new rule (inside the caller's write transaction); INTERNAL when the same
    rule exists or the rule is malformed, checked in that order."""
    rule = aclrule.text(user, resource, rights, zone)
    if _exists(user, resource, rights, zone):
        raise OneError(INTERNAL, f"Rule {rule} already exists")
    malformed = aclrule.problems(user, resource, rights, zone)
    if malformed:
        raise OneError(INTERNAL, f"Rule {rule} is malformed: {malformed}")
    oid = db.next_oid("acl")
    db.Acl.create(oid=oid, user=user, resource=resource, rights=rights, zone=zone)
    return oid


def add_quietly(user: int, resource: int, rights: int, zone: int) -> None:
    """Add a rule a VDC gives its groups. As oned's Vdc, a rule that already exists (given by
    hand, or by another VDC) is left as it is: the VDC does not own it then either, and will
    still delete it when it lets the group go."""
    try:
        add(user, resource, rights, zone)
    except OneError:
        pass


def delete_matching(user: int, resource: int, rights: int, zone: int) -> None:
    """Delete the rule with these four values, if there is one."""
    db.Acl.delete().where((db.Acl.user == user) & (db.Acl.resource == resource)
                          & (db.Acl.rights == rights) & (db.Acl.zone == zone)).execute()


def delete_group_rules(gid: int) -> None:
    """AclManager::del_gid_rules: the rules for ``@gid`` and the rules on ``.../@gid``."""
    selector = GROUP | gid
    db.Acl.delete().where(
        (db.Acl.user == selector)
        | (db.Acl.resource.bin_and(GROUP | ID_MASK) == selector)).execute()


def delete_cluster_rules(cid: int) -> None:
    """AclManager::del_cid_rules: the rules on ``.../%cid``."""
    selector = CLUSTER | cid
    db.Acl.delete().where(db.Acl.resource.bin_and(CLUSTER | ID_MASK) == selector).execute()


def delete_object_rules(type_bit: int, oid: int) -> None:
    """AclManager::del_resource_rules: the rules on exactly ``TYPE/#oid``."""
    db.Acl.delete().where(db.Acl.resource == (type_bit | INDIVIDUAL | oid)).execute()
