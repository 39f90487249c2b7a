"""VM specs shared by the LXC tests (one place, so golden files and live tests agree)."""

from __future__ import annotations

from typing import Any

from oneserver.driver_contract import DiskSpec, NicSpec, VMSpec


def minimal(vm_id: int = 1, vm_dir: str = "/var/lib/oneserver/datastores/0/1") -> VMSpec:
    return VMSpec(id=vm_id, name="minimal", cpu=1.0, vcpu=1, memory_mb=64,
                  disks=(DiskSpec(0, "/images/rootfs.tar.gz"),), vm_dir=vm_dir)


def full() -> VMSpec:
    return VMSpec(
        id=42, name="full", cpu=0.5, vcpu=2, memory_mb=256,
        disks=(
            DiskSpec(0, "/images/rootfs.tar.xz"),
            DiskSpec(1, "/images/data", target="/srv/data", readonly=True),
            DiskSpec(2, "/images/scratch.tar", target="vdb"),
        ),
        nics=(
            NicSpec(0, bridge="onebr0", mac="02:00:0a:d5:00:2a", ip="10.213.0.42",
                    attrs={"NETWORK_MASK": "255.255.255.0", "GATEWAY": "10.213.0.1"}),
            NicSpec(1, bridge="onebr1"),
        ),
        template={
            "INIT": "/bin/sh",
            "INIT_ARGS": "-c 'trap \"exit 0\" TERM; while :; do sleep 1; done'",
            "LXC_CPU_QUOTA": "YES",
            "LXC_UNPRIVILEGED": "YES",
        },
        vm_dir="/var/lib/oneserver/datastores/0/42",
    )


def raw() -> VMSpec:
    return VMSpec(
        id=7, name="raw", cpu=2.0, vcpu=2, memory_mb=1024,
        disks=(DiskSpec(0, "/images/rootfs"),),
        template={
            "LXC_IDMAP": {"UID": "0:200000:1000,1000:300000:10", "GID": "0:200000:1000"},
            "RAW": [
                {"TYPE": "kvm", "DATA": "<devices><video/></devices>"},
                {"TYPE": "lxc", "DATA": (
                    "<features><capabilities policy='default'><sys_admin state='off'/>"
                    "</capabilities></features>"
                    "<vcpu>4</vcpu>"
                    "<devices><hostdev mode='capabilities' type='misc'>"
                    "<source><char>/dev/null</char></source></hostdev></devices>"
                    "<on_crash>destroy</on_crash>")},
            ],
        },
        vm_dir="/srv/vms/7",
    )


def network() -> VMSpec:
    """NICs as oned writes them: IPv4 and IPv6 addresses, a NIC_ALIAS, gateways, TARGET."""
    alias = NicSpec(2, ip="10.213.0.12", attrs={"PARENT_ID": "0", "NETWORK_MASK": "24"})
    return VMSpec(
        id=9, name="network", cpu=0.5, vcpu=1, memory_mb=64,
        disks=(DiskSpec(0, "/images/rootfs"),),
        nics=(
            NicSpec(0, bridge="onebr0", mac="02:00:0A:D5:00:0B", ip="10.213.0.11",
                    target="one-9-0", vn_mad="fw", aliases=(alias,),
                    attrs={"NETWORK_MASK": "255.255.255.0", "GATEWAY": "10.213.0.1",
                           "IP6": "fd00:213::b", "IP6_PREFIX_LENGTH": "48",
                           "GATEWAY6": "fd00:213::1", "SECURITY_GROUPS": "0"}),
            NicSpec(1, bridge="onebr1", mac="02:00:0a:d5:01:0b", target="one-9-1",
                    vn_mad="bridge"),
        ),
        vm_dir="/var/lib/oneserver/datastores/0/9",
    )


ALL = {"minimal": minimal, "full": full, "raw": raw, "network": network}


def domain(conn: Any, vid: int) -> Any:
    """The libvirt domain of VM ``vid`` (``one-<vid>``), or None."""
    import libvirt
    try:
        return conn.lookupByName(f"one-{vid}")
    except libvirt.libvirtError:
        return None


def destroy_leftovers(conn: Any, prefix: str) -> None:
    """Destroy the domains whose name starts with ``prefix``: what a failed test left."""
    import libvirt
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(prefix):
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
