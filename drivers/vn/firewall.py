"""``fw``: ``bridge`` plus the VM's security groups as packet filters on each NIC's bridge
port (:mod:`drivers.vn.rules`).

The filters are installed in ``pre``, before the container starts: they match the port by
name, so the container never runs a moment unfiltered; ``post`` has nothing left to do.
They need br_netfilter (conntrack for bridged packets): ``pre`` turns its
``bridge-nf-call-iptables``/``ip6tables`` on, as OpenNebula's fw driver needs it too.
Option ``mark`` (default ``0x00400000``): the packet-mark bit that carries "a reply" from the
host-wide ``inet oneserver`` table to the NICs' tables; pick one no other rule on the hosts uses.
"""

from __future__ import annotations

from typing import Any

from oneserver.driver_contract import DriverError, HostRef, VMSpec, VNCapability

from . import rules
from .bridge import BridgeVN, check

BR_NETFILTER = """\
[ -d /proc/sys/net/bridge ] || modprobe br_netfilter
echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables
echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables
"""


class FirewallVN(BridgeVN):
    capabilities = frozenset({VNCapability.BRIDGE, VNCapability.SECURITY_GROUPS})

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        raw = str(self.options.get("mark", rules.DEFAULT_MARK))
        try:
            self.mark = int(raw, 0)
        except ValueError:
            raise DriverError(f"fw option mark {raw!r} is not a number") from None
        if self.mark <= 0 or self.mark & (self.mark - 1) or self.mark >= 1 << 32:
            raise DriverError(f"fw option mark {raw!r} must be one bit of 32")

    def ruleset(self, vm: VMSpec) -> str:
        """Every table ``pre`` loads, in one nft transaction (DriverError for a bad rule)."""
        return rules.global_table(self.mark) + "".join(
            rules.nic_table(vm, nic, self.mark) for nic in vm.nics)

    def pre(self, host: HostRef, vm: VMSpec) -> None:
        check(vm)
        ruleset = self.ruleset(vm)  # a rule it cannot express stops it here
        script = self.pre_script(vm) + BR_NETFILTER + "nft -f -\n"
        try:
            self.shell.run(host, script, f"network setup of VM {vm.id}", stdin=ruleset)
        except DriverError:
            try:
                self.clean(host, vm)
            except DriverError:
                pass  # the setup's failure is the one to report; clean runs again later
            raise

    def clean(self, host: HostRef, vm: VMSpec) -> None:
        drop = rules.delete_tables(vm)
        script = ("nft -f -\n" if drop else "") + self.clean_script(vm)
        if script:
            self.shell.run(host, script, f"network cleanup of VM {vm.id}", stdin=drop)
