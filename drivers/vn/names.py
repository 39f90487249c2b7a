"""Checks for every template value a VN driver hands to a host. NIC attributes are written by
API callers (oneadmin, or oned's networking model from a network's template), so each value
that reaches a shell or a ruleset is matched against a strict pattern first and then written
back from the parsed form, never as the caller spelled it."""

from __future__ import annotations

import ipaddress
import re

from oneserver.driver_contract import DriverError, NicSpec

# Linux interface names: at most 15 bytes (IFNAMSIZ - 1); no "/", blanks or quotes; we also
# refuse a leading "-" (an option to ip) and names that are only dots.
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}\Z")
_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}\Z")
MAX_VNI = (1 << 24) - 1


def ifname(value: str | None, what: str) -> str:
    """``value`` if it is a usable Linux interface name, else DriverError naming ``what``."""
    if value is None or not _IFNAME.match(value):
        raise DriverError(f"{what} {value!r} is not a valid interface name (letters, digits, "
                          "'_', '.', '-', at most 15 characters)")
    return value


def mac(value: str, what: str) -> str:
    if not _MAC.match(value):
        raise DriverError(f"{what} {value!r} is not a MAC address")
    return value.lower()


def ip(value: str, what: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        raise DriverError(f"{what} {value!r} is not an IP address") from None


def number(value: str, what: str, low: int, high: int) -> int:
    """A decimal integer in ``[low, high]``."""
    text = value.strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise DriverError(f"{what} {value!r} is not a number from {low} to {high}")
    return int(text)


def bridge_of(nic: NicSpec) -> str:
    return ifname(nic.bridge, f"NIC {nic.nic_id} BRIDGE")


def target_of(nic: NicSpec) -> str:
    return ifname(nic.target, f"NIC {nic.nic_id} TARGET")


def phydev_of(nic: NicSpec) -> str | None:
    raw = nic.attrs.get("PHYDEV", "").strip()
    return ifname(raw, f"NIC {nic.nic_id} PHYDEV") if raw else None
