"""``802.1Q``: ``fw`` whose bridges reach the other hosts through a VLAN device per network,
``<PHYDEV>.<VLAN_ID>`` (``vlan<VLAN_ID>`` when that is too long), tagging with VLAN_ID
(1-4094). Hosts need the kernel's 8021q module (not built in the test machine's kernel, so
only the commands are tested there)."""

from __future__ import annotations

import shlex

from oneserver.driver_contract import DriverError, NicSpec, VNCapability

from . import names
from .bridge import ensure_port
from .firewall import FirewallVN

MAX_VLAN = 4094


class VlanVN(FirewallVN):
    capabilities = frozenset({VNCapability.BRIDGE, VNCapability.SECURITY_GROUPS,
                              VNCapability.VLAN})

    def device(self, nic: NicSpec) -> tuple[str, str, int]:
        """(VLAN device, PHYDEV, VLAN id) of the NIC."""
        phydev = names.phydev_of(nic)
        if phydev is None:
            raise DriverError(f"NIC {nic.nic_id}: an 802.1Q network needs PHYDEV")
        vlan = names.number(nic.attrs.get("VLAN_ID", ""), f"NIC {nic.nic_id} VLAN_ID", 1,
                            MAX_VLAN)
        name = f"{phydev}.{vlan}"
        return (name if len(name) <= 15 else f"vlan{vlan}"), phydev, vlan

    def uplink(self, nic: NicSpec, bridge: str) -> str:
        dev, phydev, vlan = self.device(nic)
        q = shlex.quote
        return (f"if ! ip link show dev {q(dev)} >/dev/null 2>&1; then\n"
                f"  ip link add link {q(phydev)} name {q(dev)} type vlan id {vlan} 2>/dev/null "
                f"|| ip link show dev {q(dev)} >/dev/null\n"
                "fi\n"
                f"ip link set dev {q(phydev)} up\n") + ensure_port(bridge, dev)

    def own_ports(self, nic: NicSpec) -> tuple[str, ...]:
        return (self.device(nic)[0],)
