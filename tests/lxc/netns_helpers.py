"""Where the local test libvirtd keeps its containers' network, and commands run inside a
container's namespaces (shared by the networking tests)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOCKET = "/run/libvirt/libvirt-sock"


def libvirtd_netns() -> str:
    """``/proc/<pid>/ns/net`` of the libvirtd that serves this machine's ``lxc:///system``
    (tools/hosts/libvirtd.sh runs it in a network namespace of its own): the one whose
    socket, seen through its own root, is the socket we connect to."""
    ours = os.stat(SOCKET)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "libvirtd":
                continue
            theirs = os.stat(proc / "root" / SOCKET.lstrip("/"))
        except OSError:
            continue
        if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino):
            return str(proc / "ns" / "net")
    raise RuntimeError(f"no libvirtd process serves {SOCKET}")


def in_netns(netns: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    # nft and bridge live in sbin, which the caller's PATH may lack.
    env = dict(os.environ, PATH=os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin")
    return subprocess.run(["nsenter", f"--net={netns}", *argv], capture_output=True,
                          text=True, timeout=timeout, check=False, env=env)


def init_pid(dom: object) -> int:
    """The PID of a running LXC domain's init (libvirt's LXC domain id is its controller's
    pid; init is that controller's child)."""
    controller = dom.ID()  # type: ignore[attr-defined]
    children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    return int(children[0]) if children else int(controller)


def in_container(dom: object, *argv: str, timeout: float = 30
                 ) -> subprocess.CompletedProcess[str]:
    """``argv`` inside the container: its mount (so the rootfs' busybox), network and pid
    namespaces."""
    pid = init_pid(dom)
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "-p", *argv],
                          capture_output=True, text=True, timeout=timeout, check=False)
