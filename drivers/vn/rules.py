"""Security group rules as nftables rulesets, one table per NIC.

Packets are filtered where they pass the NIC's bridge port (its TARGET): a table of the
``bridge`` family per NIC, ``one-<vm id>-<nic id>``, with base chains on the bridge's
prerouting (frames from the VM: OUTBOUND rules) and postrouting hooks (frames to the VM:
INBOUND rules), matching the port by name, so the rules hold before the interface exists and
after libvirt recreates it. As in OpenNebula: an ACCEPT for each rule of the NIC's groups,
replies to allowed traffic pass, and everything else of IPv4/IPv6 is dropped (ARP and other
non-IP frames pass); a NIC without security groups is treated as the default group (all).

Replies: this kernel's bridge family has no connection tracking (no nf_conntrack_bridge), so
a host-wide ``inet`` table (``oneserver``) asks conntrack, which br_netfilter runs for bridged
IP packets, and marks established and related packets with a bit of the packet mark that the
bridge chains accept. A container cannot set that mark: it is cleared when a packet leaves
its network namespace.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from oneserver.driver_contract import DriverError, NicSpec, SecurityRule, VMSpec

from . import names

GLOBAL_TABLE = "oneserver"
DEFAULT_MARK = 0x00400000
PRIORITY = 10  # after br_netfilter (0), which runs conntrack and the inet chains
Net = ipaddress.IPv4Network | ipaddress.IPv6Network

# The NIC's security groups, when it names none (OpenNebula's EMPTY_RULES): allow all.
ALLOW_ALL = (SecurityRule(0, "ALL", "INBOUND"), SecurityRule(0, "ALL", "OUTBOUND"))

# ICMPv6 neighbour discovery always passes, as OpenNebula's rules let it (IPv6's ARP).
ND_INBOUND = "icmpv6 type { nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert, " \
    "nd-redirect } accept"
ND_OUTBOUND = "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert } accept"

PROTOCOLS = {"ALL": None, "TCP": "tcp", "UDP": "udp", "ICMP": "icmp", "ICMPV6": "ipv6-icmp",
             "IPSEC": "esp"}


def table_name(vm_id: int, nic_id: int) -> str:
    return f"one-{vm_id}-{nic_id}"


@dataclass(frozen=True)
class Match:
    """One ACCEPT line of a NIC chain."""

    inbound: bool
    line: str


def ports(text: str, what: str) -> str:
    """RANGE (``22,80,1000:2000``, iptables multiport syntax) as an nft set body."""
    out = []
    for part in text.split(","):
        low, sep, high = part.strip().partition(":")
        a = names.number(low, what, 0, 65535)
        b = names.number(high, what, 0, 65535) if sep else a
        if b < a:
            raise DriverError(f"{what} {part!r}: the range ends before it starts")
        out.append(str(a) if a == b else f"{a}-{b}")
    return ", ".join(out)


def nets(rule: SecurityRule, what: str) -> list[Net]:
    """The blocks of SIZE addresses from IP, as CIDR networks."""
    if rule.ip is None and rule.size is None:
        return []
    if rule.ip is None or rule.size is None:
        raise DriverError(f"{what}: IP and SIZE go together")
    first = names.ip(rule.ip, f"{what} IP")
    size = names.number(rule.size, f"{what} SIZE", 1, 2 ** 128)
    try:
        last = first + (size - 1)
    except ipaddress.AddressValueError:
        raise DriverError(f"{what}: {size} addresses from {first} leave the address space") \
            from None
    return list(ipaddress.summarize_address_range(first, last))


def rule_lines(rule: SecurityRule, what: str) -> list[Match]:
    """The ACCEPT lines of one rule (none for a rule that allows nothing)."""
    kind = rule.rule_type.strip().upper()
    if kind not in ("INBOUND", "OUTBOUND"):
        raise DriverError(f"{what}: RULE_TYPE {rule.rule_type!r} is neither inbound nor "
                          "outbound")
    inbound = kind == "INBOUND"
    protocol = rule.protocol.strip().upper()
    if protocol not in PROTOCOLS:
        raise DriverError(f"{what}: PROTOCOL {rule.protocol!r} is not one of "
                          f"{', '.join(PROTOCOLS)}")
    l4 = PROTOCOLS[protocol]
    tail = [f"meta l4proto {l4}"] if l4 else []
    if rule.range and protocol in ("TCP", "UDP"):
        tail.append(f"th dport {{ {ports(rule.range, f'{what} RANGE')} }}")
    if rule.icmp_type and protocol == "ICMP":
        tail.append(f"icmp type {names.number(rule.icmp_type, f'{what} ICMP_TYPE', 0, 255)}")
    if rule.icmpv6_type and protocol == "ICMPV6":
        tail.append("icmpv6 type "
                    f"{names.number(rule.icmpv6_type, f'{what} ICMPV6_TYPE', 0, 255)}")
    families = {"ICMP": ("ip",), "ICMPV6": ("ip6",)}.get(protocol, ("ip", "ip6"))
    blocks = nets(rule, what)
    if not blocks:
        if rule.network_id is not None and rule.ip is None:
            return []  # a rule for a network that has no address ranges: nothing to allow
        if families == ("ip", "ip6"):
            head = ["meta protocol { ip, ip6 }"] if not tail else []
        else:
            head = [f"meta protocol {families[0]}"]
        return [Match(inbound, " ".join([*head, *tail, "accept"]))]
    side = "saddr" if inbound else "daddr"
    out = []
    for family, version in (("ip", 4), ("ip6", 6)):
        chosen = [str(n) for n in blocks if n.version == version]
        if chosen and family in families:
            out.append(Match(inbound, " ".join(
                [f"{family} {side} {{ {', '.join(chosen)} }}", *tail, "accept"])))
    return out


def nic_rules(vm: VMSpec, nic: NicSpec) -> list[Match]:
    """The ACCEPT lines of every rule of the NIC's security groups."""
    # Only a NIC that names no group is open; ids without rules (or that are no ids) allow
    # nothing, as in OpenNebula.
    named = nic.attrs.get("SECURITY_GROUPS", "").strip()
    groups = nic.security_groups
    rules: Iterable[SecurityRule] = ALLOW_ALL if not named else (
        r for r in vm.security_rules if r.security_group_id in groups)
    out: list[Match] = []
    for i, rule in enumerate(rules):
        what = f"VM {vm.id} security group {rule.security_group_id} rule {i}"
        for match in rule_lines(rule, what):
            if match not in out:
                out.append(match)
    return out


