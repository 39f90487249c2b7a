"""The container's ``/etc/resolv.conf`` from its NICs' ``DNS`` (space-separated addresses)
and ``SEARCH_DOMAIN``, written into its root filesystem on the host before it starts, so
names resolve without a step inside the image.

The root filesystem is the image's: its ``etc`` may be a symlink pointing anywhere on the host
(nothing is written then), and its files may be hard links into the TM's cache, so the file
is made new (mktemp in the same directory, then renamed over the old name) and never written
through an existing one.
"""

from __future__ import annotations

import re
import shlex

from drivers.vn import names
from oneserver.driver_contract import DriverError, VMSpec

from .policy import disk_dir

_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*"
                     r"[A-Za-z0-9])?)*\.?\Z")
MAX_NAMESERVERS = 3  # what the resolver reads (MAXNS)


def resolv_conf(vm: VMSpec) -> str | None:
    """The file's text, or None when no NIC names a DNS server."""
    servers: list[str] = []
    search: list[str] = []
    for nic in vm.nics:
        what = f"VM {vm.id}: NIC {nic.nic_id}"
        for word in nic.attrs.get("DNS", "").replace(",", " ").split():
            server = str(names.ip(word, f"{what} DNS"))
            if server not in servers:
                servers.append(server)
        for word in nic.attrs.get("SEARCH_DOMAIN", "").replace(",", " ").split():
            if not _DOMAIN.match(word) or len(word) > 253:
                raise DriverError(f"{what} SEARCH_DOMAIN {word!r} is not a domain name")
            if word not in search:
                search.append(word)
    if not servers:
        return None
    lines = [f"search {' '.join(search)}"] if search else []
    lines += [f"nameserver {s}" for s in servers[:MAX_NAMESERVERS]]
    return "\n".join(lines) + "\n"


def write_script(vm: VMSpec, text: str) -> str | None:
    """Shell lines that put ``text`` at ``etc/resolv.conf`` of the VM's root filesystem;
    None when there is nowhere to write (no VM directory, a read-only root)."""
    if not vm.vm_dir or not vm.disks or vm.disks[0].readonly:
        return None
    etc = shlex.quote(disk_dir(vm.vm_dir, vm.disks[0]) + "/etc")
    return (f"d={etc}\n"
            'if [ -d "$d" ] && [ ! -L "$d" ]; then\n'
            '  t=$(mktemp "$d/.resolv.conf.XXXXXX")\n'
            f"  printf %s {shlex.quote(text)} > \"$t\"\n"
            '  chmod 0644 "$t"\n'
            '  mv -f "$t" "$d/resolv.conf"\n'
            "fi\n")
