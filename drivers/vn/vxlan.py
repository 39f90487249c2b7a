"""``vxlan``: ``fw`` whose bridges reach the other hosts through a VXLAN device per network:
VNI = the NIC's VLAN_ID, over its PHYDEV, to the multicast group ``vxlan_mc`` + VNI (as
OpenNebula's default, 239.0.0.0 + VNI), so every host with a VM on the network joins it.

Options: ``vxlan_mc`` (base group, default ``239.0.0.0``), ``vxlan_ttl`` (default 16),
``vxlan_port`` (UDP port, default 4789), and those of ``fw``.
"""

from __future__ import annotations

import ipaddress
import shlex
from typing import Any

from oneserver.driver_contract import DriverError, NicSpec, VNCapability

from . import names
from .bridge import ensure_port
from .firewall import FirewallVN


def vxlan_name(phydev: str, vni: int) -> str:
    """OpenNebula's ``<PHYDEV>.<VNI>``, or ``vxlan<VNI>`` when that is too long."""
    name = f"{phydev}.{vni}"
    return name if len(name) <= 15 else f"vxlan{vni}"


class VxlanVN(FirewallVN):
    capabilities = frozenset({VNCapability.BRIDGE, VNCapability.SECURITY_GROUPS,
                              VNCapability.OVERLAY})

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        try:
            self.group_base = ipaddress.IPv4Address(str(self.options.get("vxlan_mc",
                                                                         "239.0.0.0")))
            self.ttl = int(self.options.get("vxlan_ttl", 16))
            self.port = int(self.options.get("vxlan_port", 4789))
        except ValueError as exc:
            raise DriverError(f"vxlan options: {exc}") from None

    def device(self, nic: NicSpec) -> tuple[str, str, int]:
        """(vxlan device, PHYDEV, VNI) of the NIC."""
        phydev = names.phydev_of(nic)
        if phydev is None:
            raise DriverError(f"NIC {nic.nic_id}: a vxlan network needs PHYDEV")
        vni = names.number(nic.attrs.get("VLAN_ID", ""), f"NIC {nic.nic_id} VLAN_ID", 0,
                           names.MAX_VNI)
        return vxlan_name(phydev, vni), phydev, vni

    def uplink(self, nic: NicSpec, bridge: str) -> str:
        dev, phydev, vni = self.device(nic)
        try:
            group = self.group_base + vni
        except ipaddress.AddressValueError:
            raise DriverError(f"vxlan_mc {self.group_base} + VNI {vni} is no address") \
                from None
        q = shlex.quote
        return (f"if ! ip link show dev {q(dev)} >/dev/null 2>&1; then\n"
                f"  ip link add name {q(dev)} type vxlan id {vni} dev {q(phydev)} "
                f"group {group} dstport {self.port} ttl {self.ttl} 2>/dev/null "
                f"|| ip link show dev {q(dev)} >/dev/null\n"
                "fi\n") + ensure_port(bridge, dev)

    def own_ports(self, nic: NicSpec) -> tuple[str, ...]:
        return (self.device(nic)[0],)
