"""``<USER>``, ``<GROUP>`` and ``<ACL_POOL>`` documents."""

from __future__ import annotations

from typing import Any

from oneserver.documents import cdata, el, ids, template

QUOTAS = (
    "<DATASTORE_QUOTA></DATASTORE_QUOTA><NETWORK_QUOTA></NETWORK_QUOTA><VM_QUOTA></VM_QUOTA>"
    "<IMAGE_QUOTA></IMAGE_QUOTA>"
)
DEFAULT_USER_QUOTAS = f"<DEFAULT_USER_QUOTAS>{QUOTAS}</DEFAULT_USER_QUOTAS>"
DEFAULT_GROUP_QUOTAS = f"<DEFAULT_GROUP_QUOTAS>{QUOTAS}</DEFAULT_GROUP_QUOTAS>"


def _user_head(doc: dict[str, Any]) -> str:
    tokens = "".join(
        "<LOGIN_TOKEN>" + el("TOKEN", t["token"])
        + f"<EXPIRATION_TIME>{t['expiration']}</EXPIRATION_TIME><EGID>{t['egid']}</EGID>"
        "</LOGIN_TOKEN>"
        for t in doc.get("tokens", [])
    )
    return (
        f"<USER><ID>{doc['id']}</ID><GID>{doc['gid']}</GID>" + ids("GROUPS", doc["groups"])
        + el("GNAME", doc["gname"]) + el("NAME", doc["name"])
        + cdata("PASSWORD", doc["password"]) + cdata("AUTH_DRIVER", doc["auth_driver"])
        + f"<ENABLED>{1 if doc['enabled'] else 0}</ENABLED>" + tokens
        + template(doc["template"])
    )


def user(doc: dict[str, Any]) -> str:
    """``one.user.info``: the user with its quotas and the defaults."""
    return _user_head(doc) + QUOTAS + DEFAULT_USER_QUOTAS + "</USER>"


def user_in_pool(doc: dict[str, Any]) -> str:
    """A user inside ``<USER_POOL>``: quotas follow as a sibling ``<QUOTAS>``."""
    return _user_head(doc) + "</USER>" + f"<QUOTAS><ID>{doc['id']}</ID>{QUOTAS}</QUOTAS>"


def _group_head(doc: dict[str, Any]) -> str:
    return (
        f"<GROUP><ID>{doc['id']}</ID>" + el("NAME", doc["name"]) + template(doc["template"])
        + ids("USERS", doc["users"]) + ids("ADMINS", doc["admins"])
    )


def _vlan_rules(doc: dict[str, Any]) -> str:
    # oned 7.4 keeps a group's VLAN rules beside its quotas; group.xsd requires the element.
    return f"<VLAN_RULES>{cdata('ID', doc['id'])}</VLAN_RULES>"


def group(doc: dict[str, Any]) -> str:
    return _group_head(doc) + QUOTAS + _vlan_rules(doc) + DEFAULT_GROUP_QUOTAS + "</GROUP>"


def group_in_pool(doc: dict[str, Any]) -> str:
    """A group inside ``<GROUP_POOL>``: quotas and VLAN rules follow as siblings, as in oned."""
    return (
        _group_head(doc) + "</GROUP>" + f"<QUOTAS><ID>{doc['id']}</ID>{QUOTAS}</QUOTAS>"
        + _vlan_rules(doc)
    )


def acl(rule: dict[str, Any]) -> str:
    return (
        f"<ACL><ID>{rule['id']}</ID><USER>{rule['user']:X}</USER>"
        f"<RESOURCE>{rule['resource']:X}</RESOURCE><RIGHTS>{rule['rights']:X}</RIGHTS>"
        f"<ZONE>{rule['zone']:X}</ZONE>" + el("STRING", rule["string"]) + "</ACL>"
    )
