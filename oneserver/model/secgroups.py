"""Security groups: their rules (checked as oned's SecurityGroup::is_valid), the
SECURITY_GROUP_RULE entries a VM's TEMPLATE gets from the groups of its NICs, and which VMs
use each group (UPDATED_VMS and the other three lists)."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

from oneserver import numeric, store
from oneserver.model import address_range
from oneserver.template import Template

Doc = dict[str, Any]
DEFAULT_ID = 0
DEFAULT_DESCRIPTION = (
    "The default security group is added to every network. Use it to add default filter "
    "rules for your networks. You may remove this security group from any network by "
    "updating its properties.")
VM_LISTS = ("updated", "outdated", "updating", "error")

_PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL")
_PORTS = re.compile(r"((\d+|\d+:\d+),)*(\d+|\d+:\d+)")


class RuleError(ValueError):
    """A RULE oned refuses; str() is oned's message."""


def check_rule(rule: dict[str, str]) -> None:
    proto = rule.get("PROTOCOL", "").upper()
    if proto not in _PROTOCOLS:
        raise RuleError("Wrong PROTOCOL in rule. Valid options: TCP, UDP, ICMP, ICMPV6, "
                        "IPSEC, ALL.")
    ports = rule.get("RANGE", "")
    if ports and proto not in ("TCP", "UDP"):
        raise RuleError("RANGE is supported only for TCP and UDP protocols.")
    if ports:
        if not _PORTS.fullmatch(ports):
            raise RuleError("Invalid RANGE specification.")
        count = 0
        for piece in ports.split(","):
            ends = [int(p) for p in piece.split(":")]
            if any(p > 65535 for p in ends):
                raise RuleError("RANGE out of bounds 0-65536.")
            if len(ends) == 2 and ends[1] < ends[0]:
                raise RuleError("RANGE BEGIN value is greater than RANGE END value")
            count += len(ends)
            if count > 15:
                raise RuleError("Not more than 15 ports can be specified in a RULE")
    for attr, wants in (("ICMP_TYPE", "ICMP"), ("ICMPV6_TYPE", "ICMPV6")):
        if rule.get(attr, ""):
            if proto != wants:
                raise RuleError(f"{attr} is supported only for {wants} protocol.")
            if numeric.leading_uint(rule[attr]) is None:
                raise RuleError(f"Wrong {attr}, it must be integer")
    if rule.get("RULE_TYPE", "").upper() not in ("INBOUND", "OUTBOUND"):
        raise RuleError("Wrong RULE_TYPE in rule. Valid options: INBOUND, OUTBOUND.")
    if rule.get("IP", ""):
        if numeric.leading_uint(rule.get("SIZE", "")) is None:
            raise RuleError("Wrong or empty SIZE.")
        try:
            ipaddress.ip_address(rule["IP"])
        except ValueError:
            raise RuleError("Wrong format for IP value.") from None
    elif rule.get("NETWORK_ID", "") and numeric.leading_int(rule["NETWORK_ID"]) is None:
        raise RuleError("Wrong NETWORK_ID.")


def check_template(tmpl: Template) -> Template:
    """Every RULE valid (RuleError otherwise), duplicates dropped as oned drops them."""
    seen: set[str] = set()
    out = Template()
    for name, value in tmpl.items:
        if name == "RULE" and isinstance(value, dict):
            check_rule(value)
            digest = hashlib.sha1(repr(sorted(value.items())).encode()).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
        out.add(name, value)
    return out


def new_doc(oid: int, owner: Doc, name: str, tmpl: Template) -> Doc:
    return {**owner, "id": oid, "name": name, "template": tmpl.to_json(),
            **{k: [] for k in VM_LISTS}}


def default_doc() -> Doc:
    tmpl = Template([("DESCRIPTION", DEFAULT_DESCRIPTION),
                     ("RULE", {"PROTOCOL": "ALL", "RULE_TYPE": "OUTBOUND"}),
                     ("RULE", {"PROTOCOL": "ALL", "RULE_TYPE": "INBOUND"})])
    owner = {"uid": 0, "gid": 0, "uname": "oneadmin", "gname": "oneadmin",
             "perms": [1, 1, 1, 1, 0, 0, 1, 0, 0], "lock": None}
    return new_doc(DEFAULT_ID, owner, "default", tmpl)


def uses(sg: Doc, vm_id: int, using: bool) -> None:
    """Count ``vm_id`` among the VMs of ``sg`` (UPDATED_VMS), or forget it in every list."""
    for name in VM_LISTS:
        if vm_id in sg[name]:
            sg[name].remove(vm_id)
    if using:
        sg["updated"] = sorted({*sg["updated"], vm_id})


def vm_rules(groups: list[Doc], vm_id: int) -> list[dict[str, str]]:
    """The SECURITY_GROUP_RULE entries of a VM using ``groups`` (SecurityGroupPool::
    get_security_group_rules), in group id order, each group counting the VM (the caller
    saves them); a rule naming a network becomes one rule per address range of it."""
    rules: list[dict[str, str]] = []
    for sg in sorted(groups, key=lambda g: int(g["id"])):
        uses(sg, vm_id, True)
        rules += rules_of(sg)
    return rules


def rules_of(sg: Doc) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for rule in Template.from_json(sg["template"]).vectors("RULE"):
        rule = {**rule, "SECURITY_GROUP_ID": str(sg["id"]), "SECURITY_GROUP_NAME": sg["name"]}
        net = numeric.leading_int(rule.get("NETWORK_ID", "")) if "NETWORK_ID" in rule else None
        if net is None:
            out.append(rule)
            continue
        if not store.exists("vn", net):
            continue
        for ar in store.load("vn", net)["ars"]:
            out.append({**rule, **address_range.rule_attrs(ar)})
    return out
