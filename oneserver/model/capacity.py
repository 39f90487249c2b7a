"""A host's HOST_SHARE accounting: what a VM takes (CPU×100 and MEMORY in KB, as oned counts
them) is added when it is placed and removed when its epilog ends or it is deleted."""

from __future__ import annotations

from typing import Any

from oneserver import numeric
from oneserver.errors import ACTION, OneError
from oneserver.template import Template

Doc = dict[str, Any]


def vm_size(vm: Doc) -> tuple[float, int]:
    """(CPU, MEMORY in MB) of the VM's template, read as its allocation checked them; ACTION
    with oned's message when the stored value is not such a number (a row changed behind
    the API's back), so no NaN or infinity ever reaches a host's share or the scheduler."""
    t = Template.from_json(vm["template"])
    cpu = numeric.to_float(t.get_str("CPU", "0") or "0")
    if cpu is None or cpu < 0:
        raise OneError(ACTION, "CPU attribute must be a positive float or integer value.",
                       vm["id"])
    mem = numeric.to_int(t.get_str("MEMORY", "0") or "0", 64)
    if mem is None or mem < 0:
        raise OneError(ACTION, "MEMORY attribute must be a positive integer value.", vm["id"])
    return cpu, mem


def vm_capacity(vm: Doc) -> tuple[int, int]:
    """(CPU in % of a core, memory in KB) the VM takes on its host."""
    cpu, mem = vm_size(vm)
    return int(round(cpu * 100)), mem * 1024


def add_capacity(host: Doc, vm: Doc) -> None:
    cpu, mem = vm_capacity(vm)
    share = host["share"]
    share["cpu_usage"] += cpu
    share["mem_usage"] += mem
    share["running_vms"] += 1
    if vm["id"] not in host["vms"]:
        host["vms"].append(vm["id"])


def del_capacity(host: Doc, vm: Doc) -> None:
    if vm["id"] not in host["vms"]:
        return  # already released (a retried cleanup must not release twice)
    try:
        cpu, mem = vm_capacity(vm)
    except OneError:
        # Its size became unreadable after it was placed: it still leaves the host (a VM
        # that cannot end would be worse); the host keeps counting what it took.
        cpu, mem = 0, 0
    share = host["share"]
    share["cpu_usage"] = max(0, share["cpu_usage"] - cpu)
    share["mem_usage"] = max(0, share["mem_usage"] - mem)
    share["running_vms"] = max(0, share["running_vms"] - 1)
    host["vms"].remove(vm["id"])


def fits(host: Doc, vm: Doc) -> bool:
    cpu, mem = vm_capacity(vm)
    share = host["share"]
    free_cpu: int = share["max_cpu"] - share["cpu_usage"]
    free_mem: int = share["max_mem"] - share["mem_usage"]
    return free_cpu >= cpu and free_mem >= mem
