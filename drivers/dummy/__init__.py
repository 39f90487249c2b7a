"""The dummy drivers: OpenNebula's dummy semantics, instant success, no host touched. A dummy
host turns MONITORED with fixed capacity (8 cores, 16 GiB, as oned's dummy probe); every VM
action succeeds at once. For tests and for trying the API; never a stand-in for a real host.

Options (from the oned.conf driver block's ``-o KEY=VALUE`` or host template):
``DUMMY_FAIL`` = ``deploy`` (or ``attach_nic``, ``detach_nic``…) makes that action fail, to
exercise failure paths;
``DUMMY_DELAY`` = seconds every deploy and shutdown takes, to catch VMs in transient states."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from oneserver.driver_contract import (
    Capability,
    DriverError,
    HostMonitor,
    HostRef,
    IMDriver,
    NicSpec,
    TMDriver,
    VMMDriver,
    VMSpec,
    VMStatus,
)

TOTAL_CPU = 800
TOTAL_MEM_KB = 16 * 1024 * 1024


class DummyIM(IMDriver):
    def monitor(self, host: HostRef) -> HostMonitor:
        return HostMonitor(
            total_cpu=TOTAL_CPU, total_mem_kb=TOTAL_MEM_KB, used_cpu=0, used_mem_kb=0,
            free_disk_mb=20480, total_disk_mb=20480, used_disk_mb=0,
            info={"HYPERVISOR": "dummy", "HOSTNAME": host.name, "ARCH": "x86_64",
                  "CPUSPEED": "3200", "MODELNAME": "Dummy(R) Core @ 3.2GHz",
                  "TOTALCPU": str(TOTAL_CPU), "TOTALMEMORY": str(TOTAL_MEM_KB)},
        )


class DummyVMM(VMMDriver):
    """Keeps which VMs "run" in memory so poll answers consistently."""

    capabilities = frozenset(Capability)
    transfer_driver = "dummy"

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self._lock = threading.Lock()
        self._state: dict[int, str] = {}

    def _fail(self, host: HostRef, action: str) -> None:
        delay = host.template.get("DUMMY_DELAY")
        if delay and action in ("deploy", "shutdown"):
            time.sleep(float(delay))
        if host.template.get("DUMMY_FAIL") == action or self.options.get("fail") == action:
            raise DriverError(f"dummy {action} failure requested by DUMMY_FAIL")

    def _set(self, vm: VMSpec, state: str | None) -> None:
        with self._lock:
            if state is None:
                self._state.pop(vm.id, None)
            else:
                self._state[vm.id] = state

    def deploy(self, host: HostRef, vm: VMSpec) -> str:
        self._fail(host, "deploy")
        self._set(vm, "RUNNING")
        return f"{host.name}:{vm.name}:dummy"

    def shutdown(self, host: HostRef, vm: VMSpec, timeout: float) -> None:
        self._fail(host, "shutdown")
        self._set(vm, None)

    def cancel(self, host: HostRef, vm: VMSpec) -> None:
        self._set(vm, None)

    def reboot(self, host: HostRef, vm: VMSpec) -> None:
        self._fail(host, "reboot")

    def reset(self, host: HostRef, vm: VMSpec) -> None:
        self._fail(host, "reset")

    def suspend(self, host: HostRef, vm: VMSpec) -> None:
        self._set(vm, "SUSPENDED")

    def resume(self, host: HostRef, vm: VMSpec) -> None:
        self._set(vm, "RUNNING")

    def resize(self, host: HostRef, vm: VMSpec) -> None:
        pass

    def attach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        self._fail(host, "attach_nic")

    def detach_nic(self, host: HostRef, vm: VMSpec, nic: NicSpec) -> None:
        self._fail(host, "detach_nic")

    def poll(self, host: HostRef, vm: VMSpec) -> VMStatus:
        with self._lock:
            state = self._state.get(vm.id, "RUNNING")
        return VMStatus(deploy_id=vm.deploy_id or "", state=state, vm_id=vm.id)


class DummyTM(TMDriver):
    def prolog(self, host: HostRef, vm: VMSpec) -> str:
        return f"/var/lib/one/datastores/0/{vm.id}"

    def epilog(self, host: HostRef, vm: VMSpec, keep_disks: bool = False) -> None:
        pass
