"""Address ranges of a virtual network, as oned's AddressRange keeps them: the AR's attributes
(a template vector, ``attrs``) plus the leases handed out of it (``allocated``: address index →
owners). An owner is packed as oned packs it: the object type bit (VM, NET for a reservation)
or'ed with the object's id as an unsigned 32-bit number, so a hold (VM -1) is
``VM | 0xFFFFFFFF``.

Types: IP4, IP6 (SLAAC: MAC-derived addresses under GLOBAL_PREFIX/ULA_PREFIX), IP6_STATIC,
IP4_6, IP4_6_STATIC and ETHER (MACs only). A MAC not given is oned's ``MAC_PREFIX`` (02:00)
followed by the first IPv4 address, or by 32 random bits without one.

An AR here is a plain dict (``{"attrs": {...}, "allocated": {"idx": [owner, ...]}}``) stored
in the network's document; these functions change it in place and never touch the database."""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from oneserver import numeric
from oneserver.model.acl import TYPES

AR = dict[str, Any]
Vector = dict[str, str]

VM = TYPES["VM"]
NET = TYPES["NET"]
OWNER_KINDS = ((VM, "VM"), (NET, "VNET"), (TYPES["VROUTER"], "VROUTER"))
MAC_PREFIX = 0x0200  # oned.conf MAC_PREFIX = "02:00"
U32 = 0xFFFFFFFF

TYPE_NAMES = ("IP4", "IP6", "IP6_STATIC", "IP4_6", "IP4_6_STATIC", "ETHER")
_IPV4 = {"IP4", "IP4_6", "IP4_6_STATIC"}
_SLAAC = {"IP6", "IP4_6"}
_STATIC6 = {"IP6_STATIC", "IP4_6_STATIC"}
# oned's AddressRange::SG_RULE_ATTRIBUTES: what a security rule on a network takes of each AR.
SG_RULE_ATTRS = ("AR_ID", "TYPE", "SIZE", "MAC", "IP", "IP6")
# Never kept from what a caller writes: oned derives them (or renders them in vn.info only).
_DERIVED = ("ALLOCATED", "USED_LEASES", "LEASES", "PARENT_NETWORK_AR_ID", "PARENT_NETWORK")
_RENDERED = ("MAC_END", "IP_END", "IP6_END", "IP6_ULA", "IP6_ULA_END", "IP6_GLOBAL",
             "IP6_GLOBAL_END")


class ARError(ValueError):
    """An AR definition oned refuses; str() is oned's message."""


def owner(kind: int, oid: int) -> int:
    return kind | (oid & U32)


def owner_id(pack: int) -> int:
    """The id in an owner pack, as a C ``int`` (a hold's 0xFFFFFFFF is -1)."""
    low = pack & U32
    return low - (1 << 32) if low >= 1 << 31 else low


# ----------------------------------------------------------------------------- addresses

def mac_to_s(mac: int) -> str:
    return ":".join(f"{(mac >> s) & 0xFF:02x}" for s in range(40, -1, -8))


def mac_to_i(text: str) -> int | None:
    """A MAC as six hex octets separated by ':' (oned's mac_to_i), as a 48-bit number."""
    parts = text.strip().split(":")
    if len(parts) != 6 or not all(1 <= len(p) <= 2 for p in parts):
        return None
    try:
        return int("".join(p.rjust(2, "0") for p in parts), 16)
    except ValueError:
        return None


def ip_to_i(text: str) -> int | None:
    try:
        return int(ipaddress.IPv4Address(text.strip()))
    except ValueError:
        return None


def ip_to_s(value: int) -> str:
    return str(ipaddress.IPv4Address(value & U32))


def ip6_to_i(text: str) -> int | None:
    try:
        return int(ipaddress.IPv6Address(text.strip()))
    except ValueError:
        return None


def ip6_to_s(value: int) -> str:
    return str(ipaddress.IPv6Address(value & ((1 << 128) - 1)))


def prefix6(text: str) -> int | None:
    """The upper 64 bits of an IPv6 prefix ("" is 0, as oned's prefix6_to_i)."""
    if text.strip() == "":
        return 0
    value = ip6_to_i(text)
    return None if value is None else value >> 64


def slaac(prefix: int, mac: int) -> str:
    """The address an interface with ``mac`` takes under a /64 ``prefix`` (modified EUI-64)."""
    hi, lo = mac >> 24, mac & 0xFFFFFF
    eui = ((hi ^ 0x020000) << 40) | (0xFFFE << 24) | lo
    return ip6_to_s((prefix << 64) | eui)


