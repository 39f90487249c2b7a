"""A host's HOST_SHARE accounting: what a VM takes (CPU×100 and MEMORY in KB, as oned counts
them) is added when it is placed and removed when its epilog ends or it is deleted."""

from __future__ import annotations

from typing import Any

from oneserver.template import Template

Doc = dict[str, Any]


def vm_capacity(vm: Doc) -> tuple[int, int]:
    """(CPU in % of a core, memory in KB) the VM takes on its host."""
    t = Template.from_json(vm["template"])
    cpu = float(t.get_str("CPU", "0") or 0)
    mem = int(float(t.get_str("MEMORY", "0") or 0))
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
    cpu, mem = vm_capacity(vm)
    share = host["share"]
    share["cpu_usage"] = max(0, share["cpu_usage"] - cpu)
    share["mem_usage"] = max(0, share["mem_usage"] - mem)
    share["running_vms"] = max(0, share["running_vms"] - 1)
    host["vms"].remove(vm["id"])


def fits(host: Doc, vm: Doc) -> bool:
    cpu, mem = vm_capacity(vm)
    share = host["share"]
    return (share["max_cpu"] - share["cpu_usage"] >= cpu
            and share["max_mem"] - share["mem_usage"] >= mem)
