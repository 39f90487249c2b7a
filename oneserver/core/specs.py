"""What a driver is told: a VM document turned into a VMSpec, a host into a HostRef."""

from __future__ import annotations

import os
from typing import Any

from oneserver import numeric, settings, store
from oneserver.driver_contract import DiskSpec, HostRef, NicSpec, SecurityRule, VMSpec
from oneserver.template import Template


def host_ref(host: dict[str, Any]) -> HostRef:
    """The host with its cluster's template under its own (host values win). Without a
    ``DATASTORE_DIR`` of their own, drivers are told where system datastore 0 keeps VM
    directories, so the IM measures the disk the TM fills."""
    merged = Template()
    try:
        cluster = store.load("cluster", host["cluster_id"])
        merged = Template.from_json(cluster["template"])
    except Exception:  # noqa: BLE001 - a host whose cluster vanished still runs
        pass
    merged.merge(Template.from_json(host["template"]))
    if "DATASTORE_DIR" not in merged:
        merged.set("DATASTORE_DIR", _datastore_dir(0))
    return HostRef(host["id"], host["name"], merged.as_dict())


def _datastore_dir(ds_id: int) -> str:
    """Where system datastore ``ds_id`` keeps VM directories (its BASE_PATH, as oned's
    ``DATASTORE_LOCATION/<ds id>``)."""
    try:
        return str(store.load("datastore", ds_id)["base_path"])
    except Exception:  # noqa: BLE001 - a datastore that vanished: the configured location
        return os.path.join(settings.current().datastores_dir, str(ds_id))


def _default_vm_dir(vm: dict[str, Any]) -> str | None:
    """``<system datastore dir>/<vm id>`` for the datastore of the VM's last placement."""
    history = vm.get("history") or []
    if not history:
        return None
    return os.path.join(_datastore_dir(int(history[-1].get("ds_id", 0))), str(vm["id"]))


def _int(value: str, default: int) -> int:
    # Validated when the VM was allocated; a row changed since must not stop the driver call.
    number = numeric.to_int(value, 64)
    return default if number is None else number


def _float(value: str, default: float) -> float:
    number = numeric.to_float(value)
    return default if number is None else number


def vm_spec(vm: dict[str, Any], vm_mad: str, vm_dir: str | None = None) -> VMSpec:
    tmpl = Template.from_json(vm["template"])
    defaults = settings.current().vmm_defaults.get(vm_mad)
    if defaults is not None:
        for name in defaults.names():
            if name not in tmpl:
                for value in defaults.get_all(name):
                    tmpl.add(name, value)
    disks = []
    for i, d in enumerate(tmpl.vectors("DISK")):
        disks.append(DiskSpec(
            disk_id=_int(d.get("DISK_ID", str(i)), i),
            source=d.get("SOURCE") or d.get("PATH", ""),
            target=d.get("TARGET", "/" if i == 0 else f"/mnt/disk{i}"),
            type=d.get("TYPE", "FILE"),
            readonly=d.get("READONLY", "NO").upper() == "YES",
            size_mb=_int(d["SIZE"], 0) if "SIZE" in d else None,
            attrs=dict(d),
        ))
    return VMSpec(
        id=vm["id"], name=vm["name"],
        cpu=_float(tmpl.get_str("CPU", "1") or "1", 1.0),
        vcpu=_int(tmpl.get_str("VCPU", "1") or "1", 1),
        memory_mb=_int(tmpl.get_str("MEMORY", "0"), 0),
        disks=tuple(disks), nics=nic_specs(vm["id"], tmpl),
        security_rules=security_rules(tmpl), template=tmpl.as_dict(),
        deploy_id=vm["deploy_id"] or None,
        vm_dir=vm_dir or vm.get("vm_dir") or _default_vm_dir(vm),
    )


def _nic(vm_id: int, nic: dict[str, str], default_id: int,
         aliases: tuple[NicSpec, ...] = ()) -> NicSpec:
    nic_id = _int(nic.get("NIC_ID", str(default_id)), default_id)
    return NicSpec(
        nic_id=nic_id, bridge=nic.get("BRIDGE") or None, mac=nic.get("MAC") or None,
        ip=nic.get("IP") or None, attrs=dict(nic),
        # oned names the host end one-<vm id>-<nic id>; a NIC written without it gets the same.
        target=nic.get("TARGET") or f"one-{vm_id}-{nic_id}",
        vn_mad=nic.get("VN_MAD") or None, aliases=aliases)


def nic_specs(vm_id: int, tmpl: Template) -> tuple[NicSpec, ...]:
    """The NICs, each with the NIC_ALIAS entries whose PARENT_ID (or PARENT name) is it."""
    nics = tmpl.vectors("NIC")
    aliases = tmpl.vectors("NIC_ALIAS")
    out = []
    for i, nic in enumerate(nics):
        nic_id = nic.get("NIC_ID", str(i))
        mine = tuple(
            _nic(vm_id, a, len(nics) + j) for j, a in enumerate(aliases)
            if a.get("PARENT_ID") == nic_id or (a.get("PARENT") and a.get("PARENT")
                                                  == nic.get("NAME", f"NIC{nic_id}")))
        out.append(_nic(vm_id, nic, i, mine))
    return tuple(out)


def security_rules(tmpl: Template) -> tuple[SecurityRule, ...]:
    """The VM's SECURITY_GROUP_RULE vectors (oned copies in the rules of every group its
    NICs name); one without a group id, protocol or direction is no rule."""
    out = []
    for r in tmpl.vectors("SECURITY_GROUP_RULE"):
        sg_id = numeric.to_int(r.get("SECURITY_GROUP_ID", ""), 32)
        if sg_id is None or not r.get("PROTOCOL") or not r.get("RULE_TYPE"):
            continue
        out.append(SecurityRule(
            security_group_id=sg_id, protocol=r["PROTOCOL"], rule_type=r["RULE_TYPE"],
            range=r.get("RANGE") or None, icmp_type=r.get("ICMP_TYPE") or None,
            icmpv6_type=r.get("ICMPV6_TYPE") or None, ip=r.get("IP") or None,
            size=r.get("SIZE") or None, network_id=r.get("NETWORK_ID") or None))
    return tuple(out)