# ----------------------------------------------------------------------------- an AR's facts

def kind(ar: AR) -> str:
    return str(ar["attrs"].get("TYPE", "")).upper()


def size(ar: AR) -> int:
    return int(ar["attrs"].get("SIZE", "0"))


def ar_id(ar: AR) -> int:
    return int(ar["attrs"]["AR_ID"])


def shared(ar: AR) -> bool:
    return str(ar["attrs"].get("SHARED", "NO")).upper() == "YES"


def used(ar: AR) -> int:
    return sum(len(owners) for owners in ar["allocated"].values())


def _mac(ar: AR) -> int:
    return mac_to_i(ar["attrs"].get("MAC", "")) or 0


def _mac_at(ar: AR, index: int) -> int:
    base = _mac(ar)
    return (base & ~U32) | ((base + index) & U32)  # the low 32 bits wrap, as in oned


def _ip(ar: AR) -> int:
    return ip_to_i(ar["attrs"].get("IP", "")) or 0


def _ip6(ar: AR) -> int:
    return ip6_to_i(ar["attrs"].get("IP6", "")) or 0


def _prefixes(ar: AR) -> list[tuple[str, int]]:
    out = []
    for name, attr in (("IP6_ULA", "ULA_PREFIX"), ("IP6_GLOBAL", "GLOBAL_PREFIX")):
        value = prefix6(ar["attrs"].get(attr, "")) or 0
        if value:
            out.append((name, value))
    return out


def security_groups(text: str) -> set[int]:
    """oned's split_unique of a SECURITY_GROUPS list: numbers, the rest skipped."""
    return {n for piece in text.split(",") if (n := numeric.leading_int(piece)) is not None}


def join(ids: set[int]) -> str:
    return ",".join(str(i) for i in sorted(ids))


# ----------------------------------------------------------------------------- new ARs

def _yes_no(value: str) -> bool | None:
    upper = value.strip().upper()
    return True if upper == "YES" else False if upper == "NO" else None


def _uint(value: str, bits: int) -> int | None:
    n = numeric.to_int(value, bits + 1)
    return n if n is not None and 0 <= n < (1 << bits) else None


def new(attrs: Vector, oid: int, reservation: bool = False) -> AR:
    """An AR from its definition (AddressRange::from_attr), with id ``oid``; ARError as
    oned words it when the definition is wrong."""
    a = dict(attrs)
    ty = a.get("TYPE", "").upper()
    if ty not in TYPE_NAMES:
        raise ARError("Unknown or missing address range TYPE.")
    is_shared = bool(_yes_no(a.get("SHARED", "")))
    a["SHARED"] = "YES" if is_shared else "NO"
    if is_shared:
        if ty not in ("IP4", "IP6_STATIC"):
            raise ARError("Shared ARs can be only of type IP4 or IP6_STATIC.")
        if a.get("IPAM_MAD", "") not in ("", "internal"):
            raise ARError("Shared ARs cannot use an external IPAM")
    if ty in _IPV4:
        if ip_to_i(a.get("IP", "")) is None:
            raise ARError("Wrong or empty IP attribute")
    else:
        a.pop("IP", None)
    if ty in _SLAAC:
        if prefix6(a.get("GLOBAL_PREFIX", "")) is None:
            raise ARError("Wrong format for IP6 global address prefix")
        if prefix6(a.get("ULA_PREFIX", "")) is None:
            raise ARError("Wrong format for IP6 unique local address prefix")
    else:
        a.pop("GLOBAL_PREFIX", None)
        a.pop("ULA_PREFIX", None)
    if ty in _STATIC6:
        first = ip6_to_i(a.get("IP6", ""))
        if first is None:
            raise ARError("Wrong or empty IP6 attribute")
        length = numeric.to_int(a.get("PREFIX_LENGTH", ""))
        if length is None:
            raise ARError("Wrong or empty PREFIX_LENGTH")
        if a.get("SIZE", "") == "":
            # All the addresses from IP6 to the end of its prefix (oned's default).
            span = (1 << 64) - 1 if length <= 64 else 1 << max(0, 128 - length)
            mask = span if length <= 64 else span - 1
            a["SIZE"] = str(span - ((first & ((1 << 64) - 1)) & mask))
    else:
        a.pop("IP6", None)
    if is_shared:
        a["MAC"] = mac_to_s(0)
    elif a.get("MAC", "") == "":
        low = ip_to_i(a["IP"]) if ty in _IPV4 else secrets.randbits(32)
        a["MAC"] = mac_to_s((MAC_PREFIX << 32) | (low or 0))
    else:
        mac = mac_to_i(a["MAC"])
        if mac is None:
            raise ARError(f"Wrong format for MAC attribute: {a['MAC']}")
        a["MAC"] = mac_to_s(mac)
    n = _uint(a.get("SIZE", ""), 64)
    if n is None:
        raise ARError("Wrong SIZE for address range")
    a["SIZE"] = str(n)
    a["NEXT_INDEX"] = "0"
    a["AR_ID"] = str(oid)
    for name in _DERIVED:
        a.pop(name, None)
    return {"attrs": a, "allocated": {}}


