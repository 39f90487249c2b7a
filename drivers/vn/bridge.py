"""``bridge``: each NIC's BRIDGE is a Linux bridge on the host, made when missing, with the
NIC's PHYDEV (when it names one) as a port. No filtering: that is ``fw`` (as in OpenNebula).

A bridge this driver made carries the interface alias ``oneserver`` so that only such bridges
are ever removed. They are kept when their last VM leaves unless the option
``keep_empty_bridge`` is ``no``: removing one races with a VM that is starting on it (its
``pre`` ran, its container not yet), which would then fail to start.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from typing import Any

from oneserver.driver_contract import (
    DriverError,
    HostRef,
    NicSpec,
    VMSpec,
    VNCapability,
    VNDriver,
)

from . import names
from .host import HostShell

MARK = "oneserver"


def is_yes(value: Any) -> bool:
    return str(value).strip().upper() in {"YES", "TRUE", "1", "ON"}


def ensure_bridge(bridge: str) -> str:
    """Shell lines: after them ``bridge`` exists and is up (made and marked when missing; a
    concurrent maker is not an error)."""
    b = shlex.quote(bridge)
    return (f"if ! ip link show dev {b} >/dev/null 2>&1; then\n"
            f"  ip link add name {b} type bridge 2>/dev/null || ip link show dev {b} >/dev/null\n"
            f"  ip link set dev {b} alias {MARK}\n"
            "fi\n"
            f"ip link set dev {b} up\n")


def ensure_port(bridge: str, dev: str) -> str:
    """Shell lines: after them ``dev`` exists, is up and is a port of ``bridge``. (Through
    ``ip``, not /sys: sysfs shows the interfaces of the namespace that mounted it, which need
    not be the one the commands run in.)"""
    b, d = shlex.quote(bridge), shlex.quote(dev)
    return (f"case \"$(ip -o link show dev {d})\" in *\" master \"{b}\" \"*) ;; "
            f"*) ip link set dev {d} master {b} ;; esac\n"
            f"ip link set dev {d} up\n")


def remove_if_unused(bridge: str, keep: tuple[str, ...] = ()) -> str:
    """Shell lines: ``bridge`` is deleted when this driver made it (its alias) and no port
    but ``keep`` (devices the driver itself put there) is left in it."""
    b = shlex.quote(bridge)
    skip = " ".join(shlex.quote(k) for k in keep)
    return (f"if ip -o link show dev {b} 2>/dev/null | grep -q ' alias {MARK}$'; then\n"
            "  used=0\n"
            f"  for p in $(ip -o link show master {b} | cut -d: -f2 | cut -d@ -f1); do\n"
            f'    case " {skip} " in *" $p "*) ;; *) used=1 ;; esac\n'
            "  done\n"
            "  if [ $used = 0 ]; then\n"
            + "".join(f"    ip link del dev {shlex.quote(k)} 2>/dev/null || true\n"
                      for k in keep)
            + f"    ip link del dev {b} 2>/dev/null || true\n"
            "  fi\n"
            "fi\n")


def check(vm: VMSpec) -> None:
    """Refuse, before the host is touched, a NIC these drivers cannot set up."""
    for nic in vm.nics:
        names.target_of(nic)
        kind = nic.attrs.get("BRIDGE_TYPE", "").strip().lower()
        if kind not in ("", "linux"):
            raise DriverError(f"NIC {nic.nic_id}: BRIDGE_TYPE {kind!r} is not a Linux bridge")


class BridgeVN(VNDriver):
    """Options: ``ssh_command``, ``ssh_user``, ``netns`` and ``timeout`` (see
    :mod:`drivers.vn.host`), ``keep_empty_bridge`` (default ``yes``)."""

    capabilities = frozenset({VNCapability.BRIDGE})

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.shell = HostShell(self.options)
        self.keep_empty_bridge = is_yes(self.options.get("keep_empty_bridge", "yes"))

    @staticmethod
    def bridges(vm: VMSpec) -> Iterator[tuple[str, NicSpec]]:
        """Each distinct bridge of the NICs, with the first NIC on it."""
        seen: set[str] = set()
        for nic in vm.nics:
            bridge = names.bridge_of(nic)
            if bridge not in seen:
                seen.add(bridge)
                yield bridge, nic

    def uplink(self, nic: NicSpec, bridge: str) -> str:
        """Shell lines that put the NIC's way off the host (its PHYDEV) into its bridge."""
        phydev = names.phydev_of(nic)
        return ensure_port(bridge, phydev) if phydev else ""

    def own_ports(self, nic: NicSpec) -> tuple[str, ...]:
        """Devices this driver made in the NIC's bridge, removed with it (PHYDEV is the
        host's and stays)."""
        return ()

    def pre_script(self, vm: VMSpec) -> str:
        return "".join(ensure_bridge(bridge) + self.uplink(nic, bridge)
                       for bridge, nic in self.bridges(vm))

    def clean_script(self, vm: VMSpec) -> str:
        if self.keep_empty_bridge:
            return ""
        return "".join(remove_if_unused(bridge, self.own_ports(nic))
                       for bridge, nic in self.bridges(vm))

    def pre(self, host: HostRef, vm: VMSpec) -> None:
        check(vm)
        script = self.pre_script(vm)
        if script:
            self.shell.run(host, script, f"network setup of VM {vm.id}")

    def post(self, host: HostRef, vm: VMSpec) -> None:
        """Nothing: the container's interfaces join their bridge as libvirt starts it."""

    def clean(self, host: HostRef, vm: VMSpec) -> None:
        script = self.clean_script(vm)
        if script:
            self.shell.run(host, script, f"network cleanup of VM {vm.id}")
