"""Run shell snippets on a host: locally for ``localhost``, else through an ssh command.

The ssh command is whatever the deployment uses (``ssh``, or a wrapper such as the lab's
``sshwrap`` that carries a private config), so the drivers never touch ``~/.ssh``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

from oneserver.driver_contract import DriverError, HostRef

LOCAL_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Target:
    """Where a snippet runs. ``address`` None means on this machine, without ssh."""

    address: str | None = None
    user: str | None = None
    port: int | None = None
    command: tuple[str, ...] = ("ssh",)

    @property
    def is_local(self) -> bool:
        return self.address is None

    def argv(self, script: str) -> list[str]:
        """The argv that runs ``script`` with ``sh`` on the target."""
        if self.is_local:
            return ["sh", "-c", script]
        dest = f"{self.user}@{self.address}" if self.user else str(self.address)
        port = ["-p", str(self.port)] if self.port else []
        # ssh joins its arguments into one remote command line, so quote the script once.
        return [*self.command, *port, dest, "sh -c " + shlex.quote(script)]

    def __str__(self) -> str:
        return "localhost" if self.is_local else f"{self.user or ''}@{self.address}"


# What a host's name, SSH_HOST and SSH_USER may be: a DNS name, an IPv4/IPv6 address, a user
# name. Nothing that ssh could read as an option (a leading "-", e.g. -oProxyCommand=…) or a
# shell could read as syntax: these values come from API callers.
_HOSTNAME = re.compile(r"[A-Za-z0-9_.:%\[\]](?:[A-Za-z0-9_.:%\[\]-]*)\Z")
_USER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")


def safe_hostname(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError(f"{value!r} is not a host name or address")
    return value


def safe_user(value: str) -> str:
    if not _USER.match(value):
        raise ValueError(f"{value!r} is not a user name")
    return value


def target_for_host(host: HostRef, options: Mapping[str, Any]) -> Target:
    """The target for ``host``: local when it is named localhost, else ssh to user
    ``SSH_USER`` (host template, else option ``ssh_user``, default root) at ``SSH_HOST``
    (default the host name). The ssh command itself is only the driver option
    ``ssh_command`` (oned.conf ``-o ssh_command=…``, default ``ssh``): a host template is
    written through the API and never names a program to run. Raises DriverError for a name
    that is not a plain host or user name."""
    if host.name in LOCAL_NAMES and not host.template.get("SSH_HOST"):
        return Target()
    command = options.get("ssh_command") or "ssh"
    try:
        user = safe_user(str(host.template.get("SSH_USER") or options.get("ssh_user")
                             or "root"))
        address = safe_hostname(str(host.template.get("SSH_HOST") or host.name))
    except ValueError as exc:
        raise DriverError(f"host {host.name}: {exc}") from None
    return Target(address=address, user=user, command=tuple(shlex.split(command)))


def target_for_uri(uri: str) -> Target:
    """The target a libvirt URI talks to: ssh for ``driver+ssh://`` (with its ``command=``),
    local for a URI without a remote host."""
    parts = urlsplit(uri)
    if not parts.hostname or "+" not in parts.scheme:
        return Target()
    if not parts.scheme.endswith("+ssh") and not parts.scheme.endswith("+libssh2"):
        # tcp/tls transports give no shell; callers treat this like "no shell access".
        raise ValueError(f"no shell access to the host of {uri}")
    query = parse_qs(parts.query)
    command = query.get("command", ["ssh"])[0]
    return Target(address=parts.hostname, user=parts.username, port=parts.port,
                  command=tuple(shlex.split(command)))


def run(target: Target, script: str, *, stdin: IO[bytes] | int | None = None,
        timeout: float = 600.0) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` on ``target`` and wait; the result holds exit status, stdout, stderr.
    Raises :class:`subprocess.TimeoutExpired` after ``timeout`` (the child is killed)."""
    return subprocess.run(
        target.argv(script), stdin=stdin if stdin is not None else subprocess.DEVNULL,
        capture_output=True, timeout=timeout, check=False,
    )