def nic_table(vm: VMSpec, nic: NicSpec, mark: int = DEFAULT_MARK) -> str:
    """The table of ``nic``, replacing any earlier one in the same transaction."""
    name = table_name(vm.id, nic.nic_id)
    port = names.target_of(nic)
    matches = nic_rules(vm, nic)

    def chain(chain_name: str, inbound: bool, nd: str) -> list[str]:
        body = ["meta protocol != { ip, ip6 } accept",
                f"meta mark & {mark:#010x} == {mark:#010x} accept", nd]
        body += [m.line for m in matches if m.inbound == inbound]
        body.append("drop")
        return [f"  chain {chain_name} {{", *(f"    {b}" for b in body), "  }"]

    return "\n".join([
        f"add table bridge {name}",
        f"delete table bridge {name}",
        f"table bridge {name} {{",
        *chain("to-vm", True, ND_INBOUND),
        *chain("from-vm", False, ND_OUTBOUND),
        "  chain prerouting {",
        f"    type filter hook prerouting priority {PRIORITY}; policy accept;",
        f'    iifname "{port}" jump from-vm',
        "  }",
        "  chain postrouting {",
        f"    type filter hook postrouting priority {PRIORITY}; policy accept;",
        f'    oifname "{port}" jump to-vm',
        "  }",
        "}",
    ]) + "\n"


def global_table(mark: int = DEFAULT_MARK) -> str:
    """The host-wide table that marks replies (see the module docstring). Replaced whole, so
    it is the same after any number of runs."""
    mark_line = (f"ct state established,related meta mark set meta mark | {mark:#010x}")
    return "\n".join([
        f"add table inet {GLOBAL_TABLE}",
        f"delete table inet {GLOBAL_TABLE}",
        f"table inet {GLOBAL_TABLE} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority -150; policy accept;",
        f"    {mark_line}",
        "  }",
        "  chain output {",
        "    type filter hook output priority -150; policy accept;",
        f"    {mark_line}",
        "  }",
        "}",
    ]) + "\n"


def delete_tables(vm: VMSpec) -> str:
    """Removes the tables of ``vm.nics``; a no-op for those that are not there."""
    lines = []
    for nic in vm.nics:
        name = table_name(vm.id, nic.nic_id)
        lines += [f"add table bridge {name}", f"delete table bridge {name}"]
    return "\n".join(lines) + "\n" if lines else ""
