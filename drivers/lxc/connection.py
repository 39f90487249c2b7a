"""libvirt connections to hosts: which URI a host has, and a thread-safe cache of them.

URI choice, first match wins: the host (or cluster) template's ``LIBVIRT_URI``; ``lxc:///system``
for a host named ``localhost``; the driver option ``uri_template``; else
``lxc+ssh://root@{hostname}/system``. ``{hostname}`` and ``{id}`` are filled from the host.
When the URI uses ssh, the driver option ``ssh_command`` (oned.conf) is added as its
``command=``, so libvirt and the TM go through the same ssh.

A template's URI is written through the API, so it may only name where to connect: an lxc
(or libvirt ``test``) driver, a transport, user, host, port and path, and query parameters
that run nothing (``socket``, ``no_verify``, ``no_tty``, ``known_hosts_verify``). libvirt's
``command=``, ``netcat=`` and ``proxy=`` start programs on the front-end: only the driver
options may set what runs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, unquote_plus, urlsplit

import libvirt

from drivers.ssh.remote import safe_hostname, safe_user
from oneserver.driver_contract import DriverError, HostRef, HostUnreachable

DEFAULT_URI = "lxc+ssh://root@{hostname}/system"
LOCAL_URI = "lxc:///system"

# Codes libvirt gives when the transport, not the request, failed.
_BROKEN_CODES = frozenset({
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_INVALID_CONN,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
})

T = TypeVar("T")


def _quiet(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours become exceptions instead."""


libvirt.registerErrorHandler(_quiet, None)


_SCHEMES = frozenset({"lxc", "test"})
_TRANSPORTS = frozenset({"", "ssh", "libssh2", "libssh", "tls", "tcp", "unix"})
_SAFE_QUERY = frozenset({"socket", "no_verify", "no_tty", "known_hosts_verify", "mode"})


def checked_uri(uri: str) -> str:
    """``uri`` if it is a libvirt URI a host template may hold, else DriverError."""
    parts = urlsplit(uri)
    driver, _, transport = parts.scheme.partition("+")
    if driver not in _SCHEMES or transport not in _TRANSPORTS:
        raise DriverError(f"LIBVIRT_URI {uri!r}: only lxc URIs (lxc://, lxc+ssh://, "
                          f"lxc+tls://, …) are allowed")
    # libvirt splits parameters on "&" and ";" (virURIParseParams), so do both here.
    keys = {unquote_plus(pair.partition("=")[0]).strip().lower()
            for pair in re.split(r"[&;]", parts.query) if pair}
    if keys - _SAFE_QUERY:
        bad = ", ".join(sorted(keys - _SAFE_QUERY))
        raise DriverError(f"LIBVIRT_URI {uri!r}: parameter(s) {bad} not allowed (the ssh "
                          "command is a driver option of oned.conf)")
    if parts.hostname is not None:
        try:
            safe_hostname(parts.hostname)
            if parts.username is not None:
                safe_user(parts.username)
        except ValueError as exc:
            raise DriverError(f"LIBVIRT_URI {uri!r}: {exc}") from None
    return uri


def base_uri(host: HostRef, options: Mapping[str, Any]) -> str:
    """Where ``host`` is, without the ssh command: what monitoring reports as LIBVIRT_URI."""
    template = host.template.get("LIBVIRT_URI")
    if template:
        return checked_uri(_without_command(_fill(str(template), host), options))
    if host.name == "localhost":
        return LOCAL_URI
    return _fill(str(options.get("uri_template") or DEFAULT_URI), host)


def host_uri(host: HostRef, options: Mapping[str, Any]) -> str:
    """The libvirt URI of ``host`` (see the module docstring for the rules)."""
    uri = base_uri(host, options)
    ssh_command = options.get("ssh_command")
    if ssh_command and urlsplit(uri).scheme.endswith("+ssh"):
        uri += ("&" if "?" in uri else "?") + _command_param(str(ssh_command))
    return uri


