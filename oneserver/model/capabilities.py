"""Refusing at the API what a host's VMM driver can't do, before anything changes."""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

from oneserver import settings
from oneserver.driver_contract import GROUPS, Capability
from oneserver.errors import ACTION, OneError

NEEDS: dict[str, Capability] = {
    "terminate": Capability.SHUTDOWN, "poweroff": Capability.SHUTDOWN,
    "undeploy": Capability.SHUTDOWN, "stop": Capability.SHUTDOWN,
    "terminate-hard": Capability.CANCEL, "poweroff-hard": Capability.CANCEL,
    "undeploy-hard": Capability.CANCEL, "reboot": Capability.REBOOT,
    "reboot-hard": Capability.RESET, "suspend": Capability.SUSPEND,
    "migrate": Capability.MIGRATE_COLD, "live-migrate": Capability.MIGRATE_LIVE,
    "resize": Capability.RESIZE_LIVE, "nic-attach": Capability.NIC_HOTPLUG,
    "nic-detach": Capability.NIC_HOTPLUG,
}


@functools.cache
def of(vm_mad: str) -> frozenset[Capability] | str:
    """Capabilities of the VMM driver ``vm_mad`` (a class attribute: nothing is started); a
    VM_MAD block of oned.conf may name the plug-in behind ``vm_mad`` with EXECUTABLE. A
    driver that cannot be imported here (e.g. lxc without libvirt-python): why not."""
    for vec in settings.current().oned_conf.vectors("VM_MAD"):
        if vec.get("NAME") == vm_mad and vec.get("EXECUTABLE"):
            vm_mad = str(vec["EXECUTABLE"])
            break
    found = entry_points(group=GROUPS["vmm"], name=vm_mad)
    if not found:
        return frozenset()
    try:
        cls = next(iter(found)).load()
    except Exception as exc:  # noqa: BLE001 - any import failure of a plug-in
        return f"{exc.__class__.__name__}: {exc}"
    return frozenset(getattr(cls, "capabilities", frozenset()))


def require(vm_mad: str, action: str, vm: dict[str, Any]) -> None:
    need = NEEDS.get(action)
    if need is None:
        return
    caps = of(vm_mad)
    if isinstance(caps, str):
        raise OneError(ACTION, f'Error performing action "{action}": the {vm_mad} driver '
                               f"cannot be loaded ({caps})", vm["id"])
    if need not in caps:
        raise OneError(ACTION, f'Error performing action "{action}": the {vm_mad} driver '
                               f"does not support it", vm["id"])