def update(ar: AR, given: Vector, reservation: bool) -> set[str]:
    """Apply ``given`` (one.vn.update_ar) to ``ar`` as AddressRange::update_attributes does:
    what defines the addresses is kept, the rest replaced; ARError when oned refuses. Returns
    the names of the attributes that changed (the NICs that inherited them are outdated)."""
    old = ar["attrs"]
    up = dict(given)
    for name in ("TYPE", "SHARED", "MAC", "AR_ID"):
        up[name] = old.get(name, "")
    if old.get("IPAM_MAD") and not shared(ar):
        up["IPAM_MAD"] = old["IPAM_MAD"]
    up.pop("IP", None)
    if kind(ar) in _IPV4:
        up["IP"] = old.get("IP", "")
    up.pop("IP6", None)
    if kind(ar) in _STATIC6:
        up["IP6"] = old.get("IP6", "")
    for name in ("USED_LEASES", "LEASES", "PARENT_NETWORK_AR_ID", *_RENDERED):
        up.pop(name, None)
    if "ALLOCATED" in old:
        up["ALLOCATED"] = old["ALLOCATED"]
    if reservation:
        up["PARENT_NETWORK_AR_ID"] = old.get("PARENT_NETWORK_AR_ID", "")
    if kind(ar) in _STATIC6:
        if numeric.to_int(up.get("PREFIX_LENGTH", "")) is None:
            up["PREFIX_LENGTH"] = old.get("PREFIX_LENGTH", "")
    else:
        up.pop("PREFIX_LENGTH", None)
    if kind(ar) in _SLAAC:
        for attr, what in (("GLOBAL_PREFIX", "global"), ("ULA_PREFIX", "unique local")):
            up.setdefault(attr, "")
            if prefix6(up[attr]) is None:
                raise ARError(f"Wrong format for IP6 {what} address prefix")
    else:
        up.pop("GLOBAL_PREFIX", None)
        up.pop("ULA_PREFIX", None)
    if up.get("SIZE", "") == "":
        new_size = size(ar)
    else:
        parsed = _uint(up["SIZE"], 64)
        if parsed is None:
            raise ARError("Unable to read the SIZE attribute, it must be number >= 0")
        if reservation and parsed != size(ar):
            raise ARError("The SIZE of a reservation cannot be changed.")
        if any(int(i) >= parsed for i in ar["allocated"]):
            raise ARError("New SIZE cannot be applied. There are used leases that would "
                          "fall outside the range.")
        new_size = parsed
    up["SIZE"] = str(new_size)
    nxt = int(old.get("NEXT_INDEX", "0"))
    up["NEXT_INDEX"] = str(nxt if nxt < new_size else 0)
    for port in ("PORT_START", "PORT_SIZE"):
        if port in up and numeric.to_int(up[port]) is None:
            del up[port]
    changed = {k for k in set(up) | set(old) if up.get(k) != old.get(k)}
    ar["attrs"] = up
    return changed


# ----------------------------------------------------------------------------- leases

def sync(ar: AR, nxt: int | None = None) -> None:
    """Write NEXT_INDEX and ALLOCATED back into the attributes (allocated_to_attr)."""
    if nxt is not None:
        ar["attrs"]["NEXT_INDEX"] = str(nxt)
    pairs = sorted((int(i), o) for i, owners in ar["allocated"].items() for o in owners)
    ar["attrs"]["ALLOCATED"] = "".join(f" {i} {o}" for i, o in pairs)


def _taken(ar: AR, index: int) -> bool:
    return str(index) in ar["allocated"]


def _free_index(ar: AR) -> int | None:
    """The first free index from NEXT_INDEX on, wrapping (AddressRangeInternal)."""
    n, start = size(ar), int(ar["attrs"].get("NEXT_INDEX", "0"))
    if used(ar) >= n:
        return None
    index = start % n
    # At most one step per lease in use before a free one: the loop is bounded by them.
    for _ in range(len(ar["allocated"]) + 1):
        if not _taken(ar, index):
            return index
        index = (index + 1) % n
    return None


