"""The sim drivers: IM, VMM and TM of a host that is a model, not a machine.

``onehost create s1 --im sim --vm sim`` gives a host with a typical server's capacity whose
deploys take as long as fetching the image over a shared 1 Gbit/s uplink (or copying it from the
host's image cache) and booting would, on a clock that runs ``SIM_SPEED`` times faster than the
wall. It goes through the same core, operations and scheduler as a real host; only the driver
differs. Values and their reasons: :mod:`drivers.sim.model` and ``docs/sim.md``; the state
shared by the three drivers: :mod:`drivers.sim.world`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drivers.sim.model import SimConfig, boot_seconds, deploy_fails, disk_images
from drivers.sim.world import World, current
from oneserver.driver_contract import (
    Capability,
    DriverError,
    HostMonitor,
    HostRef,
    HostUnreachable,
    IMDriver,
    NicSpec,
    TMDriver,
    VMMDriver,
    VMSpec,
    VMStatus,
)

__all__ = ["SimIM", "SimTM", "SimVMM"]


class _Sim:
    """What the three drivers share: the world and the config of one call."""

    options: Mapping[str, Any]

    @property
    def world(self) -> World:
        return current(self.options)

    def cfg(self, host: HostRef) -> SimConfig:
        # Driver options over the defaults, the host template over both. The clock speed and
        # the uplink are the world's (one per process), whatever a host says.
        return self.world.cfg.with_overrides(self.options, host.template)

    def reachable(self, host: HostRef, cfg: SimConfig) -> None:
        if cfg.is_down(self.world.clock.now()):
            raise HostUnreachable(f"sim host {host.name} is down (SIM_DOWN_AT={cfg.down_at:g}, "
                                  f"SIM_DOWN_FOR={cfg.down_for:g})")

    def _alive(self, host: HostRef) -> None:
        """For a call that only needs the host up."""
        self.reachable(host, self.cfg(host))


class SimIM(_Sim, IMDriver):
    def monitor(self, host: HostRef) -> HostMonitor:
        cfg = self.cfg(host)
        self.reachable(host, cfg)
        running = self.world.running(host.id, cfg)
        total_cpu, total_mem_kb = cfg.cpu_cores * 100, cfg.memory_mb * 1024
        used_cpu = min(total_cpu, int(sum(c for c, _ in running.values()) * 100))
        used_mem_kb = min(total_mem_kb, sum(m for _, m in running.values()) * 1024)
        return HostMonitor(
            total_cpu=total_cpu, total_mem_kb=total_mem_kb, used_cpu=used_cpu,
            used_mem_kb=used_mem_kb, total_disk_mb=cfg.disk_mb, free_disk_mb=cfg.disk_mb,
            info={"HYPERVISOR": "sim", "HOSTNAME": host.name, "ARCH": "x86_64",
                  "CPUSPEED": "2600", "MODELNAME": "Simulated host",
                  "TOTALCPU": str(total_cpu), "TOTALMEMORY": str(total_mem_kb)},
            vms=tuple(VMStatus(deploy_id=f"one-{vm_id}", state="RUNNING", vm_id=vm_id,
                               cpu=cpu * 100, memory_kb=mem * 1024)
                      for vm_id, (cpu, mem) in sorted(running.items())),
        )


class SimVMM(_Sim, VMMDriver):
    capabilities = frozenset(Capability)
    # The sim TM models this host's disks, whatever the system datastore's TM_MAD says.
    transfer_driver = "sim"

    def deploy(self, host: HostRef, vm: VMSpec) -> str:
        cfg = self.cfg(host).with_overrides(vm.template)
        self.reachable(host, cfg)
        w = self.world
        if w.runs(host.id, cfg, vm.id):  # a retried deploy finds it running
            return f"one-{vm.id}"
        w.clock.sleep(boot_seconds(cfg, vm.id))
        if deploy_fails(cfg, vm.id, w.next_attempt(vm.id)):
            w.stats.failed_deploys += 1
            raise DriverError(f"sim deploy of VM {vm.id} failed (SIM_DEPLOY_FAIL_RATE="
                              f"{cfg.deploy_fail_rate:g})")
        w.start(host.id, cfg, vm.id, vm.cpu, vm.memory_mb)
        return f"one-{vm.id}"

    def shutdown(self, host: HostRef, vm: VMSpec, timeout: float) -> None:
        cfg = self.cfg(host)
        self.reachable(host, cfg)
        if self.world.runs(host.id, cfg, vm.id):
            self.world.clock.sleep(min(cfg.shutdown_s, timeout * cfg.speed))
        self.world.stop(host.id, cfg, vm.id)

    def cancel(self, host: HostRef, vm: VMSpec) -> None:
        cfg = self.cfg(host)
        self.reachable(host, cfg)
        self.world.stop(host.id, cfg, vm.id)

    def reboot(self, host: HostRef, vm: VMSpec) -> None:
        self._alive(host)

    def reset(self, host: HostRef, vm: VMSpec) -> None:
        self._alive(host)

    def suspend(self, host: HostRef, vm: VMSpec) -> None:
        self._alive(host)

    def resume(self, host: HostRef, vm: VMSpec) -> None:
        self._alive(host)

    def resize(self, host: HostRef, vm: VMSpec) -> None:
        cfg = self.cfg(host)
        self.reachable(host, cfg)
        if self.world.runs(host.id, cfg, vm.id):
            self.world.start(host.id, cfg, vm.id, vm.cpu, vm.memory_mb)

    def attach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        # A modelled host has no interfaces: being up is all an attach needs.
        self._alive(host)

    def detach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        self._alive(host)

    def poll(self, host: HostRef, vm: VMSpec) -> VMStatus:
        cfg = self.cfg(host)
        self.reachable(host, cfg)
        state = "RUNNING" if self.world.runs(host.id, cfg, vm.id) else "POWEROFF"
        return VMStatus(deploy_id=vm.deploy_id or f"one-{vm.id}", state=state, vm_id=vm.id)


class SimTM(_Sim, TMDriver):
    def prolog(self, host: HostRef, vm: VMSpec) -> str:
        cfg = self.cfg(host)
        self.reachable(host, cfg)
        for key, mb in disk_images(vm.template, cfg):
            self.world.put_image(host.id, cfg, key, mb)
        return vm.vm_dir or f"/var/lib/one/datastores/0/{vm.id}"

    def epilog(self, host: HostRef, vm: VMSpec, keep_disks: bool = False) -> None:
        # Removing a VM directory is a local ``rm``: no time worth modelling.
        self._alive(host)
