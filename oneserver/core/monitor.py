"""Host monitoring: sample each host with its IM driver, keep HOST_SHARE totals and the host
TEMPLATE current, and make VM states follow what the host reports (a container that stopped on
its own turns POWEROFF; an unreachable host turns ERROR and its VMs UNKNOWN, and they come back
on their own when it answers again)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from oneserver import db, numeric, store
from oneserver.core.registry import Registry
from oneserver.core.specs import host_ref
from oneserver.documents.host import monitoring as monitoring_xml
from oneserver.driver_contract import DriverError, HostMonitor, VMStatus
from oneserver.model import history, lifecycle
from oneserver.model.vmstate import HostState, Lcm, VmState
from oneserver.template import Template

log = logging.getLogger("oneserver.monitor")
KEEP_SECONDS = 12 * 3600  # monitoring records kept per host/VM


def _reserved(value: str, total: int) -> int:
    """RESERVED_CPU/RESERVED_MEM as HostShare reads them: a whole amount, or a whole
    percentage of the total; anything else (a fraction, NaN, inf…) reserves nothing."""
    value = value.strip()
    percent = value.endswith("%")
    amount = numeric.to_int(value[:-1] if percent else value, 64)
    if amount is None:
        return 0
    return total - int(total * (1 - amount / 100)) if percent else amount


class Monitor:
    def __init__(self, registry: Registry, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        # The last unexpected failure logged per host: a broken driver fails every interval.
        self._logged: dict[int, str] = {}

    def due(self) -> int:
        """Start a sample of every host whose last one is older than the interval."""
        now = time.time()
        started = 0
        rows = db.raw('SELECT oid, im_mad FROM "host" WHERE state <> ? AND last_monitored <= ?',
                      int(HostState.OFFLINE), int(now - self.interval))
        for hid, im in rows:
            with self._lock:
                if hid in self._busy:
                    continue
                self._busy.add(hid)
            self.registry.submit("im", im, self._sample, hid, im)
            started += 1
        return started

    def _sample(self, hid: int, im: str) -> None:
        started = time.time()
        try:
            host = store.load("host", hid)
            try:
                result: HostMonitor | str = self.registry.call("im", im, "monitor", host_ref(host))
                self._logged.pop(hid, None)
            except DriverError as exc:
                result = str(exc) or exc.__class__.__name__
            except Exception as exc:  # noqa: BLE001 - a driver bug: the host says it too
                result = f"{exc.__class__.__name__}: {exc}"
                if self._logged.get(hid) != result:
                    self._logged[hid] = result
                    log.exception("monitoring host %s failed", hid)
            db.retrying(self._write, hid, result, started)
        except Exception:  # noqa: BLE001 - one broken host must not stop monitoring
            log.exception("monitoring host %s failed", hid)
        finally:
            with self._lock:
                self._busy.discard(hid)

    def _write(self, hid: int, result: HostMonitor | str, started: float) -> None:
        now = int(time.time())
        with db.write_transaction():
            if not store.exists("host", hid):
                return
            host = store.load("host", hid, for_update=True)
            host["last_monitored"] = now
            tmpl = Template.from_json(host["template"])
            if isinstance(result, str):
                self._host_error(host, tmpl, result)
            else:
                self._host_ok(host, tmpl, result, now, started)
            host["template"] = tmpl.to_json()
            store.save("host", host)
            db.HostMonitoring.delete().where(
                (db.HostMonitoring.host_id == hid)
                & (db.HostMonitoring.timestamp < now - KEEP_SECONDS)).execute()

    def _host_error(self, host: dict[str, Any], tmpl: Template, message: str) -> None:
        tmpl.set("ERROR", f"{time.strftime('%a %b %d %H:%M:%S %Y')} : Error monitoring Host "
                          f"{host['name']} ({host['id']}): {message}")
        if host["state"] in (HostState.INIT, HostState.MONITORED):
            host["prev_state"], host["state"] = host["state"], int(HostState.ERROR)
        for vm_id in list(host["vms"]):
            vm = store.load("vm", vm_id, for_update=True)
            if vm["state"] == VmState.ACTIVE and vm["lcm_state"] == Lcm.RUNNING:
                lifecycle.set_state(vm, VmState.ACTIVE, Lcm.UNKNOWN)
                store.save("vm", vm)

    def _host_ok(self, host: dict[str, Any], tmpl: Template, m: HostMonitor, now: int,
                 started: float) -> None:
        if "ERROR" in tmpl:
            tmpl.remove("ERROR")
        if host["state"] in (HostState.INIT, HostState.ERROR):
            host["prev_state"], host["state"] = host["state"], int(HostState.MONITORED)
        for key, value in m.info.items():
            tmpl.set(key, str(value))
        # The transfer drivers' counters for this host (TM_CACHE_HITS, TM_BYTES_SENT…).
        for key, value in self.registry.tm_metrics(host["name"]).items():
            tmpl.set(key, value)
        share = host["share"]
        share["total_cpu"], share["total_mem"] = m.total_cpu, m.total_mem_kb
        share["max_cpu"] = m.total_cpu - _reserved(tmpl.get_str("RESERVED_CPU"), m.total_cpu)
        share["max_mem"] = m.total_mem_kb - _reserved(tmpl.get_str("RESERVED_MEM"),
                                                      m.total_mem_kb)
        host["datastores"] = {"disk_usage": 0, "free_disk": m.free_disk_mb,
                              "max_disk": m.total_disk_mb, "used_disk": m.used_disk_mb}
        record = {
            "timestamp": now, "id": host["id"],
            "capacity": {"free_cpu": max(0, m.total_cpu - m.used_cpu),
                         "free_memory": max(0, m.total_mem_kb - m.used_mem_kb),
                         "used_cpu": m.used_cpu, "used_memory": m.used_mem_kb},
            "system": {"netrx": m.netrx, "nettx": m.nettx},
        }
        host["monitoring"] = record
        db.HostMonitoring.create(host_id=host["id"], timestamp=now, body=monitoring_xml(record))
        if m.vms is not None:
            self._sync_vms(host, m.vms, now, started)

    def _sync_vms(self, host: dict[str, Any], reported: tuple[VMStatus, ...], now: int,
                  started: float) -> None:
        seen = {s.vm_id: s for s in reported if s.vm_id is not None}
        wild = [s for s in reported if s.vm_id is None or s.vm_id not in host["vms"]]
        tmpl = Template.from_json(host["template"])
        tmpl.set("TOTAL_WILDS", str(len(wild)))
        tmpl.set("WILDS", ",".join(s.deploy_id for s in wild))
        host["template"] = tmpl.to_json()
        for vm_id in list(host["vms"]):
            vm = store.load("vm", vm_id, for_update=True)
            status = seen.get(vm_id)
            if vm.get("state_time", 0) >= started:
                continue  # its state changed after the sample was taken: the sample is stale
            if self._follow(vm, status, now):
                store.save("vm", vm)

    def _follow(self, vm: dict[str, Any], status: VMStatus | None, now: int) -> bool:
        """Apply one VM's reported state; True when the VM changed."""
        active_lcm = vm["lcm_state"] if vm["state"] == VmState.ACTIVE else None
        if status is not None:
            mon = Template([("CPU", f"{status.cpu:g}"), ("MEMORY", str(status.memory_kb)),
                            ("NETRX", str(status.netrx)), ("NETTX", str(status.nettx)),
                            ("ID", str(vm["id"])), ("TIMESTAMP", str(now))])
            vm["monitoring"] = mon.to_json()
            vm["last_poll"] = now
            db.VMMonitoring.create(vm_id=vm["id"], timestamp=now,
                                   body=mon.to_xml("MONITORING"))
            db.VMMonitoring.delete().where((db.VMMonitoring.vm_id == vm["id"])
                                           & (db.VMMonitoring.timestamp < now - KEEP_SECONDS)
                                           ).execute()
        if active_lcm == Lcm.UNKNOWN:
            if status is None:
                lifecycle.set_state(vm, VmState.POWEROFF)
            elif status.state == "RUNNING":
                lifecycle.set_state(vm, VmState.ACTIVE, Lcm.RUNNING)
            elif status.state == "SUSPENDED":
                lifecycle.set_state(vm, VmState.SUSPENDED)
            elif status.state == "POWEROFF":
                lifecycle.set_state(vm, VmState.POWEROFF)
        elif active_lcm == Lcm.RUNNING:
            if status is None or status.state == "POWEROFF":
                # It stopped on its own: oned's MISSING_STATE=POWEROFF.
                history.record_action(vm, "monitor", -1, -1)
                h = history.last_history(vm)
                if h is not None and not h["retime"]:
                    h["retime"] = now
                lifecycle.set_state(vm, VmState.POWEROFF)
            elif status.state == "SUSPENDED":
                lifecycle.set_state(vm, VmState.SUSPENDED)
            elif status.state == "UNKNOWN":
                lifecycle.set_state(vm, VmState.ACTIVE, Lcm.UNKNOWN)
        elif vm["state"] == VmState.POWEROFF and status is not None \
                and status.state == "RUNNING":
            history.reopen_on_same_host(vm)
            lifecycle.set_state(vm, VmState.ACTIVE, Lcm.RUNNING)
        return True