def _free_range(ar: AR, count: int) -> int | None:
    """The first run of ``count`` free indexes from NEXT_INDEX on (a reservation)."""
    n = size(ar)
    if count <= 0 or count > n:
        return None
    taken = sorted(int(i) for i in ar["allocated"])
    start = int(ar["attrs"].get("NEXT_INDEX", "0")) % n
    for begin in (start, 0):  # from NEXT_INDEX to the end, then from the start
        index = begin
        while index + count <= n:
            clash = next((t for t in taken if index <= t < index + count), None)
            if clash is None:
                return index
            index = clash + 1
    return None


def _set_addresses(ar: AR, index: int, nic: Vector) -> None:
    if shared(ar):
        nic["MAC"] = mac_to_s((MAC_PREFIX << 32) | secrets.randbits(32))
        nic["SHARED"] = "YES"
    else:
        nic["MAC"] = mac_to_s(_mac_at(ar, index))
    start = numeric.to_int(ar["attrs"].get("PORT_START", "")) or 0
    width = numeric.to_int(ar["attrs"].get("PORT_SIZE", "")) or 0
    if start and width:
        first = start + index * width + 1
        nic["EXTERNAL_PORT_RANGE"] = f"{first}:{first + width - 1}"
        nic["INTERNAL_PORT_RANGE"] = f"1-{width}/{first}"
    ty = kind(ar)
    if ty in _IPV4:
        nic["IP"] = ip_to_s(_ip(ar) + index)
    if ty in _SLAAC:
        mac = _mac_at(ar, index)
        nic["IP6_LINK"] = slaac(0xFE80 << 48, mac)
        for name, prefix in _prefixes(ar):
            nic[name] = slaac(prefix, mac)
    if ty in _STATIC6:
        base = _ip6(ar)
        nic["IP6"] = ip6_to_s((base & ~U32) | ((base + index) & U32))


def take(ar: AR, index: int, pack: int, nic: Vector | None, inherit: tuple[str, ...]) -> None:
    """Give address ``index`` to owner ``pack``; write it into ``nic`` (allocate_by_index)."""
    ar["allocated"].setdefault(str(index), []).append(pack)
    sync(ar)
    if nic is None:
        return
    _set_addresses(ar, index, nic)
    nic["AR_ID"] = ar["attrs"]["AR_ID"]
    for name in ("VN_MAD", "BRIDGE", "PHYDEV", "VLAN_ID"):
        if ar["attrs"].get(name, ""):
            nic[name] = ar["attrs"][name]
    for name in inherit:
        if not nic.get(name, "") and ar["attrs"].get(name, ""):
            nic[name] = ar["attrs"][name]


def allocate(ar: AR, pack: int, nic: Vector, inherit: tuple[str, ...]) -> bool:
    """The next free address for ``pack`` (not from a shared AR)."""
    if shared(ar):
        return False
    index = _free_index(ar)
    if index is None:
        return False
    take(ar, index, pack, nic, inherit)
    sync(ar, (index + 1) % size(ar))
    return True


def index_of(ar: AR, what: str, value: str) -> int | None:
    """The index of address ``value`` (what: IP, IP6 or MAC) in ``ar``, or None."""
    ty = kind(ar)
    if what == "IP":
        if ty not in _IPV4 or (n := ip_to_i(value)) is None or n < _ip(ar):
            return None
        index = n - _ip(ar)
    elif what == "IP6":
        if ty not in _STATIC6 or (n := ip6_to_i(value)) is None:
            return None
        base = _ip6(ar)
        if n >> 32 != base >> 32 or (n & U32) < (base & U32):
            return None
        index = (n & U32) - (base & U32)
    else:
        if (n := mac_to_i(value)) is None or n >> 32 != _mac(ar) >> 32 or (
                n & U32) < (_mac(ar) & U32):
            return None
        index = (n & U32) - (_mac(ar) & U32)
    return index if index < size(ar) else None


def allocate_at(ar: AR, what: str, value: str, pack: int, nic: Vector | None,
                inherit: tuple[str, ...]) -> bool:
    """Address ``value`` for ``pack`` if it is in ``ar`` and free (a shared AR shares IPs)."""
    if what == "MAC" and shared(ar):
        return False
    index = index_of(ar, what, value)
    if index is None or (_taken(ar, index) and not shared(ar)):
        return False
    take(ar, index, pack, nic, inherit)
    return True