def _command_param(ssh_command: str) -> str:
    return "command=" + quote(ssh_command, safe="/")


def _without_command(uri: str, options: Mapping[str, Any]) -> str:
    """``uri`` without the ``command=`` this driver adds itself (hosts monitored by earlier
    releases have it in their LIBVIRT_URI); any other command stays, to be refused."""
    ssh_command = options.get("ssh_command")
    if not ssh_command:
        return uri
    param = _command_param(str(ssh_command))
    for sep in ("?", "&"):
        if uri.endswith(sep + param):
            return uri[: -len(sep + param)]
    return uri


def _fill(template: str, host: HostRef) -> str:
    """``{hostname}`` and ``{id}`` filled in. Plain replacement, not str.format (a template
    must not reach Python's format language), and only a plain host name goes in."""
    if "{hostname}" in template:
        try:
            safe_hostname(host.name)
        except ValueError as exc:
            raise DriverError(f"host {host.id}: {exc}") from None
    return template.replace("{hostname}", host.name).replace("{id}", str(host.id))


def is_broken(exc: libvirt.libvirtError) -> bool:
    """True when ``exc`` says the connection itself is gone (worth reopening)."""
    code = exc.get_error_code()
    if code in _BROKEN_CODES:
        return True
    text = str(exc).lower()
    return code == libvirt.VIR_ERR_INTERNAL_ERROR and ("closed" in text or "eof" in text)


class ConnectionPool:
    """One open libvirt connection per URI, shared by threads.

    libvirt connections are themselves thread-safe; the lock only guards the cache so that
    two threads never open the same URI at once or reuse a connection another thread closed.
    """

    def __init__(self, options: Mapping[str, Any] | None = None,
                 opener: Callable[[str], libvirt.virConnect] = libvirt.open) -> None:
        self.options: Mapping[str, Any] = dict(options or {})
        self._opener = opener
        self._lock = threading.Lock()
        self._conns: dict[str, libvirt.virConnect] = {}

    def uri(self, host: HostRef) -> str:
        return host_uri(host, self.options)

    def base_uri(self, host: HostRef) -> str:
        return base_uri(host, self.options)

    def get(self, host: HostRef) -> libvirt.virConnect:
        """An open, alive connection to ``host``. Raises :class:`HostUnreachable`."""
        uri = self.uri(host)
        with self._lock:
            conn = self._conns.get(uri)
            if conn is not None and not _alive(conn):
                self._drop(uri)
                conn = None
            if conn is None:
                try:
                    conn = self._opener(uri)
                except libvirt.libvirtError as exc:
                    raise HostUnreachable(f"cannot connect to {uri}: {exc}") from exc
                self._conns[uri] = conn
            return conn

    def call(self, host: HostRef, fn: Callable[[libvirt.virConnect], T]) -> T:
        """Run ``fn(conn)``; if the connection turns out broken, reopen once and retry.
        A second transport failure raises :class:`HostUnreachable`; other libvirt errors
        propagate unchanged (callers turn them into DriverError with context)."""
        for attempt in (1, 2):
            conn = self.get(host)
            try:
                return fn(conn)
            except libvirt.libvirtError as exc:
                if not is_broken(exc):
                    raise
                self.invalidate(host)
                if attempt == 2:
                    raise HostUnreachable(f"lost connection to {self.uri(host)}: {exc}") from exc
        raise AssertionError("unreachable")

    def invalidate(self, host: HostRef) -> None:
        """Forget (and close) the cached connection of ``host``; the next call reopens."""
        with self._lock:
            self._drop(self.uri(host))

    def close(self) -> None:
        """Close every cached connection; the pool stays usable afterwards."""
        with self._lock:
            for uri in list(self._conns):
                self._drop(uri)

    def _drop(self, uri: str) -> None:
        conn = self._conns.pop(uri, None)
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # already dead; nothing to release


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False
