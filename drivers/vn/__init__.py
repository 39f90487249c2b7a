"""VN drivers (OpenNebula's VNM): a VM's networks on a host, around its container.

``bridge`` (a Linux bridge per network), ``fw`` (bridge + security groups as nftables
filters), ``vxlan`` (fw + a VXLAN device per network between hosts), ``802.1Q`` (fw + a
VLAN device per network), ``dummy`` (nothing).
``names`` checks every template value that reaches a host, ``host`` runs the commands there,
``rules`` turns security group rules into rulesets.
"""

from .bridge import BridgeVN
from .dummy import DummyVN
from .firewall import FirewallVN
from .vlan import VlanVN
from .vxlan import VxlanVN

__all__ = ["BridgeVN", "DummyVN", "FirewallVN", "VlanVN", "VxlanVN"]
