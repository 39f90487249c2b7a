"""``dummy``: changes nothing on the host (for tests and for hosts whose network is set up by
other means), but refuses what the real drivers would refuse, so a test with it fails where a
real deployment would."""

from __future__ import annotations

from oneserver.driver_contract import HostRef, VMSpec, VNDriver

from . import names
from .bridge import check


class DummyVN(VNDriver):
    def pre(self, host: HostRef, vm: VMSpec) -> None:
        check(vm)
        for nic in vm.nics:
            if nic.bridge is not None:
                names.bridge_of(nic)

    def post(self, host: HostRef, vm: VMSpec) -> None:
        """Nothing to do."""

    def clean(self, host: HostRef, vm: VMSpec) -> None:
        """Nothing to remove."""
