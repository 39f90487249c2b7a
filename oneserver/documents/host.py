"""The ``<HOST>`` document and host monitoring records."""

from __future__ import annotations

from typing import Any

from oneserver.documents import cdata, el, ids, template

SHARE_FIELDS = ("mem_usage", "cpu_usage", "total_mem", "total_cpu", "max_mem", "max_cpu",
                "running_vms")
DS_FIELDS = ("disk_usage", "free_disk", "max_disk", "used_disk")


def monitoring(mon: dict[str, Any] | None) -> str:
    """A host MONITORING record (also the items of ``host.monitoring``)."""
    if not mon:
        return "<MONITORING/>"
    cap = mon["capacity"]
    system = mon["system"]
    return (
        f"<MONITORING><TIMESTAMP>{mon['timestamp']}</TIMESTAMP><ID>{mon['id']}</ID>"
        "<CAPACITY>" + cdata("FREE_CPU", cap["free_cpu"]) + cdata("FREE_MEMORY", cap["free_memory"])
        + cdata("USED_CPU", cap["used_cpu"]) + cdata("USED_MEMORY", cap["used_memory"])
        + "</CAPACITY><SYSTEM>" + cdata("NETRX", system["netrx"]) + cdata("NETTX", system["nettx"])
        + "</SYSTEM></MONITORING>"
    )


def host(doc: dict[str, Any]) -> str:
    share = doc["share"]
    ds = doc["datastores"]
    share_xml = "".join(f"<{f.upper()}>{share[f]}</{f.upper()}>" for f in SHARE_FIELDS)
    ds_xml = "".join(cdata(f.upper(), ds[f]) for f in DS_FIELDS)
    return (
        f"<HOST><ID>{doc['id']}</ID>" + el("NAME", doc["name"])
        + f"<STATE>{doc['state']}</STATE><PREV_STATE>{doc['prev_state']}</PREV_STATE>"
        + cdata("IM_MAD", doc["im_mad"]) + cdata("VM_MAD", doc["vm_mad"])
        + f"<CLUSTER_ID>{doc['cluster_id']}</CLUSTER_ID>" + el("CLUSTER", doc["cluster"])
        + "<HOST_SHARE>" + share_xml + "<VMS_THREAD>1</VMS_THREAD>"
        + "<DATASTORES>" + ds_xml + "</DATASTORES><PCI_DEVICES></PCI_DEVICES>"
        "<NUMA_NODES></NUMA_NODES></HOST_SHARE>"
        + ids("VMS", doc["vms"]) + template(doc["template"]) + monitoring(doc.get("monitoring"))
        + "</HOST>"
    )
