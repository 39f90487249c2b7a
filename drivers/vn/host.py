"""Running a VN driver's commands on a host, as the ssh TM and the lxc VMM reach it: on this
machine for ``localhost``, else through the driver's ``ssh_command`` (oned.conf only).

Option ``netns`` (oned.conf only): for ``localhost``, the network namespace the commands run
in (a path as ``nsenter --net=`` takes it, e.g. ``/run/netns/lab``), for a libvirtd that keeps
its containers' network in a namespace of its own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from typing import Any

from drivers.ssh.remote import Target, target_for_host
from oneserver.driver_contract import DriverError, HostRef, HostUnreachable

TIMEOUT = 60.0
SSH_FAILED = 255  # ssh's own exit status: the host was not reached
# nft, bridge and sysctl live in sbin, which a service's or a non-login ssh shell's PATH may
# lack (and a user's PATH on Debian does).
PROLOGUE = 'set -e\nPATH="$PATH:/usr/sbin:/sbin"\n'


class HostShell:
    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = options
        self.timeout = float(options.get("timeout", TIMEOUT))

    def argv(self, host: HostRef, script: str) -> tuple[Target, list[str]]:
        target = target_for_host(host, self.options)
        argv = target.argv(script)
        netns = self.options.get("netns")
        if target.is_local and netns:
            argv = ["nsenter", f"--net={netns}", *argv]
        return target, argv

    def run(self, host: HostRef, script: str, what: str, stdin: str = "") -> str:
        """Run ``script`` with ``sh`` on ``host`` (``stdin`` as its input); its stdout.
        DriverError with ``what`` and the command's stderr when it fails;
        HostUnreachable when ssh could not reach the host."""
        target, argv = self.argv(host, PROLOGUE + script)
        try:
            res = subprocess.run(argv, input=stdin.encode(), capture_output=True,
                                 timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DriverError(f"{what} on {host.name}: no answer in {self.timeout:g} s") \
                from None
        except OSError as exc:
            raise DriverError(f"{what} on {host.name}: {exc}") from exc
        err = res.stderr.decode(errors="replace").strip()
        if res.returncode == SSH_FAILED and not target.is_local:
            raise HostUnreachable(f"{what}: cannot reach {target}: {err}")
        if res.returncode != 0:
            raise DriverError(f"{what} on {host.name} failed (exit {res.returncode}): "
                              f"{err[-2000:]}")
        return res.stdout.decode(errors="replace")