def free(ar: AR, what: str, value: str, pack: int) -> bool:
    """Give back address ``value`` held by ``pack``."""
    index = index_of(ar, what, value)
    if index is None:
        return False
    owners = ar["allocated"].get(str(index), [])
    if pack not in owners:
        return False
    owners.remove(pack)
    if not owners:
        del ar["allocated"][str(index)]
    sync(ar)
    return True


def free_owner(ar: AR, pack: int) -> int:
    """Give back every address ``pack`` holds; how many."""
    freed = 0
    for index in list(ar["allocated"]):
        owners = ar["allocated"][index]
        while pack in owners:
            owners.remove(pack)
            freed += 1
        if not owners:
            del ar["allocated"][index]
    if freed:
        sync(ar)
    return freed


def reserve(ar: AR, pack: int, count: int, start: tuple[str, str] | None, new_id: int
            ) -> AR | None:
    """``count`` addresses for reservation ``pack``, from ``start`` (IP/IP6/MAC) or the first
    free run; the reservation's own AR (id ``new_id``), or None when there is no room."""
    if shared(ar) or count > size(ar) - used(ar):
        return None
    if start is None:
        first = _free_range(ar, count)
        if first is None:
            return None
        sync(ar, (first + count) % size(ar))
    else:
        first = index_of(ar, *start)
        if first is None or first + count > size(ar) or any(
                _taken(ar, i) for i in range(first, first + count)):
            return None
    for i in range(first, first + count):
        ar["allocated"].setdefault(str(i), []).append(pack)
    sync(ar)
    attrs = {k: v for k, v in ar["attrs"].items() if k not in ("IPAM_MAD",)}
    probe: Vector = {}
    _set_addresses(ar, first, probe)
    for name in ("MAC", "IP", "IP6", "EXTERNAL_PORT_RANGE", "INTERNAL_PORT_RANGE"):
        if name in probe:
            attrs[name] = probe[name]
    attrs["SIZE"] = str(count)
    child = new(attrs, new_id, reservation=True)
    child["attrs"]["PARENT_NETWORK_AR_ID"] = ar["attrs"]["AR_ID"]
    return child


# ----------------------------------------------------------------------------- rendering data

def ends(ar: AR) -> list[tuple[str, str]]:
    """What vn.info shows after an AR's attributes: MAC_END, IP_END, the IPv6 ranges."""
    n = size(ar)
    mac = 0 if shared(ar) else _mac(ar)
    mac_end = (mac & ~U32) | ((mac + n - 1) & U32) if not shared(ar) else 0
    out = [("MAC_END", mac_to_s(mac_end))]
    ty = kind(ar)
    if ty in _IPV4:
        out.append(("IP_END", ip_to_s(_ip(ar) + n - 1)))
    if ty in _SLAAC:
        for name, prefix in _prefixes(ar):
            out.append((name, slaac(prefix, mac)))
            out.append((f"{name}_END", slaac(prefix, mac_end)))
    if ty in _STATIC6:
        base = _ip6(ar)
        low = (base & ((1 << 64) - 1)) + n - 1
        out.append(("IP6_END", ip6_to_s((base & ~((1 << 64) - 1)) | (low & ((1 << 64) - 1)))))
    return out


def lease_rows(ar: AR, visible: dict[str, set[int] | None]) -> list[Vector]:
    """Each lease as vn.info lists it (sorted by index): the owner (VM, VNET or VROUTER, when
    ``visible`` for that owner kind is None or holds its id) and the addresses."""
    rows = []
    for index in sorted(ar["allocated"], key=int):
        for pack in ar["allocated"][index]:
            row: Vector = {}
            for bit, name in OWNER_KINDS:
                if pack & bit:
                    oid = owner_id(pack)
                    seen = visible.get(name)
                    if seen is None or oid in seen:
                        row[name] = str(oid)
                    break
            if not row:
                continue
            probe: Vector = {}
            _set_addresses(ar, int(index), probe)
            if shared(ar):
                probe.pop("MAC", None)
                probe.pop("SHARED", None)
            row.update(probe)
            rows.append(row)
    return rows


def rule_attrs(ar: AR) -> Vector:
    """What a security rule naming this AR's network takes of it (process_security_rule)."""
    out = {k: ar["attrs"][k] for k in SG_RULE_ATTRS if ar["attrs"].get(k, "")}
    mac = _mac(ar)
    for name, prefix in _prefixes(ar):
        out[name] = slaac(prefix, mac)
    return out
